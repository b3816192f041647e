"""Opaque signed tokens: stable, unreadable, resolvable only by an index that knows the address,
and refused when tampered, forged or signed with a short key; the links built from them."""

from __future__ import annotations

import base64
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.compose import TokenIndex, links_for, make_token
from digest.errors import TokenError
from digest.compose._tokens import unsubscribe_link

SECRET = "k" * 32
OTHER = "o" * 32


def test_round_trip_lowercases_and_is_stable() -> None:
    token = make_token(" Ada@Example.ORG ", SECRET)
    assert token == make_token("ada@example.org", SECRET)
    assert len(token) == 38 and token.replace("-", "").replace("_", "").isalnum()
    index = TokenIndex(SECRET, ["bob@example.org", "Ada@example.org"])
    assert index.resolve(token) == "ada@example.org"
    assert TokenIndex(SECRET.encode(), ["ada@example.org"]).resolve(token) == "ada@example.org"


def test_the_token_does_not_carry_the_address() -> None:
    token = make_token("ada@example.org", SECRET)
    raw = base64.urlsafe_b64decode(token + "==")
    assert b"ada" not in raw and b"example" not in raw and "ada" not in token
    assert make_token("ada@example.org", OTHER) != token  # keyed: no table of addresses helps


def test_unicode_address_round_trips() -> None:
    token = make_token("jürgen@bücher.de", SECRET)
    assert TokenIndex(SECRET, ["jürgen@bücher.de"]).resolve(token) == "jürgen@bücher.de"


def _flip(token: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[at] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("mangle", [
    lambda t: _flip(t, 0),                        # id changed
    lambda t: _flip(t, 27),                       # tag changed (last byte)
    lambda t: t[:-1] + ("B" if t[-1] == "A" else "A"),  # a second spelling of the last bits
    lambda t: make_token("ada@example.org", OTHER),   # another key
    lambda t: make_token("eve@example.org", SECRET),  # a real token of an unknown address
    lambda t: t[:12] + make_token("bob@example.org", SECRET)[12:],  # ada's id, bob's tag
    lambda t: t[:-1],
    lambda t: t + "A",
    lambda t: "!" * 38,
    lambda t: "",
])
def test_tampered_and_forged_tokens_are_refused(mangle: object) -> None:
    index = TokenIndex(SECRET, ["ada@example.org", "bob@example.org"])
    token = make_token("ada@example.org", SECRET)
    bad = mangle(token)  # type: ignore[operator]
    assert bad != token
    with pytest.raises(TokenError):
        index.resolve(bad)


@pytest.mark.parametrize("secret", ["", "short", "k" * 31, b"k" * 31])
def test_short_secrets_are_refused(secret: str | bytes) -> None:
    with pytest.raises(TokenError, match="at least 32"):
        make_token("ada@example.org", secret)
    with pytest.raises(TokenError, match="at least 32"):
        TokenIndex(secret)


def test_links_share_one_token_and_name_the_edition() -> None:
    links = links_for("https://digest.example.org/news/", "Ada@example.org", SECRET)
    token = make_token("ada@example.org", SECRET)
    assert links.unsubscribe == f"https://digest.example.org/news/u/{token}"
    assert links.preferences == f"https://digest.example.org/news/p/{token}"
    assert links.archive == f"https://digest.example.org/news/a/{token}"
    assert links.feed == f"https://digest.example.org/news/a/{token}/feed.atom"
    assert links.edition(date(2026, 11, 25)) == \
        f"https://digest.example.org/news/a/{token}/2026-11-25"


def test_external_handler_link_carries_the_token() -> None:
    url = unsubscribe_link("https://digest.example.org/u?lang=en", "ada@example.org", SECRET)
    query = parse_qs(urlsplit(url).query)
    assert query["lang"] == ["en"]
    assert TokenIndex(SECRET, ["ada@example.org"]).resolve(query["token"][0]) == \
        "ada@example.org"
