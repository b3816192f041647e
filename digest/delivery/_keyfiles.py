"""Writing a new DKIM key pair to disk: the private key readable by its owner only.

Owns: ``write_key_pair`` (``<selector>.private``, mode 0600, and ``<selector>.txt``, the DNS
record to publish), both through the one atomic writer (``digest.files``). May import models,
errors, files and ``_dkim``. Never overwrites a key unless
asked: a lost private key means a new selector and a DNS change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digest.delivery._dkim import KeyPair, dns_record
from digest.errors import DigestError
from digest.files import atomic_write

__all__ = ["KeyFiles", "write_key_pair"]


@dataclass(frozen=True)
class KeyFiles:
    private_key: Path
    record_file: Path
    record: str  # the zone-file line, as written to ``record_file``


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
                raise DigestError(f"{path} already exists; choose another selector or pass "
                                  "--force (the old key stops working once its DNS record is "
                                  "replaced)")
        atomic_write(private, pair.private_key, private=True)  # 0600 from the first byte
        atomic_write(record_file, record + "\n")
    except OSError as exc:
        raise DigestError(f"{folder}: cannot write the key: {exc.strerror or exc}") from None
    return KeyFiles(private, record_file, record)
