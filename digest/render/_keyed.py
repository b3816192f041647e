"""Whole templates replayed by the few plain values they read (the subject line).

``template_reads`` proves on a template's syntax tree that its output is a function of a few
*projections* of its context variables: a variable's value (a string, a number, a date, a
tuple of strings), its length (``cards|length``) or its truth (``{% if cards %}``).
``KeyedOutputs`` then keeps the output by those values, so the stock subject ("5 new papers
on X, Y - Tue 25 Nov") is rendered once per distinct count, topics and day, not once per
email. Anything the proof cannot vouch for (loops, assignments, includes, calls, attribute
reads, filters outside a list known to give plain values) is not memoized, and a value that
is not plain at render time renders the template itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from jinja2 import Environment, nodes

from digest.render._record import SPECIAL_NAMES

# (kind, variable): "value" its value, "len" len(value), "bool" its truth
Projection = tuple[str, str]

_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.Name, nodes.Const,
          nodes.CondExpr, nodes.Concat, nodes.Compare, nodes.Operand, nodes.BinExpr,
          nodes.UnaryExpr, nodes.Filter, nodes.Test, nodes.Getitem, nodes.Slice, nodes.Tuple,
          nodes.List, nodes.Keyword)
# Filters whose result, from plain values, prints the same for equal values (no generator or
# iterator whose text names its address, no attribute fetched by name, no randomness).
_PLAIN_FILTERS = frozenset({
    "length", "count", "join", "upper", "lower", "title", "capitalize", "trim", "replace",
    "truncate", "default", "d", "format", "string", "int", "float", "e", "escape", "safe",
    "forceescape", "striptags", "first", "last", "wordcount", "wordwrap", "center", "indent",
    "abs", "round", "sum", "min", "max", "list", "sort", "tojson", "urlencode",
    "filesizeformat",
    # the renderer's own (pure: strings in, strings out)
    "http_url", "short_authors", "day", "long_date", "wrap", "link_line"})
# Filters taking an ``attribute`` (fetched by name: a bound method of a string prints its
# address), with the positional arguments before it.
_ATTRIBUTE_AT = {"join": 1, "sort": 2, "sum": 0, "min": 1, "max": 1}
_PLAIN_TESTS = frozenset({
    "defined", "undefined", "none", "number", "string", "sequence", "mapping", "iterable",
    "escaped", "odd", "even", "divisibleby", "lower", "upper", "in", "eq", "equalto", "ne",
    "lt", "lessthan", "le", "gt", "greaterthan", "ge", "boolean", "true", "false", "integer",
    "float"})
_SIZED = (tuple, str)
_TRUTHFUL = (tuple, str, int, type(None), date)


def template_reads(env: Environment, source: str) -> tuple[Projection, ...] | None:
    """The projections a template's output is a function of, or None when it may depend on
    anything else."""
    try:
        ast = env.parse(source)
    except Exception:  # a syntax error surfaces, with its line, from the real render
        return None
    found: set[Projection] = set()
    stack: list[tuple[nodes.Node, nodes.Node | None]] = [(ast, None)]
    while stack:
        node, parent = stack.pop()
        if not isinstance(node, _NODES):
            return None
        if isinstance(node, (nodes.Filter, nodes.Test)):
            plain = _PLAIN_FILTERS if isinstance(node, nodes.Filter) else _PLAIN_TESTS
            if node.name not in plain or node.node is None or node.dyn_args is not None \
                    or node.dyn_kwargs is not None:
                return None
            if node.name in _ATTRIBUTE_AT and isinstance(node, nodes.Filter) and (
                    len(node.args) > _ATTRIBUTE_AT[node.name]
                    or any(k.key == "attribute" for k in node.kwargs)):
                return None
        elif isinstance(node, nodes.Getitem):
            # an index or a slice of constants; a name would fall back to getattr
            if not (isinstance(node.arg, nodes.Const) and type(node.arg.value) is int) and not (
                    isinstance(node.arg, nodes.Slice) and all(
                        part is None or isinstance(part, nodes.Const)
                        for part in (node.arg.start, node.arg.stop, node.arg.step))):
                return None
        elif isinstance(node, nodes.Name):
            if node.ctx != "load" or node.name in SPECIAL_NAMES:
                return None
            found.add(_projection(env, node, parent))
        stack.extend((child, node) for child in node.iter_child_nodes())
    return tuple(sorted(found))


def _projection(env: Environment, name: nodes.Name, parent: nodes.Node | None) -> Projection:
    if isinstance(parent, nodes.Filter) and parent.node is name and parent.name in (
            "length", "count") and not parent.args and not parent.kwargs \
            and getattr(env.filters.get(parent.name), "__wrapped__", env.filters.get(
                parent.name)) is len:
        return ("len", name.name)
    if isinstance(parent, (nodes.If, nodes.CondExpr)) and parent.test is name:
        return ("bool", name.name)
    return ("value", name.name)


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is tuple:
        return all(type(item) is str for item in value)
    return kind is str or kind is int or kind is date or value is None


def projector(reads: tuple[Projection, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...] | None]:
    """A function of the render's variables giving the values ``reads`` name, as a memo
    key; None when one is missing or not plain (the template is then rendered)."""
    def key(variables: dict[str, Any]) -> tuple[Any, ...] | None:
        out: list[Any] = []
        for kind, name in reads:
            if name not in variables:
                return None
            value = variables[name]
            if kind == "value":
                if not _plain(value):
                    return None
                out.append(value)
            elif kind == "len":
                if type(value) not in _SIZED:
                    return None
                out.append(len(value))
            else:
                if type(value) not in _TRUTHFUL:
                    return None
                out.append(bool(value))
        return tuple(out)
    return key


class KeyedOutputs:
    """Outputs of templates that ``template_reads`` vouches for, by the values they read;
    bounded (entries and characters: past either it starts over)."""

    MAX_ENTRIES = 4096
    MAX_CHARS = 4_000_000

    def __init__(self) -> None:
        # template -> its key function, or None (not memoized)
        self._keys: dict[Any, Callable[[dict[str, Any]], tuple[Any, ...] | None] | None] = {}
        self._outputs: dict[tuple[Any, ...], str] = {}
        self._chars = 0

    def key(self, template: Any, source: Callable[[], str | None], variables: dict[str, Any]
            ) -> tuple[Any, ...] | None:
        """The memo key of rendering ``template`` with ``variables``; None: render it."""
        try:
            make = self._keys[template]
        except KeyError:
            if len(self._keys) >= 64:  # templates are found once each: this is a safeguard
                self._keys.clear()
            text = source()
            reads = None if text is None else template_reads(template.environment, text)
            make = self._keys[template] = None if reads is None else projector(reads)
        if make is None:
            return None
        values = make(variables)
        return None if values is None else (template, values)

    def get(self, key: tuple[Any, ...]) -> str | None:
        return self._outputs.get(key)

    def keep(self, key: tuple[Any, ...], output: str) -> None:
        if len(self._outputs) >= self.MAX_ENTRIES or self._chars + len(output) > self.MAX_CHARS:
            self._outputs.clear()
            self._chars = 0
        self._outputs[key] = output
        self._chars += len(output)
