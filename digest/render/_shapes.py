"""Email shapes: one mjml-python compile per shape, an email its shape's chunks joined with
its own values (docs/render.md). ``Shaper`` plans the holes, ``ShapeCache`` keeps compiled
frames and card units and falls back to a full compile whenever the model does not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import re
from operator import attrgetter, itemgetter
from typing import Any

from digest.errors import TemplateError
from digest.render._record import (
    _STRUCTURAL,
    _TAG,
    _TOKEN,
    _VALUE,
    _VERBATIM_IN_ATTRIBUTE,
    CARD_MARK,
    MAX_SHAPES,
    ascii_text,
    compile_mjml,
    fits_seven_bit,
)

# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shaped:
    """One part of a marked MJML source: its shape (holes as tokens) and its hole values,
    as the 7-bit HTML writes them (``_seven_bit``: what a fill puts in its holes)."""

    key: str
    values: tuple[str, ...]
    # the whitespace before its first tag and after its last (None: text, not whitespace,
    # or no tag there), and whether both are blank or start with a line break (_joins)
    lead: str | None = ""
    trail: str | None = ""
    clean: bool = True


@dataclass(frozen=True)
class _PartPlan:
    """What the marked text of one part says, whatever its values: the text between markers,
    which markers mrml would read (shape), and the key when every other value is a hole."""

    pieces: tuple[str, ...]
    structural: frozenset[int]
    in_attribute: frozenset[int]  # markers inside an HTML tag: holes only for plain ASCII
    key: str | None  # None when the marked text is broken (markers out of order)
    lead: str | None = ""
    trail: str | None = ""
    clean: bool = True


# The whitespace a part starts with before its first tag, and ends with after its last.
# mrml drops a whitespace-only text node that starts with a line break and copies any other
# verbatim (between sections, columns' children and in mj-text alike), so where two parts
# meet what it writes depends on both sides' whitespace (_joins).
_LEAD = re.compile(r"[ \t\n]*(?=<[A-Za-z/])")
_TRAIL = re.compile(r"<[A-Za-z/][^<>]*>([ \t\n]*)\Z")


def _runs(marked: str, kind: str) -> tuple[str | None, str | None, bool]:
    if kind == "c" and _open_tags(marked) != []:
        return None, None, False  # a card part closing or leaving open its parent's tags
    lead = _LEAD.match(marked)
    trail = _TRAIL.search(marked[-4096:])  # a tag is never that long in the templates
    runs = (None if lead is None else lead.group(0), None if trail is None else trail.group(1))
    return (*runs, all(run is not None and _dropped(run) for run in runs))


_MJ_TAG = re.compile(r"<(/?)(mj-[a-z-]+)\b[^>]*?(/?)>")
# Parents whose children mrml compiles each on its own, whatever their siblings: sections in
# the body or a wrapper, a column's children, the HTML inside an ending tag. Not a section
# or a group, whose columns share its width, nor a navbar, a carousel, a social bar...
_ALONE = frozenset({"mj-body", "mj-wrapper", "mj-column", "mj-text", "mj-raw"})


def _open_tags(marked: str) -> list[str] | None:
    """The MJML tags ``marked`` leaves open, outermost first; None when it closes one it
    did not open."""
    stack: list[str] = []
    for m in _MJ_TAG.finditer(marked):
        if m.group(1):
            if not stack or stack.pop() != m.group(2):
                return None
        elif not m.group(3):
            stack.append(m.group(2))
    return stack


def _cards_alone(head: str) -> bool:
    """True when the cards after ``head`` (a head part's marked text) are children of a
    parent in ``_ALONE``: each then compiles the same beside any other."""
    open_tags = _open_tags(head)
    return open_tags is not None and bool(open_tags) and open_tags[-1] in _ALONE


def _dropped(run: str) -> bool:
    """True when mrml writes nothing for ``run`` (whitespace) wherever it stands."""
    return not run or run[0] == "\n"


def _written(run: str) -> str:
    """What mrml writes for the whitespace-only text node ``run``."""
    return "" if _dropped(run) else run


def _joins(head: Shaped, cards: list[Shaped], tail: Shaped) -> bool:
    """True when what mrml writes where two cards meet is what their units bring from their
    own compiles (each alone between the head and the tail), and the empty frame has nothing
    between its head and tail: then the email is exactly its units one after the other
    (docs/render.md). Checked on the parts' whitespace at their ends (``_runs``): a card's
    part that ends with text after its last tag, say, or an email where one card's part ends
    without a line break before another's (``{% include %}<mj-section>...</mj-section>{%
    endfor %}`` followed by indented text) compiles in full."""
    th, lt = head.trail, tail.lead
    if th is None or lt is None or _written(th + lt):
        return False
    for left, right in zip(cards, cards[1:]):
        tx, ly = left.trail, right.lead
        if tx is None or ly is None \
                or _written(tx + ly) != _written(tx + lt) + _written(th + ly):
            return False
    return True


def _is_hole(value: str) -> bool:
    # blank values vanish as whitespace-only text nodes; markup is re-serialized by mrml
    return (bool(value) and not value.isspace() and "<" not in value and ">" not in value
            and "zqpd" not in value)


def _all_holes(values: tuple[str, ...] | list[str], joined: str | None = None) -> bool:
    """``all(map(_is_hole, values))`` in C-speed passes: the values joined by NUL
    (``joined``, if the caller has it) searched for the characters (a token cannot span the
    NUL between two values), ``strip`` for the blank ones (it strips exactly what ``isspace``
    calls whitespace)."""
    if joined is None:
        joined = "\x00".join(values)
    return "<" not in joined and ">" not in joined and "zqpd" not in joined \
        and all(map(str.strip, values))


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
    runs = _runs(marked, kind)
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
                     "".join(out) if not structural else "", *runs)


class Shaper:
    """Turns a marked render into ``Shaped`` parts, caching what each part's marked text means
    (card parts repeat across emails, so their plans are shared)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str], _PartPlan] = {}
        self._shaped: dict[tuple[str, tuple[str, ...]], Shaped] = {}  # card parts

    def parts(self, marked: str, values: list[list[str]],
              expand: Callable[[str], str | None] = lambda text: text) -> list[Shaped] | None:
        """None when the markers are not intact (a filter rewrote them): compile in full.
        ``expand`` gives a part's marked text from what was printed (card stand-ins put
        back, ``FastEnvironment.expand``): a part is known by what was printed, which stands
        for one marked text for good, and expanded only when it is new."""
        return self.shaped(marked.split(CARD_MARK), values, expand)

    def shaped(self, texts: list[str], values: list[list[str]],
               expand: Callable[[str], str | None] = lambda text: text) -> list[Shaped] | None:
        """``parts`` with the marked text already split at the card markers."""
        if len(texts) != len(values):
            return None
        if len(texts) == 1:  # a template without card markers: one frame, no cards
            texts, values = [texts[0], ""], [values[0], []]
        last = len(texts) - 1
        out: list[Shaped] = []
        known = self._shaped
        for i, (text, vals) in enumerate(zip(texts, values)):
            if i == 0 or i == last:  # the frame's parts: their values are per subscriber
                shaped = self._shape("h" if i == 0 else "t", text, tuple(vals), expand)
                if shaped is None:
                    return None
                out.append(shaped)
                continue
            # a card recurs with the same values in many emails: its Shaped is looked up
            # (the text's hash is computed once for both lookups; Python keeps it)
            memo_key = (text, tuple(vals))
            shaped = known.get(memo_key)
            if shaped is None:
                shaped = self._shape("c", text, memo_key[1], expand)
                if shaped is None:
                    return None
                # 2,048: at 4,096 a 10,000 send filled it (1,884 at 1,000) and its peak RSS
                # stood 1.2 MB higher; a few % more render time (docs/render.md, session 10)
                if len(known) >= 4 * MAX_SHAPES:
                    known.clear()
                known[memo_key] = shaped
            out.append(shaped)
        return out

    def _shape(self, kind: str, text: str, vals: tuple[str, ...],
               expand: Callable[[str], str | None]) -> Shaped | None:
        """One part's ``Shaped`` (its plan kept for its marked text, and for what was
        printed: a card's stand-in, which stands for one marked text for good, is then not
        expanded and hashed whole again); None: compile in full."""
        plans = self._plans
        plan = plans.get((kind, text))
        if plan is None:
            source = expand(text)
            if source is None:
                return None
            plan = plans.get((kind, source))
            if len(plans) >= MAX_SHAPES:  # a template minting shapes per email
                plans.clear()
            if plan is None:
                plan = plans[(kind, source)] = _plan_part(source, kind)
            plans[(kind, text)] = plan
        if plan.key is None or len(plan.pieces) != len(vals) + 1:
            return None
        joined = "\x00".join(vals)  # one join for both checks
        if plan.key and _all_holes(vals, joined):
            for n in plan.in_attribute:
                if not _VERBATIM_IN_ATTRIBUTE.fullmatch(vals[n]):
                    break
            else:
                return Shaped(plan.key, vals if joined.isascii() else _seven_bit(vals),
                              plan.lead, plan.trail, plan.clean)
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
        return Shaped("".join(key), _seven_bit(tuple(holes)), plan.lead, plan.trail, plan.clean)


_KIND = {"h": 0, "c": 1, "t": 2}  # a hole's values in ``Program.fill_into``'s argument


class Program:
    """Compiled HTML with holes: ``literals`` (one more than the holes) and, for each hole,
    whose values it takes (0 head, 1 card, 2 tail) and which one. Built once per shape."""

    __slots__ = ("literals", "holes", "_pick")

    def __init__(self, literals: tuple[str, ...], holes: tuple[tuple[int, int], ...]) -> None:
        self.literals, self.holes = literals, holes
        kinds = {kind for kind, _ in holes}
        # a card unit's holes all take the card's values: picked by one C-speed call
        self._pick: Callable[[tuple[str, ...]], Any] | None = None
        if len(kinds) == 1 and len(holes) > 1:
            self._pick = itemgetter(*[index for _, index in holes])

    def fill_into(self, out: list[str], values: tuple[tuple[str, ...], ...]) -> None:
        """Append the HTML's pieces to ``out``, each hole as its value (``values``: the
        head's, the card's and the tail's, as ``Shaped`` keeps them); the literals and the
        values go in by two slice assignments, not a Python step per hole."""
        holes = self.holes
        if not holes:
            out.append(self.literals[0])
            return
        pieces = [""] * (2 * len(holes) + 1)
        pieces[0::2] = self.literals
        if self._pick is not None:
            pieces[1::2] = self._pick(values[holes[0][0]])
        else:
            pieces[1::2] = [values[kind][index] for kind, index in holes]
        out += pieces


def _program(html: str, kinds: str) -> Program | None:
    literals: list[str] = []
    holes: list[tuple[int, int]] = []
    pos = 0
    for m in _TOKEN.finditer(html):
        if m.group(1) not in kinds:
            return None
        literals.append(html[pos:m.start()])
        holes.append((_KIND[m.group(1)], int(m.group(2))))
        pos = m.end()
    literals.append(html[pos:])
    return Program(tuple(literals), tuple(holes))


def _seven_bit(values: tuple[str, ...]) -> tuple[str, ...]:
    """Values as compile_mjml's seven_bit_html writes them (``fits_seven_bit`` vouches for
    it): non-ASCII as character references; one C-speed check for the common all-ASCII case."""
    if "".join(values).isascii():
        return values
    return tuple([value if value.isascii() else ascii_text(value) for value in values])


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
    head: Program = field(default_factory=lambda: Program(("",), ()))
    tail: Program = field(default_factory=lambda: Program(("",), ()))
    fits: bool = True  # fits_seven_bit: else every email of this frame compiles in full
    alone: bool = True  # _cards_alone: else every email of several cards compiles in full


_PROBE = "zqpdprobeqz"
_CLEAN = attrgetter("clean")
_UNKNOWN: Any = object()  # a card shape not compiled yet


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
        if not frame.fits:
            return None
        own = (head.values, head.values, tail.values)  # the frame's holes: head and tail
        if not cards:
            if frame.bare is None:
                return None
            out: list[str] = []
            frame.bare.fill_into(out, own)
            return "".join(out)
        # Each card's unit filled straight into the email's pieces: one join for the whole
        # email. (Filled cards were kept too, by their values, up to 1 MB: only ~30% of a
        # send's cards met one again, and filling is cheaper than keeping.)
        # Units one after the other are the email only where mrml writes nothing between
        # the cards that their own compiles did not (whitespace where two parts meet)
        if len(cards) > 1 and (not frame.alone or not (
                head.clean and tail.clean and all(map(_CLEAN, cards)))
                and not _joins(head, cards, tail)):
            return None
        pieces: list[str] = []
        units = self.units
        point = frame.point  # where the units are cut when no probe fits (_add_card)
        for card in cards:
            unit = units.get((frame.style, card.key), _UNKNOWN) \
                if frame.boundary is not None else _UNKNOWN
            if unit is _UNKNOWN:
                unit = self._shared_unit(frame, head, card, tail) \
                    if frame.boundary is not None else self._frame_unit(frame, head, card, tail)
            if unit is None:
                return None
            unit.fill_into(pieces, (head.values, card.values, tail.values))
        if frame.point != point:
            # a card new to the frame moved the insertion point and every unit was cut
            # again for it: the ones filled before it were cut at the old point (together
            # they would be a card's sections moved by the distance between the points)
            pieces = []
            for card in cards:
                unit = frame.units.get(card.key)
                if unit is None:
                    return None
                unit.fill_into(pieces, (head.values, card.values, tail.values))
        # the head filled once every card's unit is known (they may move it)
        out = []
        frame.head.fill_into(out, own)
        out += pieces
        frame.tail.fill_into(out, own)
        return "".join(out)

    def _frame(self, head: Shaped, tail: Shaped) -> _Frame:
        empty = self._compile(head.key + tail.key)
        # A card compiles the same wherever its ancestors (all in head.key: mj-body width,
        # wrappers, columns) and the document's <head> CSS are the same
        style = f"{empty.partition('</head>')[0]}\x00{head.key}"
        frame = _Frame(empty, _program(empty, "ht"), None, style, alone=_cards_alone(head.key))
        if not fits_seven_bit(empty):
            frame.fits = False
            return frame
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
        if fits_seven_bit(whole) and whole[:at] == frame.empty[:at] and whole[end:] == frame.empty[at:] \
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
        if not fits_seven_bit(whole) or grow <= 0 or whole[hi + grow:] != frame.empty[hi:]:
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
