"""A frozen edition as JSON text: a run's papers and their summaries, field by field; and an
edition's left-out matches ("N more matched") as compressed JSON.

Owns: ``dump_edition`` / ``load_edition``, the one way papers and summaries are written to and
read back from the ledger (``editions.content``), so a worker on another machine renders what
the run that queued the edition selected from; ``dump_left_out`` / ``load_left_out``, the one
way both backends store the ``left_out`` table's matches. May import models only.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from digest.ledger._contract import FrozenEdition
from digest.models import LeftOut, Paper, Summary

FORMAT = 1


def _paper_json(paper: Paper) -> dict[str, Any]:
    out = asdict(paper)
    out["published"] = None if paper.published is None else paper.published.isoformat()
    out["listed"] = None if paper.listed is None else paper.listed.isoformat()
    return out


def _paper(data: dict[str, Any]) -> Paper:
    # every list-valued field of Paper is a tuple (authors, categories, keywords, feeds, ...)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    if values.get("published") is not None:
        values["published"] = datetime.fromisoformat(values["published"])
    if values.get("listed") is not None:
        values["listed"] = date.fromisoformat(values["listed"])
    return Paper(**values)


def dump_edition(papers: Sequence[Paper], summaries: Mapping[str, Summary]) -> str:
    """Canonical JSON (sorted keys), so equal content gives equal text and an equal hash."""
    return json.dumps({"format": FORMAT, "papers": [_paper_json(p) for p in papers],
                       "summaries": {k: asdict(v) for k, v in sorted(summaries.items())}},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def load_edition(text: str) -> FrozenEdition:
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"frozen edition format {data.get('format')!r}, expected {FORMAT}")
    summaries = {k: Summary(**{**v, "results": tuple(v["results"])})
                 for k, v in data["summaries"].items()}
    return FrozenEdition(papers=tuple(_paper(p) for p in data["papers"]), summaries=summaries)


def dump_left_out(matches: Sequence[LeftOut]) -> bytes:
    """zlib (level 1) of the matches as a JSON list of their fields."""
    return zlib.compress(json.dumps([asdict(m) for m in matches], ensure_ascii=False,
                                    separators=(",", ":")).encode("utf-8"), 1)


def load_left_out(blob: bytes) -> tuple[LeftOut, ...]:
    return tuple(LeftOut(paper_id=str(m["paper_id"]), title=str(m["title"]),
                         authors=str(m["authors"]),
                         url=None if m["url"] is None else str(m["url"]),
                         tags=tuple(str(t) for t in m["tags"]))
                 for m in json.loads(zlib.decompress(blob)))
