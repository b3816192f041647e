"""The email's frame run without its text: the HTML template's values and cards, and a short
*trace* that stands for the text of its head and tail (docs/render.md).

``values_template`` flattens a template's inheritance (each block replaced by its child-most
definition) and proves the result is a *frame* of literal text, printed expressions and
``{% if %}`` around one ``{% for %}`` loop that is followed by ``{{ card_marker }}``, the only
card marker the frame prints. It compiles the frame once more with its literal text left out,
a token (``\\x04<n>\\x05``) at the start of each branch and one before the loop, the loop kept
as it is. A recorded render of that gives the very values and card parts the template's own
render records (the same expressions, in the same order, over the same context); its head
(up to the first card marker) and tail (after the last) hold only tokens and value markers,
which name the path taken through the frame and so the head's and tail's text. ``Frame``
learns each trace's text from one full render and vouches for a trace only when it holds
nothing but tokens and exactly its part's markers.

May import jinja2, ``digest.memo`` and ``digest.render._record``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, Template, TemplateNotFound, nodes

from digest.memo import Generations
from digest.render._record import CARD_MARK, IMPURE_FILTERS, SPECIAL_NAMES, render_recorded

LOOP_START = "\x04s\x05"  # printed just before the loop: the head ends with it
_TRACE = re.compile("(?:\x04(?:\\d+|s)\x05|\x02\\d+\x03)*")
_MARKER_NAME = "card_marker"
# What a frame's expressions may be made of: no calls (a call may do anything, and differ
# between two renders), no names that reach outside the context.
_EXPRESSIONS = (nodes.Name, nodes.Const, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair,
                nodes.Keyword, nodes.CondExpr, nodes.BinExpr, nodes.UnaryExpr, nodes.Compare,
                nodes.Operand, nodes.Concat, nodes.Getattr, nodes.Getitem, nodes.Slice,
                nodes.Filter, nodes.Test)
# Inside the loop anything goes (it is run as written) but what would make it mean something
# else outside its block: blocks, inheritance, imports, macros, assignments, self/super.
_NOT_IN_LOOP = (nodes.Block, nodes.Extends, nodes.Import, nodes.FromImport, nodes.Macro,
                nodes.Assign, nodes.AssignBlock)


class _Refused(Exception):
    """The template is not a frame this module can vouch for."""


def values_template(env: Environment, template: Template) -> Template | None:
    """The values template of ``template`` (see the module docstring), or None when its
    source does not fit the model: it then always renders as it is."""
    if env.loader is None or template.name is None:
        return None
    try:
        body = _frame_body(env, template.name)
        tokens = iter(range(1 << 30))
        values = nodes.Template(_without_text(body, tokens, top=True), lineno=1)
        values.set_environment(env)
        code = env.compile(values, template.name, template.filename)
    except Exception:  # _Refused, or anything the compiler refuses: render as it is
        return None
    return env.template_class.from_code(env, code, template.globals)


def _frame_body(env: Environment, name: str) -> list[nodes.Node]:
    """The base template's body with every block replaced by its child-most definition,
    checked to be a frame."""
    assert env.loader is not None
    chain: list[nodes.Template] = []
    seen: set[str] = set()
    autoescape: set[bool] = set()
    while True:
        if name in seen or len(chain) >= 16:
            raise _Refused
        seen.add(name)
        try:
            source = env.loader.get_source(env, name)[0]
        except TemplateNotFound:
            raise _Refused from None
        if "\x04" in source or "\x05" in source:
            raise _Refused  # a literal token
        ast = env.parse(source, name)
        chain.append(ast)
        autoescape.add(bool(env.autoescape(name) if callable(env.autoescape)
                            else env.autoescape))
        extends = list(ast.find_all(nodes.Extends))
        if not extends:
            break
        first = ast.body[0] if ast.body else None
        if len(extends) > 1 or first is not extends[0] \
                or not isinstance(first.template, nodes.Const) \
                or not isinstance(first.template.value, str):
            raise _Refused
        for node in ast.body[1:]:  # a child prints nothing outside its blocks
            if not isinstance(node, nodes.Block) and not (isinstance(node, nodes.Output) and all(
                    isinstance(child, nodes.TemplateData) for child in node.nodes)):
                raise _Refused
        name = env.join_path(first.template.value, name)
    if len(autoescape) > 1:
        raise _Refused  # blocks escaped differently from the template they end up in
    blocks: dict[str, nodes.Block] = {}
    for ast in chain:  # child first: its definitions win
        for block in ast.find_all(nodes.Block):
            if getattr(block, "required", False):
                raise _Refused
            blocks.setdefault(block.name, block)
    base = copy.deepcopy(chain[-1].body, {id(env): env})
    body = _expand(base, blocks, env, 0)
    _check_frame(body, loops=[])
    return body


def _expand(items: list[Any], blocks: dict[str, nodes.Block], env: Environment,
            depth: int) -> list[Any]:
    out: list[Any] = []
    for child in items:
        if isinstance(child, nodes.Block):
            if depth > 32:
                raise _Refused
            inner = copy.deepcopy(blocks[child.name].body, {id(env): env})
            out.extend(_expand(inner, blocks, env, depth + 1))
        else:
            if isinstance(child, nodes.Node):
                for field, value in child.iter_fields():
                    if isinstance(value, list):
                        setattr(child, field, _expand(value, blocks, env, depth))
                    elif isinstance(value, nodes.Node):
                        setattr(child, field, _expand([value], blocks, env, depth)[0])
            out.append(child)
    return out


def _check_expr(expr: nodes.Node) -> None:
    for node in (expr, *expr.find_all(nodes.Node)):
        if not isinstance(node, _EXPRESSIONS):
            raise _Refused
        if isinstance(node, nodes.Name) and (node.ctx != "load" or node.name in SPECIAL_NAMES
                                             or node.name == _MARKER_NAME):
            raise _Refused
        if isinstance(node, nodes.Filter) and node.name in IMPURE_FILTERS:
            raise _Refused


def _check_frame(body: list[nodes.Node], loops: list[nodes.For]) -> None:
    """Refuses what is not a frame; ``loops`` collects the one loop."""
    for i, node in enumerate(body):
        if isinstance(node, nodes.Output):
            for j, child in enumerate(node.nodes):
                if isinstance(child, nodes.TemplateData):
                    continue
                if isinstance(child, nodes.Name) and child.name == _MARKER_NAME \
                        and child.ctx == "load" and j == 0 and i > 0 \
                        and isinstance(body[i - 1], nodes.For):
                    continue  # the card marker right after the loop
                _check_expr(child)
        elif isinstance(node, nodes.If):
            _check_expr(node.test)
            _check_frame(node.body, loops)
            for elif_ in node.elif_:
                _check_expr(elif_.test)
                _check_frame(elif_.body, loops)
            _check_frame(node.else_, loops)
        elif isinstance(node, nodes.For):
            if loops or node.else_ or i + 1 >= len(body) or not _marker_first(body[i + 1]):
                raise _Refused
            _check_expr(node.iter)
            if any(True for _ in node.find_all(_NOT_IN_LOOP)) or any(
                    n.name in ("self", "super") for n in node.find_all(nodes.Name)):
                raise _Refused
            loops.append(node)
        else:
            raise _Refused


def _marker_first(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Output) and bool(node.nodes) \
        and isinstance(node.nodes[0], nodes.Name) and node.nodes[0].name == _MARKER_NAME


def _token(tokens: Any) -> nodes.Output:
    return nodes.Output([nodes.TemplateData(f"\x04{next(tokens)}\x05")])


def _without_text(body: list[nodes.Node], tokens: Any, top: bool = False) -> list[nodes.Node]:
    """The frame with its literal text left out and a token at the start of each branch
    and before the loop (the loop itself as it is)."""
    out: list[nodes.Node] = []
    for node in body:
        if isinstance(node, nodes.Output):
            kept = [child for child in node.nodes if not isinstance(child, nodes.TemplateData)]
            if kept:
                out.append(nodes.Output(kept, lineno=node.lineno))
        elif isinstance(node, nodes.If):
            node.body = [_token(tokens), *_without_text(node.body, tokens)]
            for elif_ in node.elif_:
                elif_.body = [_token(tokens), *_without_text(elif_.body, tokens)]
            node.else_ = [_token(tokens), *_without_text(node.else_, tokens)]
            out.append(node)
        else:  # the loop
            out.append(nodes.Output([nodes.TemplateData(LOOP_START)]))
            out.append(node)
    if top and not any(isinstance(n, nodes.For) for n in _all_statements(out)):
        raise _Refused  # no loop: nothing for the cards
    return out


def _all_statements(body: list[nodes.Node]) -> list[nodes.Node]:
    found: list[nodes.Node] = []
    for node in body:
        found.append(node)
        if isinstance(node, nodes.If):
            found += _all_statements(node.body)
            for elif_ in node.elif_:
                found += _all_statements(elif_.body)
            found += _all_statements(node.else_)
    return found


def _vouched(trace: str, values: list[str], learned: Generations[str, str]) -> bool:
    """A head or tail trace of tokens and markers only, one marker per value recorded (a
    printed text that passed through with a marker in it would add one more). A trace
    already ``learned`` was matched when it was learned: only its count is checked again."""
    return (trace in learned or _TRACE.fullmatch(trace) is not None) \
        and trace.count("\x02") == len(values)


@dataclass
class Traced:
    """A recorded render of the values template: its parts' texts (head and tail as
    traces, the cards as the template prints them) and values."""

    texts: list[str]
    values: list[list[str]]


class Frame:
    """A template's values template and the texts its traces stand for, learned from full
    renders; bounded (a frame has a path per combination of its branches taken)."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self._heads: Generations[str, str] = Generations(256)
        self._tails: Generations[str, str] = Generations(256)

    def trace(self, run: Callable[[Template], str]) -> Traced | None:
        """The values template rendered by ``run`` under the recorder; None when it raised
        (the template itself will, from its own line) or its trace cannot be vouched for."""
        try:
            recorded = render_recorded(lambda: run(self.template))
        except Exception:
            return None
        if recorded is None:
            return None
        trace, values = recorded
        texts = trace.split(CARD_MARK)
        if len(texts) < 2 or len(texts) != len(values) or not texts[0].endswith(LOOP_START) \
                or not _vouched(texts[0], values[0], self._heads) \
                or not _vouched(texts[-1], values[-1], self._tails):
            return None
        return Traced(texts, values)

    def texts(self, traced: Traced) -> list[str] | None:
        """The parts' marked texts, as the template's own render prints them; None while the
        head's or tail's trace has not been learned."""
        head, tail = self._heads.get(traced.texts[0]), self._tails.get(traced.texts[-1])
        if head is None or tail is None:
            return None
        return [head, *traced.texts[1:-1], tail]

    def learn(self, traced: Traced, texts: list[str], values: list[list[str]]) -> None:
        """Keep what ``traced``'s head and tail stand for, from the template's own render of
        the same email (``texts``, ``values``) when the two agree on everything else."""
        if len(texts) == len(traced.texts) and values == traced.values \
                and texts[1:-1] == traced.texts[1:-1]:
            self._heads[traced.texts[0]] = texts[0]
            self._tails[traced.texts[-1]] = texts[-1]
