"""Parsing the subscribers file into ``yaml`` nodes, its subscribers list streamed item by item.

Owns: ``compose`` (bytes -> node tree or the one YAML problem, with its line), the streaming
composer that hands each top-level ``subscribers:`` item to an ``ItemReader`` instead of
keeping it in the tree, and ``plain_tag`` (the tag a plain scalar resolves to, the one rule the
composer and ``_plain`` share). An item comes as its parser events when it has no anchor, alias
or explicit tag (a reader may take those as they are, see ``_plain``), and as the node
``yaml.compose`` would build otherwise, or when the reader declines the events.

May import: the standard library, PyYAML, ``digest.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Protocol

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from digest.errors import Problem

__all__ = ["RESOLVED_FIRST", "ItemReader", "ItemSink", "compose", "plain_tag"]

# libyaml's parser: ~10x faster than the pure-Python one, with the same marks (line numbers).
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ItemReader(Protocol):
    """Takes the items of the top-level ``subscribers:`` list, one at a time, in order."""

    def from_events(self, events: list[Any], index: int) -> bool:
        """Item ``index`` as its parser events (``yaml.events``: no anchor, alias or explicit
        tag among them); False to have it as a node instead (``from_node``)."""

    def from_node(self, node: Node, index: int) -> None:
        """Item ``index`` as the node ``yaml.compose`` builds for it."""


# Called when the top-level ``subscribers:`` list starts, with the top mapping composed so far;
# returns where its items go, or None to keep them in the tree.
ItemSink = Callable[[MappingNode], ItemReader | None]

_IMPLICIT: dict[Any, list[tuple[str, Any]]] = Resolver.yaml_implicit_resolvers
_WILDCARD = list(_IMPLICIT.get(None, []))
_BY_FIRST = {first: [*resolvers, *_WILDCARD] for first, resolvers in _IMPLICIT.items()
             if first is not None}
# The first characters of the plain scalars an implicit resolver may read as something else
# (a number, a bool, null...): every other plain scalar is a string. None: there is a resolver
# for any first character (PyYAML has none).
RESOLVED_FIRST = None if _WILDCARD else frozenset(_BY_FIRST)


def plain_tag(value: str) -> str:
    """``Resolver.resolve`` for a plain (unquoted, untagged) scalar: the first implicit
    resolver matching ``value`` (those for its first character), else ``str``."""
    for tag, regexp in _BY_FIRST.get(value[:1], _WILDCARD):
        if regexp.match(value):
            return tag
    return str(Resolver.DEFAULT_SCALAR_TAG)


_ComposerBase: Any = Composer  # PyYAML's mixins only type-check together, as a loader


class _StreamingComposer(_ComposerBase):  # type: ignore[misc]
    """PyYAML's composer over libyaml's events, except that the items of the top-level
    ``subscribers:`` list go to an ``ItemReader`` one by one and are dropped, instead of kept
    in the tree: the node tree (with two marks per node) is ~8 KB per subscriber, so a file of
    500,000 subscribers no longer needs gigabytes. Events, tags and marks are libyaml's, so the
    nodes are the ones ``yaml.compose`` would build."""

    def __init__(self, sink: ItemSink | None) -> None:
        _ComposerBase.__init__(self)
        self._sink = sink
        self._root: Node | None = None
        self._streamed = False

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if parent is None:
            self._root = None
        if (self._sink is not None and not self._streamed and parent is not None
                and parent is self._root and isinstance(index, ScalarNode)
                and index.value == "subscribers" and self.check_event(SequenceStartEvent)
                and self.peek_event().anchor is None):
            reader = self._sink(parent)  # type: ignore[arg-type]
            if reader is not None:
                self._streamed = True
                return self._stream_sequence(reader)
        node: Node = super().compose_node(parent, index)
        return node

    def compose_mapping_node(self, anchor: str | None) -> Node:
        if self._root is None:  # the document's top mapping: remember it for the sink
            event = self.peek_event()
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(MappingNode, None, event.implicit)
            self.get_event()
            node = MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                self.anchors[anchor] = node
            self._root = node
            while not self.check_event(MappingEndEvent):
                key = self.compose_node(node, None)
                value = self.compose_node(node, key)
                node.value.append((key, value))
            node.end_mark = self.get_event().end_mark
            return node
        mapping: Node = super().compose_mapping_node(anchor)
        return mapping

    def _stream_sequence(self, reader: ItemReader) -> Node:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start.implicit)
        node = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        index = 0
        if self.yaml_path_resolvers:  # (none in the safe loader) their hooks need nodes
            while not self.check_event(SequenceEndEvent):
                reader.from_node(self.compose_node(node, index), index)
                index += 1
            node.end_mark = self.get_event().end_mark
            return node
        get = self.get_event
        while type(event := get()) is not SequenceEndEvent:
            events, plain = self._item_events(event)
            if not (plain and reader.from_events(events, index)):
                # The node from the events read so far, then from the parser: an anchor or
                # alias is composed (and a repeated or unknown one raised) before the rest
                # of the item is parsed, as when the whole item is composed as it is parsed.
                more = chain(events, iter(get, None)).__next__
                reader.from_node(self._node_of(more(), more), index)
            index += 1  # the item is dropped here
        node.end_mark = event.end_mark
        return node

    def _item_events(self, first: Any) -> tuple[list[Any], bool]:
        """The events of the item starting with ``first``, and True; or, at the first anchor,
        alias or explicit tag, the events up to it and False (the rest is still unread). A
        list of one subscriber's events is smaller than its node tree, and cheaper: composing
        was half of reading a 10,000-subscriber file."""
        events = [first]
        kind = type(first)
        if kind is ScalarEvent or kind is MappingStartEvent or kind is SequenceStartEvent:
            if first.anchor is not None or first.tag is not None:
                return events, False
        else:  # an alias
            return events, False
        if kind is ScalarEvent:
            return events, True
        get, add, depth = self.get_event, events.append, 1
        while depth:
            event = get()
            add(event)
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    return events, False
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    return events, False
                depth += 1
            else:
                return events, False
        return events, True

    def _node_of(self, event: Any, get: Callable[[], Any]) -> Node:
        """``compose_node`` for one subscribers item from its first ``event``, the next ones
        from ``get``, where no path resolver is set (the safe loader's case): the same nodes,
        tags, marks, anchors and errors, with one ``get`` per event instead of a peek, a check
        per kind and the resolver's hooks. Methods, not closures: the config is read with the
        collector off, and a closure per item would be a cycle left behind per item."""
        kind, anchors = type(event), self.anchors
        if kind is AliasEvent:
            if event.anchor not in anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                    event.start_mark)
            found: Node = anchors[event.anchor]
            return found
        anchor = event.anchor
        if anchor is not None and anchor in anchors:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                anchors[anchor].start_mark, "second occurrence",
                                event.start_mark)
        tag = event.tag
        if kind is ScalarEvent:
            if tag is None or tag == "!":
                implicit = event.implicit
                tag = plain_tag(event.value) if implicit[0] else (
                    self.resolve(ScalarNode, event.value, implicit))
            node: Node = ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                    style=event.style)
            if anchor is not None:
                anchors[anchor] = node
            return node
        mapping = kind is MappingStartEvent
        assert mapping or kind is SequenceStartEvent, kind
        cls, end = (MappingNode, MappingEndEvent) if mapping else (SequenceNode, SequenceEndEvent)
        if tag is None or tag == "!":
            tag = self.resolve(cls, None, event.implicit)
        node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if anchor is not None:
            anchors[anchor] = node
        children = node.value
        while True:
            event = get()
            if type(event) is end:
                node.end_mark = event.end_mark
                return node
            child = self._node_of(event, get)
            children.append((child, self._node_of(get(), get)) if mapping else child)


try:  # libyaml's event parser (~10x the pure-Python one; the same events and marks)
    from yaml import cyaml as _cyaml

    _CParser: Any = getattr(_cyaml, "CParser", None)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None


def _streaming_loader(stream: bytes, sink: ItemSink | None) -> Any:
    if _CParser is not None:
        class _Fast(_StreamingComposer, _CParser, Resolver):  # type: ignore[misc]
            def __init__(self) -> None:
                _CParser.__init__(self, stream)
                Resolver.__init__(self)
                _StreamingComposer.__init__(self, sink)

        return _Fast()
    from yaml.parser import Parser
    from yaml.reader import Reader as _YamlReader
    from yaml.scanner import Scanner

    class _Slow(_YamlReader, Scanner, Parser, _StreamingComposer, Resolver):
        def __init__(self) -> None:
            _YamlReader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _StreamingComposer.__init__(self, sink)
            Resolver.__init__(self)

    return _Slow()


def compose(text: bytes, file: str, sink: ItemSink | None = None
            ) -> tuple[Node | None, Problem | None]:
    """Parse ``text`` (UTF-8, already checked) into its node tree (``None`` for an empty
    document), or the problem. With ``sink`` the top-level ``subscribers:`` items may be
    streamed to it instead of kept (the list node is then left empty). Bytes, not a ``str``:
    libyaml reads them in place, where a ``str`` is first copied to UTF-8 whole."""
    try:
        if sink is None:
            return yaml.compose(text, Loader=_Loader), None
        loader = _streaming_loader(text, sink)
        try:
            return loader.get_single_node(), None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        # marks count characters, not bytes
        if mark is not None and text.decode("utf-8")[mark.index:mark.index + 1] == "\t":
            message += "; indent with spaces, YAML does not allow tabs"
        elif "alias" in message:
            # The usual cause: an unquoted cron expression (`* * * * *`) or term starting with *.
            message += '; quote values that start with * (e.g. schedule: "*/30 * * * *")'
        return None, Problem(file, line, "", message)
    except yaml.YAMLError as exc:  # reader errors (e.g. a NUL byte) carry no mark
        return None, Problem(file, None, "", f"invalid YAML: {exc}")
