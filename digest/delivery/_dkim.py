"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463) over the exact bytes a message leaves as.

Owns: ``sign_message`` (prepends one ``DKIM-Signature`` per configured key; pure, ``now`` is a
parameter), the signed header list, ``generate_key`` (a new key pair and the DNS TXT record that
publishes it) and ``dns_record``. May import ``models`` and ``errors``, dkimpy, PyNaCl and
cryptography. The config stage has already read and checked the keys (RSA of 2048 bits or
more, Ed25519 of 32 bytes); this module only signs.

Why not ``dkim.sign``: it stamps ``t=`` from the wall clock, so one message built twice would
differ and ``now`` could not be a parameter; and it signs RSA in pure Python, ~8 ms a message
(``bench/bench_mime.py``). We run dkimpy's own parser, canonicalization, header selection and
folding (``rfc822_parse``, ``CanonicalizationPolicy``, ``hash_headers``, ``fold``: the steps of
``DKIM.gen_header``, the routine ``dkim.sign`` ends in) with ``t=`` taken from ``now``, and sign
the digest with OpenSSL (cryptography) or libsodium (PyNaCl): PKCS#1 v1.5 and Ed25519 are
deterministic, so the bytes are the ones dkimpy would write (a test compares them), and every
signature is verified with ``dkim.verify`` in the tests.

Decisions:
- relaxed/relaxed: a relay that re-folds a header or trims trailing blanks keeps it valid.
- Every signed header is listed twice ("oversigned"): the second, absent instance makes a
  receiver reject a message where someone *added* a Subject, a second From or another
  ``List-Unsubscribe`` (RFC 6376 8.15), not only one where they changed it.
- No ``l=`` (a body-length limit lets anyone append content) and no ``x=`` (a resend from the
  ledger days later must still verify).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

from digest.models import DkimKey

if TYPE_CHECKING:
    from types import ModuleType

    from dkim.canonicalization import CanonicalizationPolicy

__all__ = ["SIGNED_HEADERS", "KeyPair", "dns_record", "generate_key", "sign_message"]

# What h= covers, when present, in this order: RFC 6376 5.4.1's recommendations that we write,
# plus the list headers RFC 8058 requires under the signature for one-click unsubscribe.
SIGNED_HEADERS = (
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "list-id", "list-unsubscribe", "list-unsubscribe-post", "auto-submitted",
)
_SIGNED = tuple(h.encode("ascii") for h in SIGNED_HEADERS)
_NAME = b"DKIM-Signature"
_RELAXED = b"relaxed/relaxed"


@functools.cache
def _dkimpy() -> tuple[ModuleType, CanonicalizationPolicy]:
    """dkimpy and the relaxed policy, loaded with the first signature: dkimpy brings
    dnspython (~30 ms of every command's start-up), and most runs sign nothing."""
    import dkim
    from dkim.canonicalization import CanonicalizationPolicy

    return dkim, CanonicalizationPolicy.from_c_value(_RELAXED)


@functools.lru_cache(maxsize=16)
def _signer(algorithm: str, material: bytes) -> Callable[[bytes], bytes]:
    """A function from a SHA-256 digest to the raw signature; the key is parsed once per run,
    not once per message."""
    if algorithm == "ed25519-sha256":
        import nacl.encoding
        import nacl.signing

        ed = nacl.signing.SigningKey(material.strip(), encoder=nacl.encoding.Base64Encoder)
        return lambda digest: bytes(ed.sign(digest).signature)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    key = serialization.load_pem_private_key(material, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)  # the config stage checked it
    prehashed = utils.Prehashed(hashes.SHA256())
    return lambda digest: key.sign(digest, padding.PKCS1v15(), prehashed)


def _tags(fields: list[tuple[bytes, bytes]], end: bytes = b"") -> bytes:
    dkim = _dkimpy()[0]
    return cast(bytes, dkim.fold(b"; ".join(b"=".join(f) for f in fields) + end,
                                 namelen=len(_NAME), linesep=b"\r\n"))


def sign_message(data: bytes, domain: str, keys: tuple[DkimKey, ...], *,
                 now: datetime) -> bytes:
    """``data`` (a complete RFC 5322 message, CRLF line ends) with one ``DKIM-Signature``
    header per key prepended, in the order of ``keys``; each signature covers the message as
    given (none covers another)."""
    if not keys:
        return data
    dkim, policy = _dkimpy()
    headers, body = dkim.rfc822_parse(data)
    canonical = policy.canonicalize_headers(headers)
    present = {name.lower() for name, _ in headers}
    signed = [h for h in _SIGNED if h in present]
    include = signed + signed  # oversigned: see the module docstring
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(body)).digest())
    stamp = str(int(now.timestamp())).encode("ascii")
    signatures: list[bytes] = []
    for key in keys:
        fields = [
            (b"v", b"1"), (b"a", key.algorithm.encode("ascii")), (b"c", _RELAXED),
            (b"d", domain.encode("ascii")), (b"s", key.selector.encode("ascii")),
            (b"t", stamp), (b"h", b" : ".join(include)), (b"bh", body_hash),
            (b"b", b"0" * 60),  # a placeholder, as dkimpy's: b= is folded onto lines of its own
        ]
        # The signature header is hashed with an empty b=, after the signed headers.
        unsigned = dkim.RE_BTAG.sub(b"\\1", _tags(fields))
        hasher = hashlib.sha256()
        dkim.hash_headers(hasher, policy, canonical, include, (_NAME, b" " + unsigned),
                          dict(fields))
        fields[-1] = (b"b", base64.b64encode(_signer(key.algorithm, key.private_key)(
            hasher.digest())))
        signatures.append(_NAME + b": " + _tags(fields, b"\r\n"))
    return b"".join(signatures) + data


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyPair:
    """A new key: the private key file's bytes and the TXT record publishing the public half."""

    algorithm: Literal["rsa-sha256", "ed25519-sha256"]
    private_key: bytes
    record: str  # the TXT value: "v=DKIM1; k=rsa; p=..."


def generate_key(kind: Literal["rsa", "ed25519"] = "rsa", bits: int = 2048) -> KeyPair:
    """A fresh key pair. RSA keys are PEM (PKCS#1, what OpenDKIM and dkimpy read); Ed25519
    keys are the base64 32-byte seed, the form dkimpy's ``dknewkey`` writes."""
    if kind == "ed25519":
        import nacl.encoding
        import nacl.signing
        key = nacl.signing.SigningKey.generate()
        seed = key.encode(encoder=nacl.encoding.Base64Encoder)
        public = key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode("ascii")
        return KeyPair("ed25519-sha256", seed + b"\n", f"v=DKIM1; k=ed25519; p={public}")
    if bits < 2048:
        raise ValueError("RSA DKIM keys must have at least 2048 bits")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    public = base64.b64encode(der).decode("ascii")
    return KeyPair("rsa-sha256", pem, f"v=DKIM1; k=rsa; p={public}")


def dns_record(selector: str, domain: str, record: str) -> str:
    """The zone-file line to publish ``record``: split into quoted strings of at most 255
    characters (a 2048-bit key's ``p=`` alone is ~400), which resolvers join back."""
    chunks = [record[i:i + 250] for i in range(0, len(record), 250)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT ( {quoted} )"
