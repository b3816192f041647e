"""Writing our normalized JSON paper list (``digest fetch --out``, ``digest plan`` inputs).

May import: models, errors, the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.errors import FeedError
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
    """Write our normalized JSON list atomically: a temp file in the same folder, then rename,
    so a reader never sees half a file and a failure leaves the old file as it was. A target
    that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written
    in place: renaming over a device would replace the device itself."""
    text = papers_to_json(papers)
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            with path.open("w", encoding="utf-8") as fh:
                fh.write(text)
            return
        target = path.resolve() if path.is_symlink() else path  # keep the link, update its file
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise FeedError(path, f"cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes 0600 files: give the result the old file's mode, or the umask's
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode) if target.exists() else _new_mode())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FeedError(path, f"cannot write: {exc.strerror or exc}") from None


def _new_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
