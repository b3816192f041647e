"""Compile-once MJML: one mjml-python compile per template *shape*, one Jinja render per email.

Owns: the fast path behind ``digest.renderer.Renderer``. May import jinja2, markupsafe, mjml and
``digest.errors``; nothing else from the project.

How it works. The renderer renders the MJML template through a second Jinja environment whose
``finalize`` hook swaps every ``{{ value }}`` for a numbered marker and records the escaped value.
What is left is the email's *shape*: tags, literal text and markers. mrml (the engine inside
mjml-python) copies text and HTML attribute values inside ``mj-text`` and friends through
verbatim (it re-serializes the tags around them, which is why the tags are shape, not holes), so
the compiled HTML of a shape, split at its markers, is a list of literal chunks with holes; an
email is those chunks joined with its own values. Values that mrml would interpret (anything in an
``<mj-*>`` attribute or in ``mj-style``/``mj-attributes``), empty or whitespace-only values
(mrml drops whitespace-only text nodes) and values holding markup go back into the shape instead.

Cards repeat, so a shape is split further at card markers (``{{ card_marker }}`` in the
template): the *frame* (everything but the cards) is compiled once with no cards, and each card
shape once more inside that frame; mrml emits sections one after another, so an email is
``frame[:p] + unit(card1) + ... + unit(cardN) + frame[p:]`` for an insertion point ``p`` valid
for every card shape seen (kept as the intersection of each card's valid range). Anything that
does not fit this model (markers mangled by a filter, an insertion point that no longer exists)
falls back to compiling that email in full, so the output is always byte-identical to the naive
path; tests assert it on real digests.

Cards repeat across emails too: a partial that reads nothing but ``card`` values (checked on
its syntax tree by ``card_reads``) is rendered once per distinct card (the paper and summary by
identity, plus the per-subscriber values it reads, such as reasons or rank) and its marked text
and recorded values are replayed for every other email (``FastEnvironment``).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import (
    Environment,
    Template,
    TemplateNotFound,
    meta,
    nodes,
    pass_eval_context,
)
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


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shaped:
    """One part of a marked MJML source: its shape (holes as tokens) and its hole values."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class _PartPlan:
    """What the marked text of one part says, whatever its values: the text between markers,
    which markers mrml would read (shape), and the key when every other value is a hole."""

    pieces: tuple[str, ...]
    structural: frozenset[int]
    in_attribute: frozenset[int]  # markers inside an HTML tag: holes only for plain ASCII
    key: str | None  # None when the marked text is broken (markers out of order)


def _is_hole(value: str) -> bool:
    # blank values vanish as whitespace-only text nodes; markup is re-serialized by mrml
    return (bool(value) and not value.isspace() and "<" not in value and ">" not in value
            and "zqpd" not in value)


def _plan_part(marked: str, kind: str) -> _PartPlan:
    structural: set[int] = set()
    for span in _STRUCTURAL.finditer(marked):
        structural.update(int(m.group(1)) for m in _VALUE.finditer(span.group(0)))
    in_attribute = {int(m.group(1)) for span in _TAG.finditer(marked)
                     for m in _VALUE.finditer(span.group(0))} - structural
    split = _VALUE.split(marked)
    pieces, numbers = tuple(split[0::2]), split[1::2]
    if numbers != [str(i) for i in range(len(numbers))] or any(
            "\x02" in p or "\x03" in p or "zqpd" in p for p in pieces):
        return _PartPlan(pieces, frozenset(structural), frozenset(in_attribute), None)
    out = [pieces[0]]
    holes = 0
    for i, piece in enumerate(pieces[1:]):
        if i in structural:
            out.append("\x02")  # never a valid key: such parts always take the slow branch
        else:
            out.append(f"zqpd{kind}{holes}qz")
            holes += 1
        out.append(piece)
    return _PartPlan(pieces, frozenset(structural), frozenset(in_attribute),
                     "".join(out) if not structural else "")


class Shaper:
    """Turns a marked render into ``Shaped`` parts, caching what each part's marked text means
    (card parts repeat across emails, so their plans are shared)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str], _PartPlan] = {}

    def parts(self, marked: str, values: list[list[str]]) -> list[Shaped] | None:
        """None when the markers are not intact (a filter rewrote them): compile in full."""
        texts = marked.split(CARD_MARK)
        if len(texts) != len(values):
            return None
        if len(texts) == 1:  # a template without card markers: one frame, no cards
            texts, values = [marked, ""], [values[0], []]
        last = len(texts) - 1
        out: list[Shaped] = []
        for i, (text, vals) in enumerate(zip(texts, values)):
            kind = "h" if i == 0 else "t" if i == last else "c"
            plan = self._plans.get((kind, text))
            if plan is None:
                if len(self._plans) >= MAX_SHAPES:  # a template minting shapes per email
                    self._plans.clear()
                plan = self._plans[(kind, text)] = _plan_part(text, kind)
            if plan.key is None or len(plan.pieces) != len(vals) + 1:
                return None
            if plan.key and all(map(_is_hole, vals)) and all(
                    _VERBATIM_IN_ATTRIBUTE.fullmatch(vals[n]) for n in plan.in_attribute):
                out.append(Shaped(plan.key, tuple(vals)))
                continue
            key, holes = [plan.pieces[0]], list[str]()
            for n, (value, piece) in enumerate(zip(vals, plan.pieces[1:])):
                if n in plan.structural or not _is_hole(value) or (
                        n in plan.in_attribute and not _VERBATIM_IN_ATTRIBUTE.fullmatch(value)):
                    if "zqpd" in value:
                        return None  # would read as a hole token once compiled
                    key.append(value)
                else:
                    key.append(f"zqpd{kind}{len(holes)}qz")
                    holes.append(value)
                key.append(piece)
            out.append(Shaped("".join(key), tuple(holes)))
        return out


def _program(html: str, kinds: str) -> Program | None:
    out: list[tuple[str, str, int]] = []
    pos = 0
    for m in _TOKEN.finditer(html):
        if m.group(1) not in kinds:
            return None
        out.append((html[pos:m.start()], m.group(1), int(m.group(2))))
        pos = m.end()
    out.append((html[pos:], "", -1))
    return tuple(out)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on slices: C-speed compares instead of a Python loop
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    lo, hi = 0, min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class _Card:
    whole: str  # the frame compiled with this card alone
    lo: int  # valid insertion points in the empty frame: lo..hi
    hi: int


@dataclass
class _Frame:
    empty: str  # compiled with no cards
    bare: Program | None  # ``empty`` as a program, for emails with no cards
    boundary: int | None  # where a probe between the head and tail parts landed
    style: str  # compiled <head> + head part: cards compile alike in frames with the same
    point: int = -1
    cards: dict[str, _Card] = field(default_factory=dict)
    units: dict[str, Program] = field(default_factory=dict)
    head: Program = ()
    tail: Program = ()


_PROBE = "zqpdprobeqz"


class ShapeCache:
    """Compiled shapes of one template set. Not thread-safe on a miss: use one per thread
    or guard it (the renderer holds a lock).

    A frame is compiled twice: empty, and with a bare ``mj-raw`` probe where the cards go,
    which pins the exact boundary between the sections before and after the cards. A card
    shape is then compiled once, inside the first frame that needs it, and its compiled
    sections are shared by every frame with the same compiled ``<head>`` and the same MJML
    before the cards (which holds the cards' ancestors): mrml compiles sections on their own,
    and a card that changes anything outside its sections fails the insertion check and is
    compiled in full. Where no probe fits (cards inside ``mj-navbar``, say), card units are
    found per frame by comparing compiles instead."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.frames: dict[tuple[str, str], _Frame] = {}
        self.units: dict[tuple[str, str], Program | None] = {}  # (style, card key)
        self.compiles = 0

    def _compile(self, source: str) -> str:
        self.compiles += 1
        return compile_mjml(source, self.template)

    def html(self, parts: list[Shaped]) -> str | None:
        """The compiled email for these parts, or None when the fast path cannot vouch."""
        head, cards, tail = parts[0], parts[1:-1], parts[-1]
        frame = self.frames.get((head.key, tail.key))
        if frame is None:
            if len(self.frames) >= MAX_SHAPES:  # keep a long-running daemon's memory bounded
                self.frames.clear()
                self.units.clear()
            frame = self._frame(head, tail)
            self.frames[(head.key, tail.key)] = frame
        if not cards:
            return None if frame.bare is None else _fill(frame.bare, head, head, tail)
        units: list[Program] = []
        for card in cards:
            unit = self._shared_unit(frame, head, card, tail) if frame.boundary is not None \
                else self._frame_unit(frame, head, card, tail)
            if unit is None:
                return None
            units.append(unit)
        out = [_fill(frame.head, head, head, tail)]
        out.extend(_fill(unit, card, head, tail) for unit, card in zip(units, cards))
        out.append(_fill(frame.tail, head, head, tail))
        return "".join(out)

    def _frame(self, head: Shaped, tail: Shaped) -> _Frame:
        empty = self._compile(head.key + tail.key)
        # A card compiles the same wherever its ancestors (all in head.key: mj-body width,
        # wrappers, columns) and the document's <head> CSS are the same
        style = f"{empty.partition('</head>')[0]}\x00{head.key}"
        frame = _Frame(empty, _program(empty, "ht"), None, style)
        try:
            probed = self._compile(f"{head.key}<mj-raw>{_PROBE}</mj-raw>{tail.key}")
        except TemplateError:  # cards inside e.g. mj-navbar, where mj-raw is not allowed
            probed = ""
        at = probed.find(_PROBE) if probed else -1
        if at >= 0 and probed == empty[:at] + _PROBE + empty[at:]:
            before, after = _program(empty[:at], "ht"), _program(empty[at:], "ht")
            if before is not None and after is not None and _whole_tokens(
                    empty, empty[:at], empty[at:]):
                frame.boundary, frame.head, frame.tail = at, before, after
        return frame

    def _shared_unit(self, frame: _Frame, head: Shaped, card: Shaped,
                     tail: Shaped) -> Program | None:
        key = (frame.style, card.key)
        if key in self.units:
            return self.units[key]
        if len(self.units) >= MAX_SHAPES:
            self.units.clear()
        at = frame.boundary
        assert at is not None
        whole = self._compile(head.key + card.key + tail.key)
        end = at + len(whole) - len(frame.empty)
        text = whole[at:end]
        unit = None
        if whole[:at] == frame.empty[:at] and whole[end:] == frame.empty[at:] \
                and _whole_tokens(whole, whole[:at], text, whole[end:]):
            unit = _program(text, "c")
        self.units[key] = unit
        return unit

    def _frame_unit(self, frame: _Frame, head: Shaped, card: Shaped,
                    tail: Shaped) -> Program | None:
        if card.key not in frame.units and not self._add_card(frame, head, card, tail):
            return None
        return frame.units[card.key]

    def _add_card(self, frame: _Frame, head: Shaped, card: Shaped, tail: Shaped) -> bool:
        if card.key in frame.cards:
            return False  # known not to fit this frame
        if len(frame.cards) >= MAX_SHAPES:
            return False  # too many card shapes in one frame: compile the rest in full
        whole = self._compile(head.key + card.key + tail.key)
        grow = len(whole) - len(frame.empty)
        hi = _common_prefix(frame.empty, whole)
        if grow <= 0 or whole[hi + grow:] != frame.empty[hi:]:
            frame.cards[card.key] = _Card(whole, 1, 0)
            return False
        lo = hi - _common_suffix(frame.empty[:hi], whole[:hi + grow], grow)
        frame.cards[card.key] = _Card(whole, lo, hi)
        points = [(c.lo, c.hi) for c in frame.cards.values() if c.lo <= c.hi]
        point = max(p[0] for p in points)
        if point > min(p[1] for p in points):
            frame.cards[card.key] = _Card(whole, 1, 0)  # this card cannot share the frame
            return False
        if point != frame.point:  # a new insertion point: rebuild every unit for it
            before, after = frame.empty[:point], frame.empty[point:]
            head_prog, tail_prog = _program(before, "ht"), _program(after, "ht")
            if head_prog is None or tail_prog is None or not _whole_tokens(
                    frame.empty, before, after):
                return False
            frame.point, frame.head, frame.tail = point, head_prog, tail_prog
            frame.units.clear()
        for key, known in frame.cards.items():
            if known.lo > known.hi or key in frame.units:
                continue
            end = point + len(known.whole) - len(frame.empty)
            text = known.whole[point:end]
            unit = _program(text, "c")
            if unit is None or not _whole_tokens(
                    known.whole, known.whole[:point], text, known.whole[end:]):
                return False
            frame.units[key] = unit
        return card.key in frame.units


def _whole_tokens(text: str, *pieces: str) -> bool:
    """True when cutting ``text`` into ``pieces`` splits no hole token in two."""
    return _TOKEN.findall(text) == [t for piece in pieces for t in _TOKEN.findall(piece)]


def _fill(program: Program, own: Shaped, head: Shaped, tail: Shaped) -> str:
    out: list[str] = []
    for literal, kind, index in program:
        out.append(literal)
        if kind == "h":
            out.append(head.values[index])
        elif kind == "t":
            out.append(tail.values[index])
        elif kind == "c":
            out.append(own.values[index])
    return "".join(out)


# --------------------------------------------------------------------------- included parts

# Card key: (hashable key, objects the key names by identity). The renderer supplies it, since
# it knows which of a card's attributes are per paper and which are per subscriber.
CardKey = Callable[[Any, tuple[str, ...]], "tuple[tuple[Any, ...], tuple[Any, ...]] | None"]
_IMPURE = frozenset({"random", "shuffle"})
_OPAQUE = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport, nodes.Block,
           nodes.Macro, nodes.CallBlock, nodes.Call, nodes.Scope, nodes.ScopedEvalContextModifier,
           nodes.EvalContextModifier, nodes.ContextReference, nodes.DerivedContextReference)


def card_reads(env: Environment, source: str, allowed: frozenset[str]) -> tuple[str, ...] | None:
    """The ``card`` attributes a partial reads, or None when its output may depend on anything
    else (other variables, ``loop``, calls, includes, blocks, impure filters): only such a
    partial is replayed from the part memo."""
    try:
        ast = env.parse(source)
    except Exception:  # a syntax error surfaces, with its line, from the real render
        return None
    if meta.find_undeclared_variables(ast) - {"card"}:
        return None
    if any(True for _ in ast.find_all(_OPAQUE)):
        return None
    if any(f.name in _IMPURE for f in ast.find_all(nodes.Filter)):
        return None
    read: set[str] = set()
    owned: set[int] = set()
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "card":
            if node.attr not in allowed:
                return None
            read.add(node.attr)
            owned.add(id(node.node))
    for name in ast.find_all(nodes.Name):
        if name.name == "card" and (name.ctx != "load" or id(name) not in owned):
            return None  # the whole card escapes (a filter argument, a test, an assignment)
    return tuple(sorted(read))


class _Pending:
    """What ``new_context`` was given, kept until a memo miss needs a real context."""

    __slots__ = ("vars", "shared", "locals")

    def __init__(self, vars: Any, shared: bool, locals: Any) -> None:
        self.vars, self.shared, self.locals = vars, shared, locals


class _MemoTemplate:
    """A partial whose recorded output (marked text and values) depends only on the card it
    is included for: rendered once per distinct card key and marker offset, replayed after.
    Anything but an ``include`` (``render``, ``extends``) goes to the real template."""

    def __init__(self, template: Template, reads: tuple[str, ...], key: CardKey,
                 store: dict[Any, tuple[tuple[Any, ...], str, tuple[str, ...]]]) -> None:
        self._template, self._reads, self._key, self._store = template, reads, key, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._template, name)

    def new_context(self, vars: Any = None, shared: bool = False, locals: Any = None) -> Any:
        return _Pending(vars, shared, locals)

    def root_render_func(self, context: Any) -> Any:
        if not isinstance(context, _Pending):
            return self._template.root_render_func(context)
        return self._render(context)

    def _render(self, pending: _Pending) -> Any:
        template = self._template
        parts = _RECORDER.parts
        card = pending.locals.get("card") if pending.locals else None
        found = None if parts is None or card is None else self._key(card, self._reads)
        if found is None or parts is None:
            yield from template.root_render_func(
                template.new_context(pending.vars, pending.shared, pending.locals))
            return
        key, anchors = found
        current = parts[-1]
        full = (id(template), len(current), key)
        hit = self._store.get(full)
        if hit is not None and len(hit[0]) == len(anchors) and all(
                a is b for a, b in zip(hit[0], anchors)):
            current.extend(hit[2])
            yield hit[1]
            return
        start, count = len(current), len(parts)
        events: list[str] = []
        for event in template.root_render_func(
                template.new_context(pending.vars, pending.shared, pending.locals)):
            events.append(event)
            yield event
        if not _RECORDER.tainted and _RECORDER.parts is parts and len(parts) == count:
            if len(self._store) >= 8 * MAX_SHAPES:
                self._store.clear()
            self._store[full] = (anchors, "".join(events), tuple(current[start:]))


class FastEnvironment(Environment):
    """The fast path's Jinja environment: partials that only read per-card values
    (``card_reads``) are replayed from a memo instead of rendered for every email."""

    def setup_memo(self, key: CardKey, allowed: frozenset[str]) -> None:
        self._memo_key, self._memo_allowed = key, allowed
        self._memo_on = True
        self._memo_names: dict[str, Any] = {}
        self._memo_store: dict[Any, tuple[tuple[Any, ...], str, tuple[str, ...]]] = {}

    def get_template(self, name: Any, parent: Any = None, globals: Any = None) -> Any:
        if not getattr(self, "_memo_on", False) or type(name) is not str or globals is not None:
            return super().get_template(name, parent, globals)
        if parent is not None:  # what Jinja's own get_template does first
            name, parent = self.join_path(name, parent), None
        # auto_reload is off: a name found once is the same template for good (an include asks
        # for its partial once per card, an extends for its parent once per email)
        known = self._memo_names.get(name)
        if known is not None:
            return known
        template = super().get_template(name)
        wrapped: Any = template
        if isinstance(template, Template) and template.filename is not None \
                and self.loader is not None:
            try:
                source = self.loader.get_source(self, name)[0]
            except TemplateNotFound:
                source = None
            reads = None if source is None else card_reads(self, source, self._memo_allowed)
            if reads is not None:
                wrapped = _MemoTemplate(template, reads, self._memo_key, self._memo_store)
        if not self.auto_reload:
            if len(self._memo_names) >= MAX_SHAPES:
                self._memo_names.clear()
            self._memo_names[name] = wrapped
        return wrapped
