"""Turn a rendered email into the exact bytes that go on the wire.

Owns: ``build_message`` (one subscriber's edition -> ``OutgoingMessage``), the stable
``make_message_id``, and the small header/body writer behind them. May import ``models``,
``errors`` and ``_dkim`` (the signature over the finished bytes, when ``settings.dkim`` is set);
pure (no I/O, ``now`` is a parameter).

Why a hand-written writer instead of ``email.message.EmailMessage``: the stdlib folder in this
machine's Python 3.11.7 turns a literal encoded word such as ``=?UTF-8?Q?=0A?=Bcc: x@evil`` in a
subject into a real header (CVE-2024-6923), and the stock build+serialize costs ~2.5 ms a message
(see ``bench/bench_mime.py``). Here every header value is sanitized (no control characters, no
U+2028/2029/NEL) and then either written as plain folded ASCII or as RFC 2047 encoded words we
produce ourselves, so no input text can ever start a header line.

Decisions:
- ``Auto-Submitted: auto-generated`` (RFC 3834) so vacation responders stay quiet, plus
  ``X-Auto-Response-Suppress: OOF, AutoReply`` which Exchange/Outlook honour instead (not
  "All": that would also suppress the non-delivery reports that tell us an address is dead).
- No ``Precedence: bulk``: RFC 2076 discourages it, RFC 3834 responders already stop at the
  ``List-Id``/``Auto-Submitted`` headers, and it adds nothing for Gmail/Outlook filtering.
- Each body part that is already 7-bit text (ASCII, lines <= 998 octets: the renderer writes
  its HTML that way, docs/render.md) goes as ``7bit``, unchanged: what a reader decodes is the
  very text rendered, and nothing is spent encoding it. Any other part is quoted-printable
  when mostly ASCII (readable, small) and base64 when QP would be larger (CJK, etc.), lines
  <= 76 characters. CRLF line ends, 7-bit clean either way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import format_datetime
from urllib.parse import quote

from digest.delivery._dkim import sign_message
from digest.errors import DeliveryError
from digest.models import Digest, RenderedEmail, Settings

__all__ = [
    "OutgoingMessage",
    "build_message",
    "make_message_id",
    "parse_sender",
    "sanitize_header_text",
    "sanitize_display_name",
    "encode_text_header",
    "format_address",
    "check_address",
]

CRLF = "\r\n"


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for a transport.

    ``sender`` and ``recipient`` are bare addresses for the SMTP envelope (MAIL FROM / RCPT TO);
    ``message_id`` is the full header value including angle brackets (``<...@domain>``);
    ``data`` is the complete RFC 5322 message, CRLF line ends, 7-bit ASCII (what an .eml holds).
    """

    sender: str
    recipient: str
    message_id: str
    data: bytes = field(repr=False)  # ~30 KB: keep it out of logs and tracebacks


# --------------------------------------------------------------------------- sanitizing

# C0 controls, DEL, C1 controls (incl. NEL U+0085), and the Unicode line/paragraph separators.
# Any of these in a header value could end or split a header line in some parser.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(" {2,}")


def sanitize_header_text(value: str) -> str:
    """A single-line, control-free version of ``value``: every control character (tabs and
    line breaks included), line or paragraph separator becomes a space, runs of spaces collapse
    (a fold must never leave a blank continuation line), ends are trimmed. Other Unicode spaces
    (NBSP, ideographic space) are kept: they break no header and are encoded anyway."""
    if value.isascii() and value.isprintable():  # most values: no control character to find
        return (_SPACES.sub(" ", value) if "  " in value else value).strip(" ")
    return _SPACES.sub(" ", _UNSAFE.sub(" ", value)).strip(" ")


# --------------------------------------------------------------------------- RFC 2047

# Characters RFC 2047 section 5(3) allows unencoded inside a Q-encoded word in a phrase; the
# strictest context, so the same encoder is safe for Subject and display names alike.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TABLE = tuple(
    chr(b) if b in _Q_SAFE else ("_" if b == 0x20 else f"={b:02X}") for b in range(256)
)
_WORD_MAX = 75  # RFC 2047: an encoded word is at most 75 characters
_Q_PREFIX, _B_PREFIX, _SUFFIX = "=?UTF-8?Q?", "=?UTF-8?B?", "?="


def _chunks_utf8(text: str, fits: int, cost: Callable[[str], int]) -> list[str]:
    """Split ``text`` into pieces whose encoded size stays within ``fits``, never splitting a
    character (a decoder must be able to decode each word on its own)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for ch in text:
        c = cost(ch)
        if current and size + c > fits:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += c
    if current:
        pieces.append("".join(current))
    return pieces


def _q_cost(ch: str) -> int:
    return sum(len(_Q_TABLE[b]) for b in ch.encode("utf-8"))


def _encoded_words(text: str, limit: int = _WORD_MAX) -> list[str]:
    """``text`` as RFC 2047 encoded words of at most ``limit`` characters (Q for mostly-ASCII
    text, B otherwise)."""
    raw = text.encode("utf-8")
    q_len = sum(len(_Q_TABLE[b]) for b in raw)
    b_len = (len(raw) + 2) // 3 * 4
    if q_len <= b_len:
        room = limit - len(_Q_PREFIX) - len(_SUFFIX)
        return [_Q_PREFIX + "".join(_Q_TABLE[b] for b in piece.encode("utf-8")) + _SUFFIX
                for piece in _chunks_utf8(text, room, _q_cost)]
    room = (limit - len(_B_PREFIX) - len(_SUFFIX)) // 4 * 3  # raw bytes per word
    return [_B_PREFIX + base64.b64encode(piece.encode("utf-8")).decode("ascii") + _SUFFIX
            for piece in _chunks_utf8(text, room, lambda ch: len(ch.encode("utf-8")))]


def _word_limit(name: str) -> int:
    # Each word must fit on a line of 78 even right after "Name: ".
    return min(_WORD_MAX, 78 - len(name) - 2)


_PLAIN_OK = re.compile(r"[\x20-\x7e]*")
_LONG_WORD = 70


def _needs_encoding(text: str) -> bool:
    # "=?" must be encoded too: a reader would otherwise decode attacker-written encoded words
    # (the CVE-2024-6923 payload) instead of showing the literal text.
    return (not _PLAIN_OK.fullmatch(text) or "=?" in text
            or (len(text) > _LONG_WORD and max(map(len, text.split(" "))) > _LONG_WORD))


def _fold(name: str, tokens: list[str]) -> str:
    """``Name: tok tok ...`` folded before whitespace so lines stay <= 78 characters when the
    tokens allow it (every token is short: long text is encoded into <= 75-char words)."""
    lines: list[str] = []
    line = f"{name}:"
    for i, tok in enumerate(tokens):
        if i and len(line) + 1 + len(tok) > 78:
            lines.append(line)
            line = ""
        line += " " + tok
    lines.append(line)
    return CRLF.join(lines) + CRLF


def encode_text_header(name: str, value: str) -> str:
    """A complete unstructured header line (``Subject``-like), sanitized, encoded when needed
    and folded, ending with CRLF."""
    text = sanitize_header_text(value)
    if _needs_encoding(text):
        return _fold(name, _encoded_words(text, _word_limit(name)))
    return _fold(name, text.split(" ") if text else [""])


_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")


def sanitize_display_name(name: str) -> str:
    """``sanitize_header_text`` plus every Unicode space made a plain one: address parsers
    (CPython's among them) collapse such spaces in names anyway."""
    return " ".join(sanitize_header_text(name).split())


def _phrase(name: str, header: str) -> list[str]:
    """A display name as RFC 5322 phrase tokens: atoms, one quoted string, or encoded words."""
    text = sanitize_display_name(name)
    if not text:
        return []
    if _needs_encoding(text):
        return _encoded_words(text, _word_limit(header))
    if _ATEXT_PHRASE.fullmatch(text):
        return text.split(" ")
    if len(text) > 60:  # a quoted string cannot be folded safely; encoded words can
        return _encoded_words(text, _word_limit(header))
    return ['"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"']


_ADDR = re.compile(r"[^\s<>(),;:\\\"\[\]@]+@[^\s<>(),;:\\\"\[\]@]+")


def check_address(address: str) -> str:
    """``address`` as a bare envelope/header address (IDNA domain), or ``DeliveryError``.

    The config already validated it; this is defence in depth so an address can never carry a
    header break or a second recipient."""
    addr = address.strip()
    if not _ADDR.fullmatch(addr) or _UNSAFE.search(addr):
        raise DeliveryError(f"not a deliverable address: {address!r}", recipient=address)
    local, _, domain = addr.rpartition("@")
    if not local.isascii():
        raise DeliveryError("internationalized local parts (SMTPUTF8) are not supported",
                            recipient=address)
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise DeliveryError(f"bad domain: {exc}", recipient=address) from None
    return f"{local}@{domain}"


def format_address(name: str | None, address: str, header: str = "To") -> list[str]:
    """Header tokens for ``Name <addr>``, or the bare address when there is no name."""
    return _address_tokens(name, check_address(address), header)


def _address_tokens(name: str | None, addr: str, header: str) -> list[str]:
    """``format_address`` for an address ``check_address`` already gave."""
    words = _phrase(name, header) if name else []
    return [*words, f"<{addr}>"] if words else [addr]


def parse_sender(sender: str) -> tuple[str | None, str]:
    """``"Name <addr>"`` or ``"addr"`` -> (name or None, bare address)."""
    sender = sender.strip()
    if sender.endswith(">") and "<" in sender:
        name, _, rest = sender.rpartition("<")
        name = name.strip().strip('"').strip()
        return (name or None), rest[:-1].strip()
    return None, sender


# --------------------------------------------------------------------------- ids, urls


def make_message_id(email: str, edition: date, domain: str) -> str:
    """The Message-ID of one subscriber's edition: the same every time it is (re)built, so a
    resend is recognizable as the same message; the address is hashed, not shown, so a
    forwarded digest does not reveal who it was sent to."""
    key = f"{email.strip().lower()}\0{edition.isoformat()}".encode()
    digest = hashlib.sha256(key).hexdigest()
    return f"<digest.{edition.isoformat()}.{digest[:20]}@{_id_host(domain)}>"


@functools.lru_cache(maxsize=64)  # a run has one sender domain
def _id_host(domain: str) -> str:
    host = sanitize_header_text(domain).strip("[]<> ")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = ""
    return re.sub(r"[^A-Za-z0-9.-]", "-", host) or "localhost"


# RFC 3986 reserved + unreserved characters, minus ',' (RFC 2369 requires literal commas in a
# List-* URL to be escaped) and anything that could break out of the angle brackets.
_URL_SAFE = ":/?#[]@!$&'()*+;=%~-._"


_URL_KEPT = re.compile(r"[A-Za-z0-9_.~:/?#\[\]@!$&'()*+;=%-]*")  # what quote() leaves as is


@functools.lru_cache(maxsize=256)  # the default mailto is the same for every message of a run
def _angle_url(url: str) -> str:
    clean = sanitize_header_text(url)
    # most URLs (http_url's output) need no escape: skip quote()'s per-byte loop
    return "<" + (clean if _URL_KEPT.fullmatch(clean) else quote(clean, safe=_URL_SAFE)) + ">"


# --------------------------------------------------------------------------- bodies


_ASCII_BYTES = bytes(range(128))
_LINE_MAX = 998  # RFC 5322 2.1.1 / RFC 2045 2.7: octets per line, CRLF not counted


def _lines_fit(raw: bytes) -> bool:
    """No line of ``raw`` (LF line ends) is longer than 998 octets. Jumps from the last line
    break in each 999-octet window to the next (C-speed ``rfind``), so a 40 KB part costs a
    few dozen steps instead of a split into hundreds of lines."""
    pos, end = 0, len(raw)
    while end - pos > _LINE_MAX:
        nl = raw.rfind(b"\n", pos, pos + _LINE_MAX + 1)
        if nl < 0:
            return False
        pos = nl + 1
    return True


def _seven_bit(text: str, raw: bytes, delimiter: bytes) -> bool:
    """True when ``text`` (LF line ends; ``raw``, its UTF-8) may go as a ``7bit`` part: ASCII
    (a str knows it without a scan) with no NUL (RFC 2045 2.7), no line over 998 octets, and
    no line that could read as the boundary delimiter."""
    return text.isascii() and b"\0" not in raw and delimiter not in raw and _lines_fit(raw)


class _QuotedLines(dict[bytes, bytes]):
    """A line of text (no LF) -> its quoted-printable form with CRLF soft breaks, worked out
    on first sight: the lines of a card recur in every email that has the card."""

    def __missing__(self, line: bytes) -> bytes:
        encoded = binascii.b2a_qp(line + b"\n", quotetabs=False, istext=True, header=False)
        value = self[line] = encoded[:-1].replace(b"\n", b"\r\n")
        return value


_QP_LINES = _QuotedLines()


def quoted_printable(raw: bytes) -> bytes:
    """``binascii.b2a_qp(raw, istext=True)`` with CRLF line ends, for ``raw`` with LF line
    ends and no CR. binascii's encoder (soft breaks at 76, ``=`` and trailing blanks escaped)
    decides each line from that line alone when the data holds no CR, so each distinct line is
    encoded once and kept; the last line (no LF after it) is encoded as the end of the data,
    as binascii does (a trailing blank there is escaped where it stands)."""
    if len(_QP_LINES) > 2048:  # bounded: each email's frame adds lines never met again
        _QP_LINES.clear()
    lines = raw.split(b"\n")
    last = lines.pop()
    out = list(map(_QP_LINES.__getitem__, lines))
    out.append(binascii.b2a_qp(last, quotetabs=False, istext=True, header=False).replace(
        b"\n", b"\r\n") if last else b"")
    return b"\r\n".join(out)


def _encode_body(text: str, delimiter: bytes) -> tuple[str, bytes, bytes]:
    """``_encode_part``'s encoding and body, and what ends the body (kept apart so the
    message is joined once, not each part first)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    raw = text.encode("utf-8")
    if _seven_bit(text, raw, delimiter):
        # The extra CRLF is the boundary delimiter's own, so a final line break survives.
        return "7bit", raw.replace(b"\n", b"\r\n"), b"\r\n"
    high = 0 if text.isascii() else len(raw.translate(None, _ASCII_BYTES))
    if high * 6 < len(raw):
        # The extra CRLF is the boundary delimiter's own, so a final line break survives.
        return "quoted-printable", quoted_printable(raw), b"\r\n"
    body = base64.encodebytes(raw.replace(b"\n", b"\r\n"))
    return "base64", body.replace(b"\n", b"\r\n"), b""


def _encode_part(text: str, delimiter: bytes) -> tuple[str, bytes]:
    """(transfer encoding, encoded body with CRLF line ends) for one text part, in MIME
    canonical form (line breaks are CRLF, RFC 2045 6.8). ``delimiter`` is ``--boundary``:
    a 7bit body must not hold it (a QP or base64 one cannot)."""
    cte, body, end = _encode_body(text, delimiter)
    return cte, body + end


_PART_HEADS = {(kind, cte): (f'Content-Type: text/{kind}; charset="utf-8"{CRLF}'
                             f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}").encode("ascii")
               for kind in ("plain", "html") for cte in ("7bit", "quoted-printable", "base64")}


def _part(kind: str, text: str, delimiter: bytes) -> tuple[bytes, bytes, bytes]:
    """One ``text/<kind>`` part: its head, body and the body's end."""
    cte, body, end = _encode_body(text, delimiter)
    return _PART_HEADS[kind, cte], body, end


# --------------------------------------------------------------------------- the message


@functools.lru_cache(maxsize=64)  # a run has one sender: the same lines for every message
def _sender_lines(sender: str, list_id: str) -> tuple[str | None, str, str, str]:
    """(display name, bare address, ``From`` line, ``List-Id`` line) for ``settings``'
    sender and list id."""
    name, addr = parse_sender(sender)
    addr = check_address(addr)
    clean_id = re.sub(r"[^A-Za-z0-9.-]", "-", sanitize_header_text(list_id)) or "digest"
    return (name, addr, _fold("From", format_address(name, addr, "From")),
            _fold("List-Id", [*(_phrase(name, "List-Id") if name else []), f"<{clean_id}>"]))


@functools.lru_cache(maxsize=16)  # a run's messages share their ``now``
def _date_line(now: datetime) -> str:
    return f"Date: {format_datetime(now)}{CRLF}"


# a subject recurs in many messages (the renderer's stock one is "N new papers on X, Y - day")
_subject_line = functools.lru_cache(maxsize=1024)(functools.partial(encode_text_header,
                                                                     "Subject"))
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")



def build_message(rendered: RenderedEmail, digest: Digest, settings: Settings, *,
                  message_id: str | None = None, now: datetime) -> OutgoingMessage:
    """The full message for one subscriber's edition: multipart/alternative (text, then HTML),
    list and unsubscribe headers, a stable Message-ID. Raises ``DeliveryError`` (permanent)
    when the recipient address cannot be written safely."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    sub = digest.subscriber
    _, sender_addr, from_line, list_id_line = _sender_lines(settings.sender,
                                                            settings.list_id)
    recipient = check_address(sub.email)
    domain = sender_addr.rpartition("@")[2]
    mid = message_id or make_message_id(sub.email, digest.edition, domain)
    if not _MESSAGE_ID.fullmatch(mid):
        raise ValueError(f"not a valid Message-ID: {mid!r}")

    mailto = digest.unsubscribe_mailto or f"mailto:{sender_addr}?subject=unsubscribe"
    unsub = [_angle_url(mailto)]
    if digest.unsubscribe_url:
        unsub.append(_angle_url(digest.unsubscribe_url))
    # The boundary starts with "=_": that pair can never occur in QP or base64 output (a 7bit
    # part holding the delimiter is encoded instead: _seven_bit).
    boundary = "=_" + hashlib.sha256(mid.encode("ascii")).hexdigest()[:32]

    head = [
        from_line,
        _fold("To", _address_tokens(sub.name, recipient, "To")),
        _subject_line(rendered.subject),
        _date_line(now),
        f"Message-ID: {mid}{CRLF}",
        f"MIME-Version: 1.0{CRLF}",
        list_id_line,
        _fold("List-Unsubscribe", [u + "," for u in unsub[:-1]] + unsub[-1:]),
    ]
    if digest.unsubscribe_url:
        head.append(f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{CRLF}")
    head += [
        f"Auto-Submitted: auto-generated{CRLF}",
        f"X-Auto-Response-Suppress: OOF, AutoReply{CRLF}",
        f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"{CRLF}',
        CRLF,
    ]
    header = "".join(head)
    # RFC 5322 2.1.1 hard limit (a header shorter than that holds no longer line)
    if len(header) > 998 and max(map(len, header.split(CRLF))) > 998:
        raise DeliveryError("a header line would exceed 998 characters (unsubscribe URL "
                            "too long?)", recipient=recipient)
    delimiter = f"--{boundary}".encode("ascii")
    sep = delimiter + b"\r\n"
    data = b"".join((
        header.encode("ascii"),
        sep, *_part("plain", rendered.text, delimiter),
        sep, *_part("html", rendered.html, delimiter),
        delimiter, b"--\r\n",
    ))
    if settings.dkim is not None:
        # Signed here, over the finished bytes: the ledger stores exactly these, so a retry or
        # a post-crash re-send replays the same signature.
        data = sign_message(data, settings.dkim.domain, settings.dkim.keys, now=now)
    return OutgoingMessage(sender=sender_addr, recipient=recipient, message_id=mid, data=data)
