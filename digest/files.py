"""Writing a file atomically: the one way every file the tool writes is written.

A temporary file in the same folder, then a rename, so a reader never sees half a file and a
failure leaves the old file as it was. The result gets the old file's permissions, or the
umask's for a new file (as ``open`` would give), unless ``private`` asks for 0600. A target
that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written in
place: renaming over a device would replace the device itself. A symlink is kept and its file
updated. Raises ``OSError``; callers wrap it in their own error with the path.

Imports nothing of the project.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

__all__ = ["atomic_write", "atomic_writer"]


@contextmanager
def atomic_writer(path: Path, *, private: bool = False) -> Iterator[TextIO]:
    """A text file (UTF-8) to write ``path`` through; the file appears only when the block ends
    without an exception."""
    with _atomic(Path(path), "w", private) as fh:
        yield fh  # type: ignore[misc]


@contextmanager
def _atomic(path: Path, mode: str, private: bool) -> Iterator[IO[Any]]:
    encoding = None if "b" in mode else "utf-8"
    if path.exists() and not path.is_file():
        with open(path, mode, encoding=encoding) as fh:
            yield fh
        return
    target = path.resolve() if path.is_symlink() else path
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(fd, mode, encoding=encoding) as fh:
            yield fh
        if private:
            perms = 0o600
        elif target.exists():
            perms = stat.S_IMODE(target.stat().st_mode)
        else:
            perms = _umask_mode()
        os.chmod(tmp, perms)  # mkstemp makes 0600 files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes, *, private: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with _atomic(Path(path), "w" if isinstance(data, str) else "wb", private) as fh:
        fh.write(data)


def _umask_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
