"""build_message: the bytes parse back to the same values, and nothing can inject a header."""

from __future__ import annotations

import email
import email.header
import email.policy
import random
import re
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from digest.delivery import build_message
from digest.delivery._message import (
    encode_text_header,
    make_message_id,
    sanitize_display_name,
    sanitize_header_text,
)
from digest.errors import DeliveryError
from digest.models import Digest, RenderedEmail, Settings, Subscriber

NOW = datetime(2026, 11, 25, 7, 30, tzinfo=timezone(timedelta(hours=1)))
EDITION = date(2026, 11, 25)
SETTINGS = Settings(sender="Paper Digest <digest@example.org>", list_id="papers.example.org")
EXPECTED_HEADERS = [
    "from", "to", "subject", "date", "message-id", "mime-version", "list-id",
    "list-unsubscribe", "auto-submitted", "x-auto-response-suppress", "content-type",
]

HOSTILE = [
    "=?UTF-8?Q?=0A?=Bcc: x@evil.example",  # CVE-2024-6923
    "Hello\r\nBcc: x@evil.example",
    "Hello\nBcc: x@evil.example",
    "Hello\rBcc: x@evil.example",
    "Tab\there\x0bvt\x0cff\x00nul\x7fdel",
    "NEL\x85Bcc: x@evil.example",
    "LS\u2028Bcc: x@evil.example PS\u2029Cc: y@evil.example",
    "=?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?=",  # base64 of "\r\nBcc: x@evil.example"
    'Quotes " and \\ backslash, commas; <angle> (paren) @at',
]
NON_ASCII = [
    "Ünïcödé tïtlé: attention is all you need",
    "深層学習による論文要約の研究と評価",
    "Emoji 🚀 and math ∑ᵢ xᵢ² — dashes",
    "A" * 300,  # one long word, longer than any header line may be
    " ".join(["word"] * 60),  # long but foldable
    "Ελληνικά " * 30,
]


def make(subject: str = "Your papers", name: str | None = "Ana Müller",
         text: str = "Hello\n", html: str = "<p>Hello</p>", *,
         to: str = "ana@example.org", unsubscribe_url: str | None = None,
         mailto: str | None = "mailto:digest@example.org?subject=unsubscribe") -> bytes:
    sub = Subscriber(email=to, name=name, timezone="Europe/Berlin", schedule="0 7 * * *",
                     max_papers=5, topics=())
    digest = Digest(subscriber=sub, edition=EDITION, generated_at=NOW, items=(),
                    unsubscribe_url=unsubscribe_url, unsubscribe_mailto=mailto)
    rendered = RenderedEmail(subject=subject, html=html, text=text, papers=())
    return build_message(rendered, digest, SETTINGS, now=NOW).data


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n")
            if not line.startswith((" ", "\t"))]


def bodies(msg: EmailMessage) -> list[tuple[str, str]]:
    """(type, text) of each part; line breaks are CRLF on the wire (MIME canonical form)."""
    return [(p.get_content_type(), p.get_content().replace("\r\n", "\n"))
            for p in msg.iter_parts()]


@pytest.mark.parametrize("value", HOSTILE + NON_ASCII)
def test_round_trip_subject_names_and_parts(value: str) -> None:
    text = f"Plain {value}\nsecond line\n"
    html = f"<p>{value}</p>"
    # Names short enough for one encoded word: CPython's address parser keeps the blank
    # between adjacent encoded words in a display name, against RFC 2047 6.2 (long names are
    # checked with an RFC-conforming decoder below).
    name = value[:14]
    data = make(subject=value, name=name, text=text, html=html)
    msg = parse(data)
    assert msg["Subject"] == sanitize_header_text(value)
    assert msg["To"].addresses[0].display_name == sanitize_header_text(name)
    assert msg["To"].addresses[0].addr_spec == "ana@example.org"
    assert msg["From"].addresses[0].display_name == "Paper Digest"
    assert msg.get_content_type() == "multipart/alternative"
    # text line breaks of any style arrive as line breaks
    newline = text.replace("\r\n", "\n").replace("\r", "\n")
    assert bodies(msg) == [("text/plain", newline),
                           ("text/html", html.replace("\r\n", "\n").replace("\r", "\n"))]
    assert msg.defects == [] and all(p.defects == [] for p in msg.iter_parts())


@pytest.mark.parametrize("value", NON_ASCII + HOSTILE)
def test_long_display_names_decode_per_rfc_2047(value: str) -> None:
    data = make(name=value * 3)
    raw_to = next(line for line in data.split(b"\r\n\r\n")[0].decode().replace("\r\n ", " ")
                  .split("\r\n") if line.startswith("To: "))
    phrase = raw_to[4:].rsplit(" <", 1)[0]
    decoded = str(email.header.make_header(email.header.decode_header(phrase)))
    expected = sanitize_header_text(value * 3)
    assert decoded == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_never_start_a_header(value: str) -> None:
    data = make(subject=value, name=value, text=value, html=value)
    assert header_names(data) == EXPECTED_HEADERS
    msg = parse(data)
    assert [k.lower() for k in msg.keys()] == EXPECTED_HEADERS
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert [str(a) for a in msg["To"].addresses][0].endswith("<ana@example.org>")


@pytest.mark.parametrize("value", HOSTILE + NON_ASCII)
def test_wire_format_is_7bit_crlf_with_short_lines(value: str) -> None:
    data = make(subject=value, name=value, text=value * 40, html=value * 400)
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78  # well inside the 998 hard limit
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


def test_a_huge_single_line_html_is_wrapped_and_intact() -> None:
    html = "<td>" + "x" * 100_000 + "é</td>"
    msg = parse(make(html=html))
    assert bodies(msg)[1] == ("text/html", html)


def test_encoding_per_part_is_the_smaller_one() -> None:
    msg = parse(make(text="Mostly ASCII with one é\n", html="日本語" * 50))
    text_part, html_part = msg.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part["Content-Transfer-Encoding"] == "base64"
    assert text_part.get_content_charset() == "utf-8"


def test_boundary_never_appears_in_a_body() -> None:
    data = make(text="--=_ looks like a boundary\n=_\n", html="<p>=_ --=_</p>")
    boundary = parse(data).get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    assert data.count(boundary.encode()) == 4  # the header, two separators, the closing one


def test_headers_say_what_they_should() -> None:
    msg = parse(make())
    assert msg["From"] == "Paper Digest <digest@example.org>"
    assert msg["To"] == "Ana Müller <ana@example.org>"
    assert msg["Date"].datetime == NOW
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "Paper Digest <papers.example.org>"
    assert msg["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] is None  # no https URL: no one-click promise
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "OOF, AutoReply"  # NDRs still come back
    assert msg["Message-ID"] == make_message_id("ana@example.org", EDITION, "example.org")


def test_one_click_unsubscribe_when_an_https_url_is_set() -> None:
    url = "https://digest.example.org/u?e=ana%40example.org&t=ab,cd ef"
    msg = parse(make(unsubscribe_url=url))
    assert msg["List-Unsubscribe"] == (
        "<mailto:digest@example.org?subject=unsubscribe>, "
        "<https://digest.example.org/u?e=ana%40example.org&t=ab%2Ccd%20ef>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_defaults_to_the_sender() -> None:
    msg = parse(make(mailto=None))
    assert msg["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe>"


def test_message_id_is_stable_per_subscriber_edition() -> None:
    a = make_message_id("Ana@Example.org", EDITION, "example.org")
    assert a == make_message_id("ana@example.org", EDITION, "example.org")
    assert a != make_message_id("bob@example.org", EDITION, "example.org")
    assert a != make_message_id("ana@example.org", EDITION + timedelta(days=1), "example.org")
    assert re.fullmatch(r"<digest\.2026-11-25\.[0-9a-f]{20}@example\.org>", a)
    assert "ana" not in a
    assert make() == make()  # the whole message is deterministic


def test_envelope_addresses_and_idn_domains() -> None:
    sub = Subscriber(email="jose@bücher.example", name=None, timezone="UTC",
                     schedule="0 7 * * *", max_papers=5, topics=())
    digest = Digest(subscriber=sub, edition=EDITION, generated_at=NOW, items=())
    out = build_message(RenderedEmail(subject="s", html="h", text="t", papers=()), digest,
                        SETTINGS, now=NOW)
    assert (out.sender, out.recipient) == ("digest@example.org", "jose@xn--bcher-kva.example")
    assert parse(out.data)["To"] == "jose@xn--bcher-kva.example"


@pytest.mark.parametrize("address", [
    "ana@example.org\r\nBcc: x@evil.example",
    "ana@example.org, x@evil.example",
    "Ana <ana@example.org>",
    "no-at-sign",
    "jösé@example.org",
])
def test_unsafe_recipient_addresses_are_refused(address: str) -> None:
    with pytest.raises(DeliveryError) as info:
        make(to=address)
    assert info.value.temporary is False


def test_naive_now_is_refused() -> None:
    sub = Subscriber(email="a@example.org", name=None, timezone="UTC", schedule="0 7 * * *",
                     max_papers=5, topics=())
    digest = Digest(subscriber=sub, edition=EDITION, generated_at=NOW, items=())
    with pytest.raises(ValueError, match="timezone-aware"):
        build_message(RenderedEmail(subject="s", html="h", text="t", papers=()), digest,
                      SETTINGS, now=datetime(2026, 11, 25, 7, 0))


def test_encode_text_header_plain_ascii_is_left_readable() -> None:
    assert encode_text_header("Subject", "Your papers for Tuesday") == (
        "Subject: Your papers for Tuesday\r\n")
    folded = encode_text_header("Subject", " ".join(["paper"] * 30))
    assert "=?" not in folded and folded.count("\r\n ") >= 1


def test_a_header_line_over_998_characters_is_refused() -> None:
    with pytest.raises(DeliveryError, match="998"):
        make(unsubscribe_url="https://example.org/u?t=" + "a" * 1000)


def test_spaces_collapse_but_unicode_spaces_survive() -> None:
    assert sanitize_header_text("  a \t\r\n  b\xa0c\u3000d  ") == "a b\xa0c\u3000d"
    msg = parse(make(subject="Fig.\xa01   and\u3000more"))
    assert msg["Subject"] == "Fig.\xa01 and\u3000more"


def test_message_id_host_is_always_a_safe_domain() -> None:
    assert make_message_id("a@x.org", EDITION, "bücher.example").endswith(
        "@xn--bcher-kva.example>")
    assert make_message_id("a@x.org", EDITION, "ex ample>\r\nBcc: y").endswith(
        "@ex-ample--Bcc--y>")
    assert make_message_id("a@x.org", EDITION, "").endswith("@localhost>")


FUZZ_ROUNDS = 120  # ~1 s; run with more locally after touching the header writer


def test_random_hostile_strings_round_trip_without_new_headers() -> None:
    # A seeded fuzz over the characters that break headers, fold lines or look like encoded
    # words, mixed with multi-byte text.
    rng = random.Random(6923)
    alphabet = list("aZ09 _-=?:;,.<>\"\\()[]@\t\r\n\x00\x0b\x1b\x7f\x85\u2028\u2029\xa0é日🚀")
    alphabet += ["=?UTF-8?Q?", "?=", "=0A", "=?utf-8?b?", "Bcc: ", "\r\n "]
    for _ in range(FUZZ_ROUNDS):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        data = make(subject=value, name=value[:14], text=value, html=value)
        assert header_names(data) == EXPECTED_HEADERS, value
        head = data.split(b"\r\n\r\n", 1)[0]
        assert all(line.strip() and len(line) <= 78 for line in head.split(b"\r\n")), value
        msg = parse(data)
        assert msg["Subject"] == sanitize_header_text(value), value
        assert msg["To"].addresses[0].display_name == sanitize_display_name(value[:14]), value
        assert msg["To"].addresses[0].addr_spec == "ana@example.org"
