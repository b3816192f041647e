"""The streaming composer hands over each ``subscribers:`` item as the very node tree that
``yaml.compose`` builds: tags, values, styles, marks, anchors and aliases, and the same
errors for a broken alias or a repeated anchor."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from digest.config._compose import compose

DOC = b'''settings:
  sender: "Paper Digest <digest@example.org>"
  defaults: &ml
    - name: ml
      include: [diffusion, "LLM*", 'RL']
subscribers:
  - email: Ada@Example.ORG
    name: Ada
    max_papers: 10
    paused: no
    ratio: 0.5
    when: 2026-12-01
    empty:
    nothing: ~
    topics: *ml
  - {email: bob@example.org, name: "Bob \\u00e9", topics: [{name: x, include: [a, b]}]}
  - email: cy@example.org
    name: !!str 123
    note: |
      two
      lines
    folded: >
      one
      line
    topics:
      - &t {name: t, include: [graph]}
      - *t
    more: &n
      k: v
  - email: dee@example.org
    again: *n
    list: [1, 2.5, true, null, "", '', -0x1F, .inf]
  - plain
  -
  - []
'''


def _same(a: Node, b: Node, seen: dict[int, int]) -> None:
    assert type(a) is type(b)
    assert (a.tag, a.start_mark.index, a.start_mark.line, a.start_mark.column,
            a.end_mark.index, a.end_mark.line, a.end_mark.column) == (
        b.tag, b.start_mark.index, b.start_mark.line, b.start_mark.column,
        b.end_mark.index, b.end_mark.line, b.end_mark.column)
    if id(a) in seen:  # an alias: the same node object where yaml.compose has the same one
        assert seen[id(a)] == id(b)
        return
    seen[id(a)] = id(b)
    if isinstance(a, ScalarNode):
        assert (a.value, a.style) == (b.value, b.style)
        return
    assert isinstance(a, (SequenceNode, MappingNode)) and a.flow_style == b.flow_style
    assert len(a.value) == len(b.value)
    for x, y in zip(a.value, b.value):
        if isinstance(a, MappingNode):
            _same(x[0], y[0], seen)
            _same(x[1], y[1], seen)
        else:
            _same(x, y, seen)


class _Nodes:
    """Takes every item as its node (declines the events of a plain one)."""

    def __init__(self) -> None:
        self.items: list[Node] = []

    def from_events(self, events: list[Any], index: int) -> bool:
        return False

    def from_node(self, node: Node, index: int) -> None:
        assert index == len(self.items)
        self.items.append(node)


def _streamed(text: bytes) -> tuple[list[Node], Any]:
    reader = _Nodes()
    root, problem = compose(text, "s.yaml", sink=lambda top: reader)
    return reader.items, (root, problem)


def test_each_item_is_the_node_yaml_compose_builds() -> None:
    items, (_, problem) = _streamed(DOC)
    assert problem is None
    whole = yaml.compose(DOC, Loader=yaml.CSafeLoader)
    subscribers = dict((k.value, v) for k, v in whole.value)["subscribers"].value
    assert len(items) == len(subscribers) == 7
    seen: dict[int, int] = {}
    for mine, theirs in zip(items, subscribers):
        _same(mine, theirs, seen)
    # the alias to the settings' anchor is that node, as in the whole tree
    topics = dict((k.value, v) for k, v in items[0].value)["topics"]
    assert isinstance(topics, SequenceNode) and topics.value[0].value[0][1].value == "ml"


@pytest.mark.parametrize(("text", "message"), [
    (b"subscribers:\n  - email: a@example.org\n    topics: *nope\n", "undefined alias"),
    (b"subscribers:\n  - &a {email: a@example.org}\n  - &a {email: b@example.org}\n",
     "duplicate anchor"),
])
def test_the_same_errors_as_yaml(text: bytes, message: str) -> None:
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.compose(text, Loader=yaml.CSafeLoader)
    assert message in str(theirs.value)
    _, (root, problem) = _streamed(text)
    assert root is None and problem is not None
    assert message in problem.message and problem.line == theirs.value.problem_mark.line + 1


class _Events(_Nodes):
    """Takes the plain items as their events, the others as nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[int, list[Any]] = {}

    def from_events(self, events: list[Any], index: int) -> bool:
        self.events[index] = events
        self.items.append(None)  # type: ignore[arg-type]  # keeps the count for from_node
        return True


def test_plain_items_come_as_their_events_the_others_as_nodes() -> None:
    reader = _Events()
    root, problem = compose(DOC, "s.yaml", sink=lambda top: reader)
    assert problem is None and root is not None
    # the 2nd item (flow style) and the 5th-7th have no anchor, alias or tag
    assert sorted(reader.events) == [1, 4, 5, 6]
    def shown(events: list[Any]) -> list[tuple[Any, ...]]:
        return [(type(e), getattr(e, "value", None), e.start_mark.index, e.end_mark.index,
                 e.start_mark.line) for e in events]

    every = shown(list(yaml.parse(DOC, Loader=yaml.CSafeLoader)))
    second = shown(reader.events[1])
    assert second[0][4] == 15 and second[-1][0] is yaml.MappingEndEvent  # the whole item
    start = every.index(second[0])
    assert every[start:start + len(second)] == second
    whole = yaml.compose(DOC, Loader=yaml.CSafeLoader)
    subscribers = dict((k.value, v) for k, v in whole.value)["subscribers"].value
    seen: dict[int, int] = {}
    for index in (0, 2, 3):
        _same(reader.items[index], subscribers[index], seen)


@pytest.mark.parametrize(("text", "line", "message"), [
    # an alias after the plain start of an item: composed where it stands
    (b"subscribers:\n  - email: a@example.org\n    topics: *nope\n", 3,
     "invalid YAML: found undefined alias 'nope'; quote values that start with * "
     '(e.g. schedule: "*/30 * * * *")'),
    # a repeated anchor is reported before a broken line further down the same item
    (b"subscribers:\n  - &a {email: a@example.org}\n  - email: b@example.org\n"
     b"    name: &a B\n    topics: [x\n", 4,
     "invalid YAML: second occurrence (found duplicate anchor 'a'; first occurrence started "
     "at line 2)"),
    # YAML errors inside a plain item: libyaml's, as when the whole tree is read
    (b"subscribers:\n  - email: a@example.org\n    topics: [x\n  - email: b\n", 4,
     "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence started "
     "at line 3)"),
    (b"subscribers:\n  - email: a@example.org\n\ttopics: [x]\n", 3,
     "invalid YAML: found a tab character that violates indentation (while scanning a plain "
     "scalar started at line 2); indent with spaces, YAML does not allow tabs"),
])
def test_errors_inside_an_item_read_as_events(text: bytes, line: int, message: str) -> None:
    """(The messages the composer gave before items came as events.)"""
    _, problem = compose(text, "s.yaml", sink=lambda top: _Events())
    assert problem is not None and (problem.line, problem.message) == (line, message)
