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
