"""Recording a render: ``{{ value }}`` swapped for numbered markers, values kept aside.

The first step of the compile-once fast path (docs/render.md): ``record_finalize`` is the
Jinja ``finalize`` hook, ``render_recorded`` runs a render and returns its marked text with the
recorded values; also the MJML compile wrapper and the value cleaning both paths share.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any

from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape
from mjml import mjml2html

from digest.errors import TemplateError

CARD_MARK = "\x01"  # what ``card_marker`` renders to on the fast path
_VALUE = re.compile("\x02(\\d+)\x03")
_TOKEN = re.compile(r"zqpd([hct])(\d+)qz")
# Markers inside these spans are read by mrml (lengths, colours, CSS): they must stay shape.
_STRUCTURAL = re.compile(
    r"<mj-[a-z-]+\b[^>]*>"
    r"|<mj-(style|attributes|html-attributes|font|breakpoint)\b.*?</mj-\1>",
    re.S,
)

# Characters mrml refuses to parse (C0 controls, noncharacters, lone surrogates): feed text can
# hold them, and one would make the whole email fail to compile.
_UNPARSABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")

# Inside an HTML tag, mrml re-escapes attribute values the way Rust's ``escape_debug`` does
# (``\\`` ``\n`` ``\u{a0}``, combining marks...): only plain printable ASCII is copied verbatim.
_TAG = re.compile(r"<[A-Za-z][^<>]*>")
_VERBATIM_IN_ATTRIBUTE = re.compile(r"[\x20-\x5b\x5d-\x7e]*")

MAX_SHAPES = 512  # per cache; past it the cache starts over (stock templates need ~20)

# What a template proven on its syntax tree (``_keyed``, ``_memo``, ``_frame``) may not hold:
# names that reach outside the context, and filters that differ between two renders.
SPECIAL_NAMES = frozenset({"self", "loop", "super", "varargs", "kwargs", "caller"})
IMPURE_FILTERS = frozenset({"random", "shuffle"})


def compile_mjml(source: str, template: str) -> str:
    """mjml-python's compile, as 7-bit HTML (``seven_bit_html``), with its bare ``ValueError``
    turned into a ``TemplateError``."""
    try:
        html = mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:  # mrml reports no position; the template name is what we have
        raise TemplateError(template, f"MJML does not compile: {exc}") from None
    return seven_bit_html(html)


# --------------------------------------------------------------------------- 7-bit HTML

# Elements whose content the HTML tokenizer reads as raw text (no tags, no character
# references: left exactly as they are) or as RCDATA (character references, no tags).
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript",
                       "plaintext"})
_REGION = re.compile(r"<(script|style|xmp|iframe|noembed|noframes|noscript|plaintext|title"
                     r"|textarea)\b.*?(?:</\1\s*>|\Z)", re.S | re.I)
# The space after a start tag's name: the tokenizer reads any whitespace there alike.
_TAG_SPACE = re.compile(r"(<[A-Za-z][A-Za-z0-9:-]*) ")


def ascii_text(text: str) -> str:
    """``text`` with every non-ASCII character as a numeric character reference (``&#183;``):
    the same characters to an HTML parser, in text and in attribute values alike."""
    return text if text.isascii() else text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def seven_bit_html(html: str) -> str:
    """The same document as ``html`` to an HTML parser, written so that it can travel as a
    7bit MIME part without quoted-printable (docs/render.md): every non-ASCII character as a
    numeric character reference, and the space after each start tag's name (mrml writes
    the whole body on one line) a line break, which keeps lines short wherever tags are.
    Raw-text elements (``style``, ``script``...) are left exactly as they are: character
    references mean nothing there (non-ASCII inside them leaves the email quoted-printable)."""
    out: list[str] = []
    pos = 0
    for m in _REGION.finditer(html):
        out.append(ascii_text(_TAG_SPACE.sub("\\1\n", html[pos:m.start()])))
        out.append(m.group(0) if m.group(1).lower() in _RAW_TEXT else ascii_text(m.group(0)))
        pos = m.end()
    out.append(ascii_text(_TAG_SPACE.sub("\\1\n", html[pos:])))
    return "".join(out)


def fits_seven_bit(shape: str) -> bool:
    """True when the compiled ``shape`` (hole tokens in place of values) gives, filled with
    any values and each value made ``ascii_text``, the very ``seven_bit_html`` of the filled
    document: no hole inside a raw-text element (its value must stay as it is) and none in
    or against a start tag's name (it could decide whether the name is followed by a space)."""
    if _HOLE_IN_NAME.search(shape):
        return False
    return not any("zqpd" in m.group(0) for m in _REGION.finditer(shape)
                   if m.group(1).lower() in _RAW_TEXT)


_HOLE_IN_NAME = re.compile(r"<[A-Za-z0-9:-]*zqpd")


def clean_value(value: Any) -> Any:
    """Every printed value loses the characters mrml cannot parse and has its line breaks as
    LF (``finalize`` of the naive environment; the fast one does the same before recording).
    A CR (a feed's ``Grace\\r\\nHopper``) would not survive MIME's canonical CRLF line ends,
    and HTML parsers read CR and CRLF as LF anyway: so the parts a reader decodes are the
    very parts rendered."""
    # printable ASCII (most values) holds none of them: two C-speed checks, no regex scan
    if isinstance(value, str) and not (value.isascii() and value.isprintable()):
        cleaned = value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value
        if _UNPARSABLE.search(cleaned):
            cleaned = _UNPARSABLE.sub("", cleaned)
        if cleaned is not value:
            return Markup(cleaned) if isinstance(value, Markup) else cleaned
    return value


# --------------------------------------------------------------------------- recording

CARD_MARKUP = Markup(CARD_MARK)
_MARKERS = tuple(Markup(f"\x02{i}\x03") for i in range(512))


class _Recorder(threading.local):
    parts: list[list[str]] | None = None
    tainted = False  # a filter saw marked text: its output cannot be trusted to map back


_RECORDER = _Recorder()
_ESCAPED: dict[str, Markup] = {}  # plain str -> its printed text; races only escape twice


@pass_eval_context
def record_finalize(eval_ctx: EvalContext, value: Any) -> Any:
    """The fast environment's ``finalize``: record the value exactly as the naive environment
    would print it and leave a marker in its place. Markers are numbered per part (a new part
    starts at each card marker) so equal card shapes give equal marked text.

    Its result is printed as it is (``FinalizeGenerator``: no ``escape``/``str`` around it),
    so it returns what Jinja's ``escape(finalize(value))`` or ``str(finalize(value))`` would
    print; a marker is ``Markup``, which ``escape`` leaves as it is."""
    parts = _RECORDER.parts
    if parts is None:  # not inside a fast render
        return escape(value) if eval_ctx.autoescape else str(value)
    if type(value) is str and eval_ctx.autoescape:
        # most values are plain strings that recur in many emails (names, dates, topics):
        # cleaned and escaped once per distinct string
        known = _ESCAPED.get(value)
        if known is None:
            # 4,096, not 8,192: a 10,000 send filled 8,157 and its peak RSS stood 0.9 MB
            # higher past the 1,000 send's than bench_memory's flatness allows (session 10)
            if len(_ESCAPED) >= 4096:
                _ESCAPED.clear()
            known = _ESCAPED[value] = escape(clean_value(value))
        printed: str = known
    else:
        if value is CARD_MARKUP:
            parts.append([])
            return value
        if isinstance(value, Markup) and ("\x02" in value or CARD_MARK in value):
            return value  # rendered output holding markers (caller(), a macro): pass it through
        value = clean_value(value)
        printed = escape(value) if eval_ctx.autoescape else str(value)
    current = parts[-1]
    current.append(printed)
    n = len(current) - 1
    return _MARKERS[n] if n < len(_MARKERS) else Markup(f"\x02{n}\x03")


class FinalizeGenerator(CodeGenerator):
    """Jinja's code generator for the fast environment: a printed value is written as
    ``finalize(value)`` instead of ``escape(finalize(value))`` (``str(...)`` without
    autoescape): ``record_finalize`` returns the printed text itself, and most of what it
    returns is a marker that ``escape`` would only copy (two calls saved per value)."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if finalize.src is None:
            super()._output_child_pre(node, frame, finalize)
        else:
            self.write(finalize.src)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if finalize.src is None:
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")")


def render_recorded(render: Callable[[], str]) -> tuple[str, list[list[str]]] | None:
    """Run ``render`` with recording on; returns the marked source and each part's values,
    or None when a filter was applied to marked text (``{% filter upper %}``, a captured
    ``{% set %}`` block): the caller then renders and compiles in full."""
    parts: list[list[str]] = [[]]
    _RECORDER.parts, _RECORDER.tainted = parts, False
    try:
        marked = render()
        return None if _RECORDER.tainted else (marked, parts)
    finally:
        _RECORDER.parts = None


def guard_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter for the fast environment so that it flags marked input."""
    @functools.wraps(func)  # keeps jinja's pass_context/pass_eval_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _RECORDER.parts is not None:
            for a in args:  # a loop, not any(genexpr): this runs for every filter call
                if isinstance(a, str) and ("\x02" in a or CARD_MARK in a):
                    _RECORDER.tainted = True
                    break
        return func(*args, **kwargs)
    return guarded
