"""Signed, opaque subscriber tokens and every link built from them.

Owns: the token format, ``TokenIndex`` (token -> address, for the web server) and the URLs of
``digest serve`` under ``settings.base_url`` (``links_for``: the one place that spells those
paths; the emails and the web app's routes both come from here, so the List-Unsubscribe header
points at exactly what the server answers). May import models and errors; pure: the secret is
always passed in, never read from the environment here.

A token is ``base64url(id || tag)`` (38 characters): ``id`` is the first 12 bytes of
HMAC-SHA256(secret, "paper-digest id:" + address), ``tag`` the first 16 bytes of
HMAC-SHA256(secret, "paper-digest tag:" + address). Nothing in it is readable without the
secret (the v1 token carried the address in base64). The server finds the address by ``id``
among the addresses it knows (the YAML's and the ledger's) and then compares ``tag`` in
constant time. No expiry: a link in an old email must keep working. Secrets shorter than
``MIN_SECRET_BYTES`` are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

from digest.errors import TokenError
from digest.models import MIN_SECRET_BYTES

_ID_BYTES = 12
_TAG_BYTES = 16

# Paths under base_url, shared by the emails and the server's routes.
UNSUBSCRIBE_PATH = "/u/{token}"
PREFERENCES_PATH = "/p/{token}"
ARCHIVE_PATH = "/a/{token}"
EDITION_PATH = "/a/{token}/{edition}"
# the matches that edition left out ("N more matched"); as short as EDITION_PATH, so the text
# part's line with the URL stays within 78 columns for a base_url of up to 26 characters
MORE_PATH = "/m/{token}/{edition}"
FEED_PATH = "/a/{token}/feed.atom"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise TokenError(f"the link secret is {len(key)} bytes; at least {MIN_SECRET_BYTES} "
                         "are needed")
    return key


def _mac(key: bytes, purpose: str, address: str, size: int) -> bytes:
    return hmac.new(key, f"paper-digest {purpose}:{address}".encode(), hashlib.sha256
                    ).digest()[:size]


def _normal(email: str) -> str:
    return email.strip().lower()


def make_token(email: str, secret: str | bytes) -> str:
    """The opaque URL-safe token of ``email`` (case-insensitive) under ``secret``."""
    key, address = _key(secret), _normal(email)
    return _b64(_mac(key, "id", address, _ID_BYTES) + _mac(key, "tag", address, _TAG_BYTES))


class TokenIndex:
    """Resolves tokens to the addresses it was given (``add``). A token of an address it does
    not know, a tampered token and a forged one are all the same ``TokenError``."""

    def __init__(self, secret: str | bytes, emails: Iterable[str] = ()) -> None:
        self._key = _key(secret)
        self._by_id: dict[bytes, str] = {}
        self.add(emails)

    def add(self, emails: Iterable[str]) -> None:
        for email in emails:
            address = _normal(email)
            self._by_id[_mac(self._key, "id", address, _ID_BYTES)] = address

    def __len__(self) -> int:
        return len(self._by_id)

    def resolve(self, token: str) -> str:
        """The address ``token`` names; ``TokenError`` for anything else."""
        text = token.strip()
        if len(text) != 38 or not text.isascii():
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(text + "==")
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        if len(raw) != _ID_BYTES + _TAG_BYTES or _b64(raw) != text:  # one spelling only
            raise TokenError("malformed token")
        address = self._by_id.get(raw[:_ID_BYTES])
        if address is None or not hmac.compare_digest(
                raw[_ID_BYTES:], _mac(self._key, "tag", address, _TAG_BYTES)):
            raise TokenError("unknown or tampered token")
        return address


@dataclass(frozen=True)
class Links:
    """The web pages of one subscriber under ``base_url`` (no trailing slash)."""

    base_url: str
    token: str

    def _url(self, path: str, **parts: str) -> str:
        return self.base_url + path.format(token=self.token, **parts)

    @property
    def unsubscribe(self) -> str:
        """The RFC 8058 one-click URL (POST) and its confirm page (GET)."""
        return self._url(UNSUBSCRIBE_PATH)

    @property
    def preferences(self) -> str:
        return self._url(PREFERENCES_PATH)

    @property
    def archive(self) -> str:
        return self._url(ARCHIVE_PATH)

    @property
    def feed(self) -> str:
        return self._url(FEED_PATH)

    def edition(self, edition: date) -> str:
        """"View in browser": the sent edition of that date."""
        return self._url(EDITION_PATH, edition=edition.isoformat())

    def more(self, edition: date) -> str:
        """"N more matched": the matches the edition of that date left out."""
        return self._url(MORE_PATH, edition=edition.isoformat())


def links_for(base_url: str, email: str, secret: str | bytes) -> Links:
    """The signed links of ``email`` under ``base_url``."""
    return Links(base_url.rstrip("/"), make_token(email, secret))


def unsubscribe_link(unsubscribe_url: str, email: str, secret: str | bytes) -> str:
    """``settings.unsubscribe_url`` (an unsubscribe handler of the admin's own, used when
    ``base_url`` is not set) with the signed token as its ``token`` query parameter."""
    sep = "&" if "?" in unsubscribe_url else "?"
    return f"{unsubscribe_url}{sep}token={quote(make_token(email, secret), safe='-_')}"
