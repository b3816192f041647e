"""Writing our normalized JSON paper list (``digest fetch --out``, ``digest plan`` inputs).

May import: models, errors, the standard library.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.errors import FeedError
from digest.files import atomic_write
from digest.models import Paper

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------- normalized output


def paper_to_dict(p: Paper) -> dict[str, Any]:
    """One paper as our normalized JSON object: every field, ISO 8601 dates, UTC ``Z`` times."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def papers_to_json(papers: Iterable[Paper]) -> str:
    return json.dumps([paper_to_dict(p) for p in papers], ensure_ascii=False, indent=1) + "\n"


def write_papers(papers: Iterable[Paper], path: Path) -> None:
    """Write our normalized JSON list atomically (``digest.files``: a reader never sees half a
    file, devices such as ``/dev/stdout`` are written in place, permissions as ``open`` gives)."""
    try:
        atomic_write(Path(path), papers_to_json(papers))
    except OSError as exc:
        raise FeedError(path, f"cannot write: {exc.strerror or exc}") from None
