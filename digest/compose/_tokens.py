"""Signed one-click unsubscribe tokens and the handler that honours them.

Owns: the token format (``v1.<base64url(email)>.<base64url(HMAC-SHA256(secret, "v1:"+email))>``,
lower-cased address, no expiry: an unsubscribe link must keep working in an old email), the
unsubscribe URL built from ``settings.unsubscribe_url``, and ``handle_unsubscribe`` — the plain
function a web endpoint will call later. May import errors (and ledger, for types only: the
handler is handed a ledger, so the pure pipeline can use the token functions without pulling
in SQLite). The token functions are pure; the secret is always passed in, never read from the
environment here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import quote

from digest.errors import TokenError

if TYPE_CHECKING:  # the handler is given a ledger; importing SQLite code here is not needed
    from digest.ledger import Ledger

_VERSION = "v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise TokenError("the unsubscribe secret is empty")
    return key


def _signature(email: str, secret: str | bytes) -> bytes:
    return hmac.new(_key(secret), f"{_VERSION}:{email}".encode(), hashlib.sha256).digest()


def make_token(email: str, secret: str | bytes) -> str:
    """A URL-safe token naming ``email`` that only the holder of ``secret`` can make."""
    address = email.strip().lower()
    return f"{_VERSION}.{_b64(address.encode('utf-8'))}.{_b64(_signature(address, secret))}"


def verify_token(token: str, secret: str | bytes) -> str:
    """The (lower-cased) address a genuine token names; ``TokenError`` for anything else."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise TokenError("malformed unsubscribe token")
    try:
        address = _unb64(parts[1]).decode("utf-8")
        given = _unb64(parts[2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenError("malformed unsubscribe token") from None
    if not hmac.compare_digest(given, _signature(address, secret)):
        raise TokenError("unsubscribe token signature does not match")
    return address


def unsubscribe_link(base_url: str, email: str, secret: str | bytes) -> str:
    """``base_url`` with the signed token as its ``token`` query parameter."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}token={quote(make_token(email, secret), safe='.-_')}"


def handle_unsubscribe(ledger: Ledger, token: str, secret: str | bytes, *,
                       now: datetime | None = None) -> str:
    """Verify ``token`` and record a suppression for its address (idempotent: a second click
    is fine). Returns the address. Raises ``TokenError`` for a forged or broken token and
    records nothing then."""
    address = verify_token(token, secret)
    ledger.suppress(address, now=now or datetime.now(timezone.utc), source="token")
    return address
