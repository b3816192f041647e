"""What the feeds remember between runs, in a folder beside the database (``<database>.feeds/``).

- ``http.json`` + ``*.body``: each conditionally fetched URL's validators (``ETag``,
  ``Last-Modified``) and last body, so the next request sends ``If-None-Match`` /
  ``If-Modified-Since`` and a ``304 Not Modified`` costs arXiv no work;
- ``day-YYYY-MM-DD.json``: each feed's papers and report for that fetch day, so a day's feeds
  are fetched once however many subscribers and runs read them, and ``digest history`` can say
  afterwards which feeds were empty or down.

Files are written atomically (``digest.files``); a missing or unreadable file is an empty
cache, never an error: the feed is simply fetched again. Old day files are pruned.

May import: ``digest.models``, ``digest.files`` (the one atomic writer) and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from digest.files import atomic_write
from digest.models import FeedReport, FeedState

log = logging.getLogger(__name__)

KEEP_DAYS = 14  # day files older than this are removed


def cache_dir(database: Path) -> Path:
    return database.with_name(database.name + ".feeds")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable, ignored (%s)", path, exc)
        return None


@dataclass(frozen=True)
class Validators:
    etag: str | None
    last_modified: str | None
    body: bytes


class HttpCache:
    """Validators and last bodies of conditionally fetched URLs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index = folder / "http.json"

    def _body_path(self, url: str) -> Path:
        return self.folder / (hashlib.sha1(url.encode("utf-8")).hexdigest()[:16] + ".body")

    def get(self, url: str) -> Validators | None:
        entry = (_read_json(self._index) or {}).get(url)
        if not isinstance(entry, dict):
            return None
        try:
            body = self._body_path(url).read_bytes()
        except OSError:
            return None
        return Validators(entry.get("etag"), entry.get("last_modified"), body)

    def put(self, url: str, etag: str | None, last_modified: str | None, body: bytes) -> None:
        if not etag and not last_modified:
            return
        try:
            _write(self._body_path(url), body)
            index = _read_json(self._index) or {}
            index[url] = {"etag": etag, "last_modified": last_modified}
            _write(self._index, json.dumps(index, indent=1).encode("utf-8"))
        except OSError as exc:  # a cache that cannot be written only costs a full fetch
            log.warning("%s: cannot write the HTTP cache (%s)", self.folder, exc)


@dataclass(frozen=True)
class DayEntry:
    """One feed's outcome for one fetch day, as stored."""

    report: FeedReport
    papers: list[dict[str, Any]]  # our normalized JSON objects
    fetched_at: datetime
    final: bool  # the day's listing is out (or the day has none): no need to ask again


def _report_to_dict(r: FeedReport) -> dict[str, Any]:
    return {"name": r.name, "source": r.source, "state": r.state, "papers": r.papers,
            "day": r.day.isoformat() if r.day else None, "reason": r.reason}


def report_from_dict(d: dict[str, Any]) -> FeedReport:
    state: FeedState = d["state"] if d.get("state") in ("ok", "empty", "down") else "down"
    return FeedReport(name=str(d.get("name", "")), source=str(d.get("source", "")),
                      state=state, papers=int(d.get("papers") or 0),
                      day=date.fromisoformat(d["day"]) if d.get("day") else None,
                      reason=str(d.get("reason") or ""))


class DayCache:
    """Each feed's papers and report per fetch day."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, day: date) -> Path:
        return self.folder / f"day-{day.isoformat()}.json"

    def get(self, day: date, name: str) -> DayEntry | None:
        entry = ((_read_json(self._path(day)) or {}).get("feeds") or {}).get(name)
        if not isinstance(entry, dict):
            return None
        try:
            return DayEntry(report_from_dict(entry["report"]), list(entry["papers"]),
                            datetime.fromisoformat(entry["fetched_at"]), bool(entry["final"]))
        except (KeyError, TypeError, ValueError):
            return None

    def reports(self, day: date) -> tuple[FeedReport, ...]:
        """Every feed's report for ``day`` (empty when nothing was fetched that day)."""
        feeds = (_read_json(self._path(day)) or {}).get("feeds") or {}
        out = []
        for entry in feeds.values():
            try:
                out.append(report_from_dict(entry["report"]))
            except (KeyError, TypeError, ValueError):
                continue
        return tuple(out)

    def put(self, day: date, entry: DayEntry) -> None:
        path = self._path(day)
        data = _read_json(path) or {}
        data.setdefault("feeds", {})[entry.report.name] = {
            "report": _report_to_dict(entry.report), "papers": entry.papers,
            "fetched_at": entry.fetched_at.isoformat(), "final": entry.final}
        try:
            _write(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
            self._prune(day)
        except OSError as exc:
            log.warning("%s: cannot write the feed cache (%s)", self.folder, exc)

    def _prune(self, today: date) -> None:
        oldest = today - timedelta(days=KEEP_DAYS)
        for old in self.folder.glob("day-*.json"):
            try:
                if date.fromisoformat(old.stem[4:]) < oldest:
                    old.unlink()
            except (ValueError, OSError):
                continue
