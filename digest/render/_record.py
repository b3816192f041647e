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

from jinja2 import pass_eval_context
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

Program = tuple[tuple[str, str, int], ...]  # (literal, hole kind "" | h | c | t, hole index)


def compile_mjml(source: str, template: str) -> str:
    """mjml-python's compile with its bare ``ValueError`` turned into a ``TemplateError``."""
    try:
        return mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:  # mrml reports no position; the template name is what we have
        raise TemplateError(template, f"MJML does not compile: {exc}") from None


def clean_value(value: Any) -> Any:
    """Every printed value loses the characters mrml cannot parse (``finalize`` of the naive
    environment; the fast one does the same before recording)."""
    # printable ASCII (most values) holds none of them: two C-speed checks, no regex scan
    if isinstance(value, str) and not (value.isascii() and value.isprintable()) \
            and _UNPARSABLE.search(value):
        cleaned = _UNPARSABLE.sub("", value)
        return Markup(cleaned) if isinstance(value, Markup) else cleaned
    return value


# --------------------------------------------------------------------------- recording

CARD_MARKUP = Markup(CARD_MARK)
_MARKERS = tuple(Markup(f"\x02{i}\x03") for i in range(512))


class _Recorder(threading.local):
    parts: list[list[str]] | None = None
    tainted = False  # a filter saw marked text: its output cannot be trusted to map back


_RECORDER = _Recorder()


@pass_eval_context
def record_finalize(eval_ctx: EvalContext, value: Any) -> Any:
    """The fast environment's ``finalize``: record the value exactly as the naive environment
    would print it and leave a marker in its place. Markers are numbered per part (a new part
    starts at each card marker) so equal card shapes give equal marked text."""
    parts = _RECORDER.parts
    if parts is None:  # not inside a fast render
        return value
    if value is CARD_MARKUP:
        parts.append([])
        return value
    if isinstance(value, Markup) and ("\x02" in value or CARD_MARK in value):
        return value  # rendered output holding markers (caller(), a macro): pass it through
    value = clean_value(value)
    current = parts[-1]
    current.append(escape(value) if eval_ctx.autoescape else str(value))
    n = len(current) - 1
    return _MARKERS[n] if n < len(_MARKERS) else Markup(f"\x02{n}\x03")


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
        if _RECORDER.parts is not None and any(
                isinstance(a, str) and ("\x02" in a or CARD_MARK in a) for a in args):
            _RECORDER.tainted = True
        return func(*args, **kwargs)
    return guarded
