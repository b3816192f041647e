"""Sent editions for the browser and feed readers: the HTML, subject and text of a stored
message (the exact bytes the ledger archived), and the per-subscriber Atom feed (RFC 4287).

Pure: bytes and values in, strings out. May import models and the ledger's row types.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from xml.sax.saxutils import escape

from digest.ledger import ArchivedEdition

FEED_ENTRIES = 30  # the newest editions a feed lists
_SUMMARY_CHARS = 600


@dataclass(frozen=True)
class SentEdition:
    """A stored message, opened."""

    subject: str
    html: str | None
    text: str | None


def open_message(data: bytes) -> SentEdition:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))

    def content(part: object) -> str | None:  # the wire's CRLF back to plain newlines
        return None if part is None else str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]

    return SentEdition(subject=str(msg.get("Subject", "")), html=content(html_part),
                       text=content(text_part))


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def atom_feed(*, title: str, feed_url: str, archive_url: str,
              entries: Sequence[tuple[ArchivedEdition, SentEdition, str]],
              updated: datetime) -> str:
    """The feed of one subscriber's digests: (row, opened message, its URL), newest first."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
           f"<title>{escape(title)}</title>", f"<id>{escape(feed_url)}</id>",
           f'<link rel="self" type="application/atom+xml" href="{escape(feed_url)}"/>',
           f'<link rel="alternate" type="text/html" href="{escape(archive_url)}"/>',
           f"<updated>{_stamp(entries[0][0].sent_at if entries else updated)}</updated>",
           "<author><name>paper-digest</name></author>"]
    for row, sent, url in entries[:FEED_ENTRIES]:
        summary = " ".join((sent.text or "").split())[:_SUMMARY_CHARS]
        out += ["<entry>", f"<title>{escape(sent.subject or row.edition.isoformat())}</title>",
                f"<id>{escape(url)}</id>", f'<link rel="alternate" type="text/html" '
                f'href="{escape(url)}"/>', f"<updated>{_stamp(row.sent_at)}</updated>",
                f"<published>{_stamp(row.sent_at)}</published>"]
        if summary:
            out.append(f'<summary type="text">{escape(summary)}</summary>')
        if sent.html:
            out.append(f'<content type="html">{escape(sent.html)}</content>')
        out.append("</entry>")
    out.append("</feed>\n")
    return "\n".join(out)
