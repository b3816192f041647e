"""``normalized_address`` (the subscriber address check, with its cached domains) gives what
email-validator gives for every address, and refuses what it refuses with its message."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from digest.config._schema import normalized_address

EDGES = [
    "Reader.One@Example.ORG", "a+tag@example.org", "o'brien@example.ie", "x_y-z@sub.example.co.uk",
    "a..b@example.org", ".a@example.org", "a.@example.org", "a@example", "x@localhost",
    "x@foo.test", "x@Ex-ample.org", "x@-example.org", "x@example-.org", "A+b@xn--bcher-kva.example",
    "a@b.c0m", "a@123.456", "a@[192.0.2.1]", '"quoted"@example.org', "jösé@example.org",
    "a@bücher.example", "a b@example.org", "a@b@example.org", "@example.org", "a@",
    "a@exa_mple.org", "a@ab--cd.example.org", "a@xn--zz.example", "{}|~^`@example.org",
    "x" * 64 + "@example.org", "x" * 65 + "@example.org", "a@" + "b" * 63 + ".org",
    "a@" + "b" * 64 + ".org", "a@" + ".".join(["c" * 60] * 4) + ".org", "a@example.org.",
    "a@EXAMPLE.ORG", "a@.example.org", "a@example..org", "a@例え.テスト", "a@example.invalid",
]


def _expected(value: str) -> str | type[EmailNotValidError]:
    try:
        return str(validate_email(value, check_deliverability=False,
                                  allow_smtputf8=False).normalized)
    except EmailNotValidError:
        return EmailNotValidError


def _corpus() -> list[str]:
    rnd = random.Random(16)
    alphabet = "abcXYZ019.+-_'!#~"
    domains = ["example.org", "Example.ORG", "mit.edu", "xn--bcher-kva.example", "a.test",
               "localhost", "bad_domain.org", "x.y", "ex-.org", "sub.example.co.uk"]
    out = []
    for _ in range(3000):
        local = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        out.append(f"{local}@{rnd.choice(domains)}")
    return out


def _check(value: str) -> None:
    want = _expected(value)
    if want is EmailNotValidError:
        with pytest.raises(EmailNotValidError) as caught:
            normalized_address(value)
        with pytest.raises(EmailNotValidError) as direct:
            validate_email(value, check_deliverability=False, allow_smtputf8=False)
        assert str(caught.value) == str(direct.value)  # its own message, for the config error
    else:
        assert normalized_address(value) == want


@pytest.mark.parametrize("value", EDGES)
def test_same_as_email_validator(value: str) -> None:
    _check(value)


def test_same_as_email_validator_on_random_addresses() -> None:
    corpus = _corpus()
    for value in corpus:  # the domains repeat: most of these take the cached domain
        _check(value)
    assert sum(_expected(v) is not EmailNotValidError for v in corpus) > 1000  # both kinds
