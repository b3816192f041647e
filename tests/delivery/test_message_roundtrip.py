"""A rendered digest through build_message and back through the stdlib parser: the decoded
parts are exactly what the renderer produced, whatever the titles and names hold (non-ASCII,
very long words, header-injection attempts), and the message stays 7-bit and well formed."""

from __future__ import annotations

import binascii
import dataclasses
import email
import email.policy
import random
from datetime import date, datetime, timezone
from email.message import EmailMessage

import pytest

from digest.delivery import build_message
from digest.delivery._message import quoted_printable
from digest.models import (
    Digest,
    DigestItem,
    Paper,
    Pick,
    Rank,
    Reason,
    Settings,
    Subscriber,
    Summary,
    Topic,
)
from digest.render import Renderer
from digest.render._record import seven_bit_html

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
INJECTIONS = [
    "=?UTF-8?Q?=0A?=Bcc: x@evil.example",  # CVE-2024-6923
    "Hello\r\nBcc: x@evil.example",
    "LS\u2028Bcc: x@evil.example",
]
TITLES = [
    "Ünïcödé tïtlé: attention — is all you need ▲ «quoted»",
    "深層学習による論文要約の研究と評価",
    "Emoji 🚀 and math ∑ᵢ xᵢ²",
    "Supercalifragilistic" * 60,  # one word of 1,200 characters
    *INJECTIONS,
]


def hostile_digest(name: str, topic_name: str, titles: list[str] = TITLES) -> Digest:
    topic = Topic(name=topic_name, include=("attention",))
    sub = Subscriber(email="ana@example.org", name=name, timezone="UTC",
                     schedule="0 7 * * *", max_papers=10, topics=(topic,))
    items = tuple(
        DigestItem(
            pick=Pick(paper=Paper(id=f"2411.0{i}123", title=title, abstract="An abstract.",
                                  authors=("Zoë Ådler", "Łukasz Ñúñez", "Grace\r\nBcc: x@e"),
                                  url=f"https://arxiv.org/abs/2411.0{i}123", upvotes=i),
                      topics=(topic_name,), rank=Rank(1, 1, 10 - i),
                      reasons=(Reason(topic_name, "attention", "title"),)),
            summary=Summary(paper_id=f"2411.0{i}123", title=title,
                            headline=f"Claim {i}: {title[:200]} improves by 3% ± 0.2.",
                            results=("Ergebnis: größer, schneller, naïve → better.",)))
        for i, title in enumerate(titles))
    return Digest(subscriber=sub, edition=date(2026, 11, 25), generated_at=NOW, items=items,
                  unsubscribe_mailto="mailto:digest@example.org?subject=unsubscribe",
                  unsubscribe_url="https://digest.example.org/u/abc",
                  publisher="Paper Digest", sender_address="digest@example.org")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


CASES = [(name, topic, long_word) for name in ["Zoë Müller-Łęcka", *INJECTIONS, "W" * 200]
         for topic in ["Attention ▲", INJECTIONS[0]] for long_word in (False, True)]


@pytest.mark.parametrize(("name", "topic", "long_word"), CASES)
def test_decoded_parts_are_what_render_produced(renderer: Renderer, name: str,
                                                topic: str, long_word: bool) -> None:
    titles = TITLES if long_word else [t for t in TITLES if len(t) < 200]
    digest = hostile_digest(name, topic, titles)
    rendered = renderer.render(digest)
    assert rendered.papers  # the cards are there: the check below covers them
    settings = Settings(sender=f"{name} via Paper Digest <digest@example.org>")
    data = build_message(rendered, digest, settings, now=NOW).data
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))

    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects
    assert msg["Bcc"] is None and msg["Cc"] is None  # no injected header
    assert msg["Subject"] == rendered.subject
    text, html = msg.iter_parts()
    assert not text.defects and not html.defects
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    # MIME canonical form has CRLF line ends; the renderer's parts have LF
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html
    # the renderer's HTML is 7-bit already: it goes as it is, unless a word longer than a
    # line may be (the 1,200-character title) keeps it quoted-printable
    assert html["Content-Transfer-Encoding"] == ("quoted-printable" if long_word else "7bit")


def test_non_ascii_where_references_mean_nothing_goes_quoted_printable(
        renderer: Renderer) -> None:
    # seven_bit_html leaves non-ASCII inside <style> as it is (a character reference means
    # nothing there): such an HTML part is quoted-printable, and still decodes as rendered
    digest = hostile_digest("Zoë", "Attention")
    rendered = renderer.render(digest)
    html = seven_bit_html('<html><head><style>.b::before { content: "\u25b2"; }</style>'
                          "</head><body><p class=\"b\">Zoë ▲</p></body></html>")
    assert '"\u25b2"' in html and "Zo&#235; &#9650;" in html
    styled = dataclasses.replace(rendered, html=html)
    data = build_message(styled, digest, Settings(sender="P <digest@example.org>"),
                         now=NOW).data
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text, part = msg.iter_parts()
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert part.get_content().replace("\r\n", "\n") == html


def test_a_body_holding_the_boundary_delimiter_is_encoded(renderer: Renderer) -> None:
    digest = hostile_digest("Ana", "Attention")
    rendered = renderer.render(digest)
    settings = Settings(sender="P <digest@example.org>")
    first = build_message(rendered, digest, settings, now=NOW).data
    msg = email.message_from_bytes(first, policy=email.policy.default)
    boundary = msg.get_boundary()
    assert boundary is not None
    # a text part that holds this very message's delimiter on a line of its own
    sneaky = dataclasses.replace(rendered, text=f"Hi\n--{boundary}\nBcc: x@evil.example\n")
    data = build_message(sneaky, digest, settings, now=NOW).data
    assert data.count(f"--{boundary}".encode()) == 3  # two separators and the closing one
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text, html = parsed.iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().replace("\r\n", "\n") == sneaky.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html


# Pieces that move binascii's choices: blanks before a line end or at the end of the data,
# '=', a lone '.', NUL, DEL, non-ASCII, lines just under and over the 76-character soft break.
QP_PIECES = [b"a", b" ", b"\t", b"=", b".", b"\n", b"\n\n", b"\xc3\xa9", b"\x00", b"\x7f",
             b"_", b"~", b"x" * 70, b"y" * 74, b"z" * 80]


def test_quoted_printable_line_by_line_is_binascii_over_the_whole_text() -> None:
    # quoted_printable encodes each distinct line once and keeps it: the same bytes as
    # binascii over the whole body, on first sight of a line and on replay alike
    rnd = random.Random(16)
    texts = [b"", b"\n", b"a \n", b"a ", b".", b".\n.", b" " * 90, b"w" * 75 + b" \n"]
    texts += [b"".join(rnd.choice(QP_PIECES) for _ in range(rnd.randint(0, 24)))
              for _ in range(20_000)]
    for raw in texts:
        whole = binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False)
        assert quoted_printable(raw) == whole.replace(b"\n", b"\r\n"), raw
        assert quoted_printable(raw) == whole.replace(b"\n", b"\r\n"), raw


def test_quoted_printable_matches_binascii_on_rendered_text_parts(renderer: Renderer) -> None:
    for name in ("Zoë Müller-Łęcka", "Ana"):
        text = renderer.render(hostile_digest(name, "Attention ▲")).text.encode()
        whole = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        assert quoted_printable(text) == whole.replace(b"\n", b"\r\n")
