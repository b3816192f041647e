"""Card partials rendered once per distinct card, replayed for every other email.

``card_reads`` proves on a partial's syntax tree that it reads only ``card`` values;
``FastEnvironment`` memoizes such partials (docs/render.md): with their recorded values
inside a recorded render (the HTML), as plain output otherwise (the text part).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from operator import is_
from typing import Any

from jinja2 import Environment, Template, TemplateNotFound, meta, nodes
from jinja2.compiler import CodeGenerator, Frame

from digest.render._record import _RECORDER, MAX_SHAPES, FinalizeGenerator

# --------------------------------------------------------------------------- included parts

# A recorded card replayed from the memo is printed as a stand-in, "\x02m<n>\x03" (n never
# reused), that ``FastEnvironment.expand`` turns back into its marked text: Jinja then joins,
# and the shaper splits and hashes, a few bytes per card instead of its whole marked text.
_STAND_IN = re.compile("\x02m(\\d+)\x03")
_SERIAL = itertools.count()
Entry = tuple[tuple[Any, ...], str, tuple[str, ...], str]  # anchors, text, values, stand-in

# Card key: given the attributes a partial reads, a function of the card giving (hashable key,
# objects the key names by identity). The renderer supplies it, since it knows which of a
# card's attributes are per paper and which are per subscriber.
CardKey = Callable[[tuple[str, ...]],
                   Callable[[Any], "tuple[tuple[Any, ...], tuple[Any, ...]] | None"]]
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
                 store: dict[Any, Entry], texts: dict[str, str]) -> None:
        self._template, self._key, self._store = template, key(reads), store
        self._texts = texts

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
        yield from self.include(context.vars, context.shared, context.locals)

    def include(self, vars: Any, shared: bool, locals: Any) -> Iterable[str]:
        """The output of ``{% include %}`` with ``new_context(vars, shared, locals)``: a
        replayed card as a one-item tuple (no generator, no context), else a render."""
        template = self._template
        card = locals.get("card") if locals else None
        found = None if card is None else self._key(card)
        if found is None:
            return template.root_render_func(template.new_context(vars, shared, locals))
        key, anchors = found
        parts = _RECORDER.parts
        offset = -1 if parts is None else len(parts[-1])  # -1: a plain render (text part)
        full = (id(template), offset, key)
        hit = self._store.get(full)
        if hit is not None and len(hit[0]) == len(anchors) and all(map(is_, hit[0], anchors)):
            if parts is None:
                return (hit[1],)
            parts[-1].extend(hit[2])
            return (hit[3],)
        return self._miss(template.new_context(vars, shared, locals), full, anchors)

    def _miss(self, context: Any, full: tuple[Any, ...], anchors: tuple[Any, ...]
              ) -> Iterator[str]:
        parts = _RECORDER.parts
        count = 0 if parts is None else len(parts)
        events: list[str] = []
        for event in self._template.root_render_func(context):
            events.append(event)
            yield event
        if parts is None:  # a plain render: only the output is replayed
            entry: Entry = (anchors, "".join(events), (), "")
        elif not _RECORDER.tainted and _RECORDER.parts is parts and len(parts) == count:
            text = "".join(events)
            stand_in = f"\x02m{next(_SERIAL)}\x03"
            entry = (anchors, text, tuple(parts[-1][full[1]:]), stand_in)
        else:
            return
        if len(self._store) >= 8 * MAX_SHAPES:
            self._store.clear()
            self._texts.clear()  # a stand-in printed before this is then not expanded
        if entry[3]:
            self._texts[entry[3]] = entry[1]
        self._store[full] = entry


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

    def setup_memo(self, key: CardKey, allowed: frozenset[str]) -> None:
        self._memo_key, self._memo_allowed = key, allowed
        self._memo_on = True
        self._memo_names: dict[str, Any] = {}
        self._memo_includes: dict[tuple[str, str], Any] = {}  # (name, parent) -> template
        self._memo_store: dict[Any, Entry] = {}
        self._memo_texts: dict[str, str] = {}  # stand-in -> marked text

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
            return template.include(context.get_all(), True, locals)
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
            reads = None if source is None else card_reads(self, source, self._memo_allowed)
            if reads is not None:
                wrapped = _MemoTemplate(template, reads, self._memo_key, self._memo_store,
                                        self._memo_texts)
        if not self.auto_reload:
            if len(self._memo_names) >= MAX_SHAPES:
                self._memo_names.clear()
            self._memo_names[name] = wrapped
        return wrapped
