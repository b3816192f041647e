"""Signed unsubscribe tokens: sign, verify, tamper, and the handler recording a suppression."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.compose._tokens import (
    TokenError,
    handle_unsubscribe,
    make_token,
    unsubscribe_link,
    verify_token,
)
from digest.ledger import Ledger

SECRET = "s3cret-key"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


def test_round_trip_lowercases_and_is_stable() -> None:
    token = make_token(" Ada@Example.ORG ", SECRET)
    assert token == make_token("ada@example.org", SECRET)
    assert token.startswith("v1.")
    assert verify_token(token, SECRET) == "ada@example.org"
    assert verify_token(token, SECRET.encode()) == "ada@example.org"


def test_unicode_address_round_trips() -> None:
    assert verify_token(make_token("jürgen@bücher.de", SECRET), SECRET) == "jürgen@bücher.de"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),       # signature changed
    lambda t: "v1." + make_token("eve@x.org", SECRET).split(".")[1] + "." + t.split(".")[2],
    lambda t: "v2" + t[2:],                                             # unknown version
    lambda t: t.replace(".", "", 1),                                    # wrong shape
    lambda t: "v1.!!!.###",                                             # not base64
    lambda t: "",
])
def test_tampered_tokens_are_refused(mangle: object) -> None:
    token = make_token("ada@example.org", SECRET)
    bad = mangle(token)  # type: ignore[operator]
    with pytest.raises(TokenError):
        verify_token(bad, SECRET)


def test_other_secret_is_refused() -> None:
    with pytest.raises(TokenError, match="signature does not match"):
        verify_token(make_token("ada@example.org", SECRET), "another")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(TokenError, match="secret is empty"):
        make_token("ada@example.org", "")


def test_link_carries_the_token() -> None:
    url = unsubscribe_link("https://digest.example.org/u?lang=en", "ada@example.org", SECRET)
    query = parse_qs(urlsplit(url).query)
    assert query["lang"] == ["en"]
    assert verify_token(query["token"][0], SECRET) == "ada@example.org"


def test_handler_records_suppression_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "digest.db")
    token = make_token("Ada@Example.org", SECRET)
    assert handle_unsubscribe(ledger, token, SECRET, now=NOW) == "ada@example.org"
    assert handle_unsubscribe(ledger, token, SECRET, now=NOW) == "ada@example.org"
    assert ledger.suppressed() == frozenset({"ada@example.org"})


def test_handler_records_nothing_for_a_forgery(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with pytest.raises(TokenError):
        handle_unsubscribe(Ledger(db), make_token("ada@example.org", "wrong"), SECRET, now=NOW)
    assert not db.exists()
