"""bioRxiv and medRxiv: reading the public details API's JSON into papers.

One answer of ``api.biorxiv.org/details/<server>/<from>/<to>/<cursor>/json`` is a page of
*records*, one per posted version (a revision is a record of its own, oldest first), with a
``messages`` header saying ``ok`` (and the cursor, count and total) or ``no posts found``. A
paper is one DOI: the DOI is its id, and the latest version's text wins. Dates are parsed as
dates: the API has been seen to send ``2026-6-30`` (no padding), which sorts after
``2026-07-15`` as a string. The live paging is in ``_live``; this module is pure.

May import: ``digest.models``, ``digest.errors`` and the standard library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from digest.errors import FeedError
from digest.models import BIORXIV_SUBJECTS, Paper

log = logging.getLogger(__name__)

SERVERS = ("biorxiv", "medrxiv")
NO_POSTS = "no posts found"
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")


def subject_key(name: str) -> str:
    """A subject as the API's ``category`` spells it: ``cell_biology`` and ``Cell Biology``
    are ``cell biology``."""
    return " ".join(name.replace("_", " ").casefold().split())


def subject_slug(name: str) -> str:
    """A subject as papers carry it and filters name it: ``cell_biology``."""
    return subject_key(name).replace(" ", "_")


__all__ = ["BIORXIV_SUBJECTS", "NO_POSTS", "SERVERS", "DetailsPage", "Record", "latest",
           "parse_day", "parse_details", "subject_key", "subject_slug"]


def parse_day(value: str) -> date:
    """``2026-06-30`` or ``2026-6-30`` as a date (ValueError otherwise)."""
    m = _DATE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not a date: {value!r}")
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass(frozen=True)
class Record:
    """One posted version of a preprint."""

    paper: Paper
    version: int
    day: date


@dataclass(frozen=True)
class DetailsPage:
    records: tuple[Record, ...]
    status: str  # "ok" or "no posts found"
    count: int  # records the API says this page holds
    total: int | None  # records in the whole interval, when the API says


def _number(value: object) -> int | None:
    """The header's numbers come as numbers or as strings ("109"), depending on who saved them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return " ".join(value.split()) if isinstance(value, str) else ""


def _record(item: Any, server: str | None) -> Record:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    doi = _text(item, "doi")
    title, abstract = _text(item, "title"), _text(item, "abstract")
    if not doi or not title or not abstract:
        missing = "doi" if not doi else "title" if not title else "abstract"
        raise ValueError(f"missing {missing!r}")
    day = parse_day(_text(item, "date"))
    version = _number(item.get("version")) or 1
    where = (server or _text(item, "server") or "biorxiv").casefold()
    where = where if where in SERVERS else "biorxiv"
    url = f"https://www.{where}.org/content/{doi}v{version}"
    category = _text(item, "category")
    authors = tuple(a for a in (" ".join(x.split()) for x in _text(item, "authors").split(";"))
                    if a)
    paper = Paper(
        id=doi, title=title, abstract=abstract, authors=authors, url=url,
        pdf_url=f"{url}.full.pdf", published=datetime(day.year, day.month, day.day,
                                                      tzinfo=timezone.utc),
        listed=day, categories=(subject_slug(category),) if category else (), source=where)
    return Record(paper, version, day)


def parse_details(data: Any, source: str, *, server: str | None = None) -> DetailsPage:
    """One details answer (decoded JSON). ``no posts found`` is an empty page, not an error;
    another status (``Server not recognized``...) or a body of another shape is a
    ``FeedError``. One bad record is skipped with a warning."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list) \
            or not isinstance(data.get("collection"), list):
        raise FeedError(source, "not a bioRxiv/medRxiv details answer (expected messages and "
                                "collection)")
    header = data["messages"][0] if data["messages"] and isinstance(
        data["messages"][0], dict) else {}
    status = str(header.get("status", "")).strip()
    if status.casefold() == NO_POSTS:
        return DetailsPage((), NO_POSTS, 0, 0)
    if status.casefold() != "ok":
        raise FeedError(source, f"the API answered: {status or 'no status'}")
    records: list[Record] = []
    for index, item in enumerate(data["collection"]):
        try:
            records.append(_record(item, server))
        except ValueError as exc:
            log.warning("%s: item [%d] skipped: %s", source, index, exc)
    count = _number(header.get("count"))
    return DetailsPage(tuple(records), "ok", len(data["collection"]) if count is None else count,
                       _number(header.get("total")))


def latest(records: Iterable[Record], *, revisions: bool = True,
           subjects: Iterable[str] = ()) -> tuple[Paper, ...]:
    """One paper per DOI, in first-seen order, with the text of its latest version (by version
    number, then date). Without ``revisions`` a DOI counts only if its first version is among
    the records (a preprint new in the window, like arXiv's ``new``). ``subjects`` keeps the
    papers in those subject collections (any spelling, see ``subject_key``)."""
    wanted = {subject_key(s) for s in subjects}
    best: dict[str, Record] = {}
    first: set[str] = set()
    for rec in records:
        key = rec.paper.id.casefold()
        if rec.version == 1:
            first.add(key)
        held = best.get(key)
        if held is None or (rec.version, rec.day) > (held.version, held.day):
            best[key] = rec
    papers = []
    for key, rec in best.items():
        if not revisions and key not in first:
            continue
        if wanted and not any(subject_key(c) in wanted for c in rec.paper.categories):
            continue
        papers.append(rec.paper)
    return tuple(papers)
