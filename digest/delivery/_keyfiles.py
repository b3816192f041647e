"""Writing a new DKIM key pair to disk: the private key readable by its owner only.

Owns: ``write_key_pair`` (``<selector>.private``, mode 0600, and ``<selector>.txt``, the DNS
record to publish). May import models, errors and ``_dkim``. Never overwrites a key unless
asked: a lost private key means a new selector and a DNS change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from digest.delivery._dkim import KeyPair, dns_record
from digest.errors import DigestError

__all__ = ["KeyFiles", "write_key_pair"]


@dataclass(frozen=True)
class KeyFiles:
    private_key: Path
    record_file: Path
    record: str  # the zone-file line, as written to ``record_file``


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Create ``path`` with ``mode`` from the first byte (no window where the key is world-
    readable), via a temporary name and a rename so a crash leaves no half key."""
    if path.exists() and not force:
        raise DigestError(f"{path} already exists; choose another selector or pass --force "
                          "(the old key stops working once its DNS record is replaced)")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def write_key_pair(folder: Path, selector: str, domain: str, pair: KeyPair, *,
                   force: bool = False) -> KeyFiles:
    """Write ``pair`` into ``folder`` (created, mode 0700, when missing)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = folder / f"{selector}.private"
        record_file = folder / f"{selector}.txt"
        record = dns_record(selector, domain, pair.record)
        for path in (private, record_file):
            if path.exists() and not force:
                _write(path, b"", 0o600, False)  # raises the "already exists" error
        _write(private, pair.private_key, 0o600, force)
        _write(record_file, (record + "\n").encode("ascii"), 0o644, force)
    except OSError as exc:
        raise DigestError(f"{folder}: cannot write the key: {exc.strerror or exc}") from None
    return KeyFiles(private, record_file, record)
