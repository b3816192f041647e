"""Reading ``settings.dkim`` and ``settings.smtp.helo``: the names and keys a receiving server
judges us by.

Owns: ``read_dkim`` (the block, its key files read and checked: RSA of at least 2048 bits as
PEM, Ed25519 as the base64 32-byte seed dkimpy uses), ``check_alignment`` (the DKIM domain must
align with the From domain, or DMARC fails although the signature verifies) and ``read_helo``
(a host name or an address literal). Problems are recorded on the ``Reader``, never raised.

May import: the standard library, cryptography's key parser (the same one that signs, so a
key that passes here signs later), ``digest.models``, ``digest.errors`` and the node readers.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path

from yaml.nodes import Node

from digest.config._schema import Entry, Reader, is_null
from digest.models import DkimAlgorithm, DkimKey, DkimSettings

__all__ = ["DKIM_KEYS", "ED25519_KEYS", "MIN_RSA_BITS", "check_alignment", "read_dkim",
           "read_helo"]

DKIM_KEYS = ("domain", "selector", "private_key_file", "ed25519")
ED25519_KEYS = ("selector", "private_key_file")
MIN_RSA_BITS = 2048  # RFC 8301: verifiers may refuse anything shorter; Gmail asks for 2048
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})+")
_SELECTOR = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_KEYGEN = "make one with: digest dkim keygen"


def read_dkim(r: Reader, node: Node, key: str, base: Path) -> DkimSettings | None:
    entries = r.mapping(node, key, DKIM_KEYS, required=("domain", "selector", "private_key_file"))
    if entries is None:
        return None
    before = len(r.problems)
    domain = _name(r, entries["domain"].node, f"{key}.domain", _DOMAIN,
                   "a domain name such as example.org") if "domain" in entries else None
    keys: list[DkimKey] = []
    rsa = _key(r, entries, key, base, "rsa-sha256") if "selector" in entries \
        and "private_key_file" in entries else None
    if rsa is not None:
        keys.append(rsa)
    if "ed25519" in entries:
        sub = f"{key}.ed25519"
        inner = r.mapping(entries["ed25519"].node, sub, ED25519_KEYS, required=ED25519_KEYS)
        if inner is not None and len(inner) == len(ED25519_KEYS):
            ed = _key(r, inner, sub, base, "ed25519-sha256")
            if ed is not None:
                keys.append(ed)
    if len(r.problems) > before or domain is None:
        return None
    if len({k.selector.lower() for k in keys}) < len(keys):
        r.bad(entries["ed25519"].node, f"{key}.ed25519.selector", "must differ from "
              f"{key}.selector: each key is published under its own selector")
        return None
    return DkimSettings(domain=domain.lower(), keys=tuple(keys))


def _name(r: Reader, node: Node, key: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = r.text(node, key, what=what)
    if value is not None and not (value.isascii() and pattern.fullmatch(value)):
        r.bad(node, key, f"expected {what}, got {value!r}")
        return None
    return value


def _key(r: Reader, entries: dict[str, Entry], key: str, base: Path,
         algorithm: DkimAlgorithm) -> DkimKey | None:
    sel_entry, file_entry = entries["selector"], entries["private_key_file"]
    selector = _name(r, sel_entry.node, f"{key}.selector", _SELECTOR,
                     "a selector (letters, digits and hyphens, e.g. digest2026)")
    file_key = f"{key}.private_key_file"
    path = r.path(file_entry.node, file_key, base, kind="file")
    if selector is None or path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        r.bad(file_entry.node, file_key, f"cannot read {path}: {exc.strerror or exc}")
        return None
    problem = check_rsa_key(data) if algorithm == "rsa-sha256" else check_ed25519_key(data)
    if problem is not None:
        r.bad(file_entry.node, file_key, f"{path}: {problem}")
        return None
    return DkimKey(algorithm=algorithm, selector=selector, path=path, private_key=data)


def check_rsa_key(data: bytes) -> str | None:
    """Why ``data`` cannot sign as a DKIM RSA key, or None. Read with the parser that signs
    (cryptography's, PKCS#1 or PKCS#8 PEM)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        return f"the key is protected by a passphrase, which cannot be given; {_KEYGEN}"
    except (ValueError, UnsupportedAlgorithm):
        return f"not a private key in PEM form; {_KEYGEN}"
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey")
        return f"not an RSA key ({kind or 'another kind'}); {_KEYGEN}"
    if key.key_size < MIN_RSA_BITS:
        return (f"the RSA key has {key.key_size} bits; DKIM needs at least {MIN_RSA_BITS} "
                f"(receivers ignore or distrust shorter keys); {_KEYGEN}")
    return None


def check_ed25519_key(data: bytes) -> str | None:
    """Why ``data`` is not an Ed25519 key in dkimpy's form (base64 of the 32-byte seed)."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return ("not an Ed25519 key (expected the base64 32-byte seed that "
                f"'digest dkim keygen --type ed25519' writes)")
    return None


def check_alignment(dkim: DkimSettings, sender_address: str) -> str | None:
    """Why ``d=`` fails DMARC's relaxed alignment with the From address, or None. Without a
    public-suffix list, aligned means one domain is the other or a parent of it."""
    sender = sender_address.rpartition("@")[2].lower().rstrip(".")
    d = dkim.domain.lower().rstrip(".")
    if sender == d or sender.endswith("." + d) or d.endswith("." + sender):
        return None
    return (f"{dkim.domain} does not align with the sender's domain {sender}: DMARC checks "
            "that the signing domain is the From domain or a parent of it")


def read_helo(r: Reader, node: Node, key: str) -> str | None:
    """A name for EHLO: a host name (``mail.example.org``) or an address literal
    (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), RFC 5321 4.1.1.1."""
    if is_null(node):
        return None
    value = r.text(node, key, what="a host name")
    if value is None:
        return None
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        inner = inner[5:] if inner.lower().startswith("ipv6:") else inner
        try:
            ipaddress.ip_address(inner)
            return value
        except ValueError:
            pass
    elif value.isascii() and _HOST.fullmatch(value):
        return value.rstrip(".")
    r.bad(node, key, f"expected a host name such as mail.example.org (or an address literal "
          f"such as [192.0.2.1]), got {value!r}")
    return None
