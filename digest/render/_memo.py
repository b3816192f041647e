"""Card partials rendered once per distinct card, replayed for every other email.

``card_reads`` proves on a partial's syntax tree that it reads only ``card`` values;
``FastEnvironment`` memoizes such partials (docs/render.md): with their recorded values
inside a recorded render (the HTML), as plain output otherwise (the text part).
``card_plan`` goes further: a printed expression of per-subscriber values only (``{{ card.rank
}}``) is a *hole*, filled per card on replay, and a test of them only (``{% if card.tags %}``)
keys the memo by its truth, so a card is rendered once per paper, not once per subscriber.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from jinja2 import Environment, Template, TemplateNotFound, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import new_context

from digest.memo import Generations
from digest.render._record import _RECORDER, IMPURE_FILTERS, MAX_SHAPES, FinalizeGenerator

# --------------------------------------------------------------------------- included parts

# A recorded card replayed from the memo is printed as a stand-in, "\x02m<n>\x03" (n never
# reused), that ``FastEnvironment.expand`` turns back into its marked text: Jinja then joins,
# and the shaper splits and hashes, a few bytes per card instead of its whole marked text.
_STAND_IN = re.compile("\x02m(\\d+)\x03")
_SERIAL = itertools.count()

# Card key: given the attributes a partial reads, a function of the card giving (hashable key,
# objects the key names by identity). The renderer supplies it, since it knows which of a
# card's attributes are per paper and which are per subscriber.
CardKey = Callable[[tuple[str, ...]],
                   Callable[[Any], "tuple[tuple[Any, ...], tuple[Any, ...]] | None"]]
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
    if any(f.name in IMPURE_FILTERS for f in ast.find_all(nodes.Filter)):
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


# Filters that fetch attributes by name: on a str value, an attribute is a bound method whose
# text names its address, so a hole or test using them is not a function of the values.
_BY_NAME = frozenset({"attr", "map", "groupby", "selectattr", "rejectattr"})
_HOLE = re.compile("\x02h(\\d+)\x03")  # a hole as the skeleton prints it
_HOLE_NAME = "_memo_hole"


@dataclass(frozen=True)
class CardPlan:
    """How a card partial is memoized. ``reads``: the attributes whose values key the memo
    (per paper by identity, per subscriber by value). ``tests``: expressions of per-subscriber
    values only that decide control flow, keying the memo by their truth. ``holes``: printed
    expressions of per-subscriber values only, each printed as ``_memo_hole<i>`` in
    ``skeleton`` (None without holes) and filled in per card. Each test and hole comes with
    the attributes it reads: its value is a function of theirs."""

    reads: tuple[str, ...]
    tests: tuple[tuple[nodes.Expr, tuple[str, ...]], ...] = ()
    holes: tuple[tuple[nodes.Expr, tuple[str, ...]], ...] = ()
    skeleton: nodes.Template | None = None


def _card_only(expr: nodes.Node, per_card: frozenset[str]) -> tuple[str, ...] | None:
    """The per-subscriber attributes ``expr`` reads when its value is a function of theirs
    alone (no other name, no per-paper value, no attribute fetched by name); else None."""
    attrs: set[str] = set()
    for node in (expr, *expr.find_all(nodes.Node)):
        if isinstance(node, nodes.Name):
            if node.name != "card":
                return None
        elif isinstance(node, nodes.Getattr):
            if not (isinstance(node.node, nodes.Name) and node.node.name == "card"
                    and node.attr in per_card):
                return None
            attrs.add(node.attr)
        elif isinstance(node, nodes.Getitem):
            # an index or a slice; a name would fall back to getattr (a bound method)
            if not isinstance(node.arg, nodes.Slice) and not (
                    isinstance(node.arg, nodes.Const) and type(node.arg.value) is int):
                return None
        elif isinstance(node, nodes.Filter):
            if node.name in _BY_NAME or any(k.key == "attribute" for k in node.kwargs):
                return None
    return tuple(sorted(attrs)) or None


def card_plan(env: Environment, source: str, allowed: frozenset[str],
              per_card: frozenset[str]) -> CardPlan | None:
    """How to memoize a partial (``CardPlan``), or None when it cannot be (``card_reads``).
    Holes and tests are only taken where nothing can see the printed text but the output
    (no ``{% filter %}`` or ``{% set %}`` block) and the source cannot hold a hole's text."""
    reads = card_reads(env, source, allowed)
    if reads is None:
        return None
    plain = CardPlan(reads)
    ast = env.parse(source)
    if "\x02" in source or "\x03" in source \
            or any(True for _ in ast.find_all((nodes.FilterBlock, nodes.AssignBlock))) \
            or any(n.name.startswith(_HOLE_NAME) for n in ast.find_all(nodes.Name)):
        return plain
    holes: list[tuple[nodes.Expr, tuple[str, ...]]] = []
    for output in list(ast.find_all(nodes.Output)):
        for j, child in enumerate(output.nodes):
            if isinstance(child, nodes.TemplateData):
                continue
            attrs = _card_only(child, per_card)
            if attrs is not None:
                holes.append((copy.deepcopy(child, {id(env): env}), attrs))
                output.nodes[j] = nodes.Name(f"{_HOLE_NAME}{len(holes) - 1}", "load",
                                             lineno=child.lineno)
    tests: list[tuple[nodes.Expr, tuple[str, ...]]] = []
    taken: set[int] = set()  # nodes inside a test: their reads are keyed by its truth
    branches: list[nodes.If | nodes.CondExpr] = [*ast.find_all(nodes.If),
                                                 *ast.find_all(nodes.CondExpr)]
    for node in branches:
        test = node.test
        if not isinstance(test, nodes.Expr) or id(test) in taken:
            continue
        attrs = _card_only(test, per_card)
        if attrs is not None:
            tests.append((copy.deepcopy(test, {id(env): env}), attrs))
            taken.update(id(n) for n in (test, *test.find_all(nodes.Node)))
    if not holes and not tests:
        return plain
    keyed = {node.attr for node in ast.find_all(nodes.Getattr)
             if isinstance(node.node, nodes.Name) and node.node.name == "card"
             and (node.attr not in per_card or id(node) not in taken)}
    return CardPlan(tuple(sorted(keyed)), tuple(tests), tuple(holes),
                    ast if holes else None)


def _card_context(template: Template, card: Any) -> Any:
    """``template.new_context({"card": card}, True)`` for a test or hole, without the set of
    its globals' names (a ChainMap walked per call): a Context keeps them only for imports,
    which a test or hole has none of."""
    return new_context(template.environment, template.name, template.blocks, {"card": card},
                       True)


class _Token:
    """What the skeleton prints for hole ``i``: a token, counted each time it is printed
    (``str`` for a plain print, ``__html__`` under autoescape; exactly one per print)."""

    __slots__ = ("text", "count")

    def __init__(self, i: int) -> None:
        self.text, self.count = f"\x02h{i}\x03", 0

    def __str__(self) -> str:
        self.count += 1
        return self.text

    def __html__(self) -> str:
        self.count += 1
        return self.text


class _Pending:
    """What ``new_context`` was given, kept until a memo miss needs a real context."""

    __slots__ = ("vars", "shared", "locals")

    def __init__(self, vars: Any, shared: bool, locals: Any) -> None:
        self.vars, self.shared, self.locals = vars, shared, locals

    def get_all(self) -> Any:  # as a Context's: the variables a render of the partial gets
        return self.vars


class _Entry:
    """One memoized card: the paper and summary it names by identity (``anchors``), its
    output (a plain render) or marked text and recorded values (a recorded one), its
    stand-in, and its holes: for a recorded render (position among the values, hole),
    for a plain one the hole after each piece of ``pieces``."""

    __slots__ = ("anchors", "text", "values", "stand_in", "holes", "pieces")

    def __init__(self, anchors: tuple[Any, ...], text: str, values: tuple[str, ...],
                 stand_in: str, holes: tuple[tuple[int, int], ...] = (),
                 pieces: tuple[str, ...] = ()) -> None:
        self.anchors, self.text, self.values, self.stand_in = anchors, text, values, stand_in
        self.holes, self.pieces = holes, pieces


_NOT_CACHED = object()


class _MemoTemplate:
    """A partial whose recorded output (marked text and values) depends only on the card it
    is included for: rendered once per distinct card key and marker offset, replayed after.
    With a ``CardPlan``'s holes the key leaves out the printed per-subscriber values (the
    skeleton is rendered once, each card's values filled in) and with its tests it holds
    their truth instead of the values they read. Anything but an ``include`` (``render``,
    ``extends``) goes to the real template."""

    def __init__(self, template: Template, plan: CardPlan, key: CardKey,
                 env: FastEnvironment) -> None:
        self._template, self._store = template, env._memo_store
        self._skeletons = env._memo_skeletons
        self._texts, self._values = env._memo_texts, env._memo_values
        self._skeleton: Template | None = None
        self._tests: tuple[tuple[Callable[[Any], Any], Template], ...] = ()
        self._holes: tuple[tuple[Callable[[Any], Any], Template], ...] = ()
        # every attribute the partial reads, its tests' and holes' too: this very card's key
        every = tuple(sorted({*plan.reads, *(
            r for _, reads in plan.tests + plan.holes for r in reads)}))
        if plan.tests or plan.holes:
            try:
                self._tests = tuple((attrgetter(*reads), self._compiled(env, nodes.Assign(
                    nodes.Name("result", "store"), expr, lineno=expr.lineno)))
                    for expr, reads in plan.tests)
                self._holes = tuple((attrgetter(*reads), self._compiled(env, nodes.Output(
                    [expr], lineno=expr.lineno))) for expr, reads in plan.holes)
                if plan.skeleton is not None:
                    self._skeleton = self._compiled(env, plan.skeleton)
            except Exception:  # anything the compiler refuses: the values join the key
                self._tests, self._holes, self._skeleton = (), (), None
                plan = CardPlan(every)
        self._key = key(plan.reads)  # the paper's skeleton
        self._exact = key(every)  # this very card
        # every attribute the tests and holes read, as one value: their results are kept
        # for it (one lookup per card)
        read = sorted({r for _, reads in plan.tests + plan.holes for r in reads})
        self._combo = attrgetter(*read) if read and (self._tests or self._holes) else None

    def _compiled(self, env: Environment, node: nodes.Node) -> Template:
        """``node`` (a statement, or the skeleton) compiled as the partial itself is: same
        environment, name (so the same autoescape) and file."""
        template = self._template
        body = node if isinstance(node, nodes.Template) else nodes.Template([node], lineno=1)
        body.set_environment(env)
        code = env.compile(body, template.name, template.filename)
        return env.template_class.from_code(env, code, template.globals)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._template, name)

    def new_context(self, vars: Any = None, shared: bool = False, locals: Any = None) -> Any:
        return _Pending(vars, shared, locals)

    def root_render_func(self, context: Any) -> Any:
        if not isinstance(context, _Pending):
            return self._template.root_render_func(context)
        return self._pending(context)

    def _pending(self, context: _Pending) -> Iterator[str]:
        # Jinja's include code closes what it gets: a generator, even for a replayed card
        yield from self.include(context, context.shared, context.locals)

    def include(self, context: Any, shared: bool, locals: Any) -> Iterable[str]:
        """The output of ``{% include %}`` with ``new_context(context.get_all(), shared,
        locals)``: a replayed card as a one-item tuple (no generator, no context, and the
        including context's variables never gathered), else a render."""
        template = self._template
        card = locals.get("card") if locals else None
        found = None if card is None else self._exact(card)
        if found is None:
            return template.root_render_func(
                template.new_context(context.get_all(), shared, locals))
        key, anchors = found
        parts = _RECORDER.parts
        offset = -1 if parts is None else len(parts[-1])  # -1: a plain render (text part)
        full = (id(template), offset, key)
        hit = self._store.get(full)  # this very card seen before
        # the same paper and summary: the key holds their ids and the entry keeps its own
        # alive, so equal keys name the same objects; == (identity first, one C call) only
        # guards a key function that breaks that
        if hit is not None and hit.anchors == anchors:
            if parts is None:
                return (hit.text,)
            parts[-1].extend(hit.values)
            return (hit.stand_in,)
        if self._combo is None:
            return self._miss(template.new_context(context.get_all(), shared, locals), (full,),
                              anchors)
        return self._per_paper(context, shared, locals, card, full)

    def _per_paper(self, context: Any, shared: bool, locals: Any, card: Any,
                   full: tuple[Any, ...]) -> Iterable[str]:
        """A card not seen before, of a partial with tests or holes: the paper's skeleton
        (rendered once per paper and test truths) filled with this card's holes."""
        template = self._template
        found = self._key(card)
        try:
            known = self._values.get((self, self._combo(card)))  # type: ignore[misc]
        except TypeError:  # an unhashable value
            known = None
        if found is None or known is None and (known := self._work_out(card)) is None:
            return template.root_render_func(
                template.new_context(context.get_all(), shared, locals))
        (key, anchors), (truth, filled) = found, known
        paper = (id(template), full[1], (key, truth) if truth else key)
        entry = self._skeletons.get(paper)
        if entry is None or entry.anchors != anchors:  # as in ``include``
            if self._skeleton is None:  # tests only: the partial itself is the skeleton
                return self._miss(template.new_context(context.get_all(), shared, locals),
                                  (paper, full), anchors)
            return self._miss_skeleton(context, shared, locals, filled, full, paper, anchors)
        return self._replay(entry, filled, _RECORDER.parts, full)

    # ---------------------------------------------------------------- holes and tests

    def _value(self, n: int, values: Any, run: Callable[[], Any], printed: bool) -> Any:
        """Test or hole ``n``'s result for the attribute values ``values``, worked out by
        ``run`` once per distinct values; _NOT_CACHED when it cannot be vouched for. A
        printed hole in a recorded render gives the value it records."""
        memo = self._values
        try:
            known = memo.get((self, n, values), _NOT_CACHED)
        except TypeError:  # an unhashable value
            return _NOT_CACHED
        if known is not _NOT_CACHED:
            return known
        saved = _RECORDER.parts, _RECORDER.tainted
        scratch: list[list[str]] = [[]]
        _RECORDER.parts, _RECORDER.tainted = (None if saved[0] is None else scratch), False
        try:
            found = run()
        except Exception:  # the real render raises it (or not, if it never gets there)
            return _NOT_CACHED
        else:
            if _RECORDER.tainted:  # a filter saw marked text: the real render will too
                return _NOT_CACHED
            if printed and saved[0] is not None:
                # a recorded print leaves one marker and records one value
                if found != "\x020\x03" or len(scratch) != 1 or len(scratch[0]) != 1:
                    return _NOT_CACHED
                found = scratch[0][0]
        finally:
            _RECORDER.parts, _RECORDER.tainted = saved
        self._remember((self, n, values), found)
        return found

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        """``value`` kept in the memo of test and hole results (bounded: it starts over)."""
        # 4,096, not 32,768: the text part's filled 1,808 by the 1,000th subscriber and 4,870
        # by the 10,000th, 0.5 MB of a 10,000 send's peak; render + MIME 1.00-1.01 of before
        # (bench_render, 5,000 send inputs taking turns; session 10)
        if len(self._values) >= 8 * MAX_SHAPES:
            self._values.clear()
        self._values[key] = value

    def _work_out(self, card: Any) -> tuple[tuple[bool, ...], list[str]] | None:
        """The truth of each test and each hole's printed text (a plain render) or recorded
        value for ``card``, kept for the values they read; None when one cannot be vouched
        for (it raised, or saw marked text): the partial is then rendered in full."""
        truth: list[bool] = []
        filled: list[str] = []
        for n, (get, test) in enumerate(self._tests):
            def run_test(test: Template = test) -> Any:
                context = _card_context(test, card)
                for _ in test.root_render_func(context):
                    pass
                return bool(context.vars["result"])
            found = self._value(-1 - n, get(card), run_test, False)
            if found is _NOT_CACHED:
                return None
            truth.append(found)
        for n, (get, hole) in enumerate(self._holes):
            def run_hole(hole: Template = hole) -> Any:
                return hole.environment.concat(
                    hole.root_render_func(_card_context(hole, card)))
            found = self._value(n, get(card), run_hole, True)
            if found is _NOT_CACHED:
                return None
            filled.append(found)
        known = (tuple(truth), filled)
        assert self._combo is not None
        self._remember((self, self._combo(card)), known)
        return known

    def _replay(self, entry: _Entry, filled: list[str], parts: list[list[str]] | None,
                full: tuple[Any, ...]) -> tuple[str]:
        """A paper's skeleton filled with a card's holes, kept for that card (``full``)."""
        if parts is None:
            pieces = entry.pieces or (entry.text,)
            out = [pieces[0]]
            for (_, hole), piece in zip(entry.holes, pieces[1:]):
                out.append(filled[hole])
                out.append(piece)
            text = "".join(out)
            self._keep(self._store, full, _Entry(entry.anchors, text, (), ""))
            return (text,)
        values = list(entry.values)
        for at, hole in entry.holes:
            values[at] = filled[hole]
        self._keep(self._store, full, _Entry(entry.anchors, entry.text, tuple(values),
                                             entry.stand_in))
        parts[-1].extend(values)
        return (entry.stand_in,)

    def _miss_skeleton(self, context: Any, shared: bool, locals: Any, filled: list[str],
                       full: tuple[Any, ...], paper: tuple[Any, ...],
                       anchors: tuple[Any, ...]) -> Iterable[str]:
        """Render the skeleton (holes printed as tokens), keep it, and fill it with this
        card's ``filled`` holes; whatever does not add up renders the partial itself."""
        template, skeleton = self._template, self._skeleton
        assert skeleton is not None
        parts = _RECORDER.parts
        count = 0 if parts is None else len(parts)
        start = 0 if parts is None else len(parts[-1])
        tainted = _RECORDER.tainted
        tokens = [_Token(n) for n in range(len(self._holes))]
        entry = None
        try:
            text = skeleton.environment.concat(
                skeleton.root_render_func(skeleton.new_context(context.get_all(), shared, {
                    **locals, **{f"{_HOLE_NAME}{n}": t for n, t in enumerate(tokens)}})))
        except Exception:  # the partial itself raises it, from its own line
            text = None
        if text is None or _RECORDER.tainted:
            pass
        elif parts is None:
            split = _HOLE.split(text)
            holes = tuple((0, int(h)) for h in split[1::2])
            if all(t.count == sum(1 for _, h in holes if h == n)
                   for n, t in enumerate(tokens)):
                entry = _Entry(anchors, "", (), "", holes, tuple(split[0::2]))
        elif _RECORDER.parts is parts and len(parts) == count and "\x02h" not in text:
            values = tuple(parts[-1][start:])
            holes = tuple((at, int(m.group(1))) for at, value in enumerate(values)
                          if (m := _HOLE.fullmatch(value)) is not None)
            if all(t.count == sum(1 for _, h in holes if h == n)
                   for n, t in enumerate(tokens)):
                entry = _Entry(anchors, text, values, f"\x02m{next(_SERIAL)}\x03", holes)
        if parts is not None:
            del parts[-1][start:]
        _RECORDER.tainted = tainted
        if entry is not None:
            self._keep(self._skeletons, paper, entry)
            return self._replay(entry, filled, parts, full)
        return template.root_render_func(template.new_context(context.get_all(), shared, locals))

    def _keep(self, store: dict[Any, _Entry] | Generations[Any, _Entry], key: tuple[Any, ...],
              entry: _Entry) -> None:
        # The filled cards start over when full, on their own: a run whose cards fit (1,000
        # digests of the sample, ~1,800 a part) then finds every one again, where two
        # generations of half the size would drop the older half in turn; 10,000 subscribers
        # meet ~34,000, so there it empties, but the papers' skeletons and the stand-ins'
        # texts are bounded by generations apart from it (digest/memo.py) and survive (they
        # were emptied with it: 1,031 skeleton renders in such a run instead of 124). A
        # stand-in whose text has left ``_texts`` is not expanded: that email compiles in full
        # (``expand``), so that bound is only ever a slowdown.
        if store is self._store and len(store) >= 4 * MAX_SHAPES:
            store.clear()
        if entry.stand_in:
            self._texts[entry.stand_in] = entry.text
        store[key] = entry

    def _miss(self, context: Any, keys: tuple[tuple[Any, ...], ...],
              anchors: tuple[Any, ...]) -> Iterator[str]:
        """Render the partial itself and keep its output under ``keys`` (this card's; with
        tests, also the paper's and their truths')."""
        parts = _RECORDER.parts
        count = 0 if parts is None else len(parts)
        events: list[str] = []
        for event in self._template.root_render_func(context):
            events.append(event)
            yield event
        if parts is None:  # a plain render: only the output is replayed
            entry = _Entry(anchors, "".join(events), (), "")
        elif not _RECORDER.tainted and _RECORDER.parts is parts and len(parts) == count:
            text = "".join(events)
            entry = _Entry(anchors, text, tuple(parts[-1][keys[0][1]:]),
                           f"\x02m{next(_SERIAL)}\x03")
        else:
            return
        for key in keys:
            self._keep(self._skeletons if len(keys) > 1 and key is keys[0] else self._store,
                       key, entry)


class IncludeGenerator(CodeGenerator):
    """Jinja's code generator with ``{% include "name" %}`` (a constant name, with context)
    compiled to ``yield from environment.memo_include(...)``: a replayed card is then one
    tuple, with no per-card generator chain, context copy or ``try``/``finally``."""

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        if node.ignore_missing or not node.with_context or self.environment.is_async \
                or not isinstance(node.template, nodes.Const) \
                or not isinstance(node.template.value, str):
            super().visit_Include(node, frame)
            return
        into = "yield from " if frame.buffer is None else f"{frame.buffer}.extend("
        self.writeline(f"{into}environment.memo_include(context, ", node)
        self.visit(node.template, frame)
        self.write(f", {self.name!r}, {self.dump_local_context(frame)})")
        if frame.buffer is not None:
            self.write(")")


class RecordingGenerator(IncludeGenerator, FinalizeGenerator):
    """The recording environment's: memoized includes and values printed as finalized."""


class FastEnvironment(Environment):
    """The fast path's Jinja environment: partials that only read per-card values
    (``card_reads``) are replayed from a memo instead of rendered for every email."""

    def setup_memo(self, key: CardKey, allowed: frozenset[str], per_card: frozenset[str]
                   ) -> None:
        """``allowed``: the card attributes a memoized partial may read; ``per_card``: those
        among them that differ per subscriber (the rest are per paper and summary)."""
        self._memo_key, self._memo_allowed, self._memo_per_card = key, allowed, per_card
        self._memo_on = True
        self._memo_names: dict[str, Any] = {}
        self._memo_includes: dict[tuple[str, str], Any] = {}  # (name, parent) -> template
        # this very card -> its entry (a card recurs with the same rank and tags in many
        # emails; the rest are filled from their paper's skeleton by a join)
        self._memo_store: dict[Any, _Entry] = {}
        # stand-in -> marked text
        self._memo_texts: Generations[str, str] = Generations(16 * MAX_SHAPES)
        # per paper (and test truths)
        self._memo_skeletons: Generations[Any, _Entry] = Generations(8 * MAX_SHAPES)
        self._memo_values: dict[Any, Any] = {}  # (partial, test or hole, values) -> result

    def memo_include(self, context: Any, name: str, parent: str, locals: Any) -> Iterable[str]:
        """What ``IncludeGenerator`` compiles an include to: Jinja's own include, but a
        memoized partial answers without a new context or a generator."""
        template = self._memo_includes.get((name, parent))
        if template is None:
            template = self.get_template(name, parent)
            if not self.auto_reload:  # as get_template: found once, the same for good
                if len(self._memo_includes) >= MAX_SHAPES:
                    self._memo_includes.clear()
                self._memo_includes[(name, parent)] = template
        if type(template) is _MemoTemplate:
            return template.include(context, True, locals)
        return template.root_render_func(  # type: ignore[no-any-return]
            template.new_context(context.get_all(), True, locals))

    def expand(self, marked: str) -> str | None:
        """``marked`` with every card stand-in put back as the marked text it stands for;
        None when one is no longer known (the memo started over): compile in full."""
        if "\x02m" not in marked:
            return marked
        texts = self._memo_texts
        try:
            return _STAND_IN.sub(lambda m: texts[m.group(0)], marked)
        except KeyError:
            return None

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
            plan = None if source is None else card_plan(
                self, source, self._memo_allowed, self._memo_per_card)
            if plan is not None:
                wrapped = _MemoTemplate(template, plan, self._memo_key, self)
        if not self.auto_reload:
            if len(self._memo_names) >= MAX_SHAPES:
                self._memo_names.clear()
            self._memo_names[name] = wrapped
        return wrapped
