"""A plain subscribers entry read straight from its parser events, without building its nodes.

Owns: ``PlainEntries``, the fast path of reading a big file's subscribers (``open_config``):
an entry given as libyaml's events (no anchor, alias or explicit tag among them, see
``_compose``) becomes its ``Subscriber`` here when every value passes the very checks the node
readers make (``_schema``: the same functions on the same strings); at the first thing that
would be a problem, or that this reader does not know (a merge key, an integer written as
0x10 or 1_000), it gives up and the entry is read as nodes by ``_load._People``, which finds
and words every problem. So a subscriber read here is the one ``_People`` would read, and an
entry with a problem is always reported from its nodes.

May import: the standard library, PyYAML, email-validator, ``digest.models`` and
``digest.config``'s ``_compose`` and ``_schema``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from email_validator import EmailNotValidError
from yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from digest.config._compose import RESOLVED_FIRST, plain_tag
from digest.config._schema import (
    _BOOL,
    _CATEGORY,
    _CONTROL,
    _INT,
    _NULL,
    _STR,
    _cron_error,
    _term_problem,
    known_zone,
    normalized_address,
)
from digest.models import Subscriber, Topic

__all__ = ["PlainEntries"]

# The integers read here: plain decimals, which PyYAML's int constructor reads as int() does
# (0, or no leading zero: 010 is octal to it). Anything else is left to the node reader.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,17}")
_TRUE = ("yes", "true", "on", "y")
_RESOLVED = RESOLVED_FIRST or frozenset()

# A value's reader: (its first event, the next event) -> the value, None for "not set"
Read = Callable[[Any, Callable[[], Any]], Any]


class _NotPlain(Exception):
    """Not an entry this reader takes: it is read as nodes instead."""


def _line(event: Any) -> int:
    line: int = event.start_mark.line
    return line + 1


# The tag of an untagged scalar, as ``_StreamingComposer._node_of`` resolves it: quoted is a
# string, plain is ``plain_tag``'s (a string wherever it starts with a character no implicit
# resolver looks at, as most values do, so the resolvers are asked only for the others).

def _tag(event: Any) -> str:
    if type(event) is not ScalarEvent:
        raise _NotPlain
    value = event.value
    return plain_tag(value) if event.implicit[0] and value[:1] in _RESOLVED else _STR


def _text(event: Any, nxt: object = None) -> str:
    """``Reader.text``: a string, stripped, non-empty, without control characters."""
    if type(event) is not ScalarEvent:
        raise _NotPlain
    value: str = event.value
    if event.implicit[0] and value[:1] in _RESOLVED and plain_tag(value) != _STR:
        raise _NotPlain
    value = value.strip()
    if not value or _CONTROL.search(value):
        raise _NotPlain
    return value


def _optional_text(event: Any, nxt: object = None) -> str | None:
    """``Reader.text(optional=True)``: also ``None`` for null or an empty string."""
    tag = _tag(event)
    if tag == _NULL:
        return None
    if tag != _STR:
        raise _NotPlain
    value: str = event.value.strip()
    if not value:
        return None
    if _CONTROL.search(value):
        raise _NotPlain
    return value


def _term(event: Any) -> str:
    """``Reader.term``: a string that is a valid search term."""
    value = _text(event)
    if _term_problem(value) is not None:
        raise _NotPlain
    return value


def _integer(event: Any, minimum: int) -> int:
    """``Reader.integer`` for a plain decimal."""
    if _tag(event) != _INT or not _DECIMAL.fullmatch(event.value):
        raise _NotPlain
    value = int(event.value)
    if value < minimum:
        raise _NotPlain
    return value


def _list(event: Any, nxt: Callable[[], Any], item: Callable[[Any], str]) -> tuple[str, ...]:
    """A list of scalars each read by ``item``; null gives ``()`` (``Reader.strings`` and
    ``Reader.terms``)."""
    if type(event) is not SequenceStartEvent:
        if _tag(event) == _NULL:
            return ()
        raise _NotPlain
    values = []
    while type(child := nxt()) is not SequenceEndEvent:
        values.append(item(child))
    return tuple(values)


def _strings(event: Any, nxt: Callable[[], Any]) -> tuple[str, ...]:
    return _list(event, nxt, _text)


def _terms(event: Any, nxt: Callable[[], Any]) -> tuple[str, ...]:
    """``_list`` of ``_term`` (written out: a big list's most frequent reader)."""
    if type(event) is not SequenceStartEvent:
        if _tag(event) == _NULL:
            return ()
        raise _NotPlain
    values = []
    while type(child := nxt()) is not SequenceEndEvent:
        value = _text(child)
        if _term_problem(value) is not None:
            raise _NotPlain
        values.append(value)
    return tuple(values)


def _email(event: Any, nxt: object) -> str:
    try:
        return normalized_address(_text(event))
    except EmailNotValidError:
        raise _NotPlain from None


def _zone(event: Any, nxt: object) -> str:
    name = _text(event)
    if not known_zone(name):
        raise _NotPlain
    return name


def _schedule(event: Any, nxt: object) -> str:
    expr = _text(event)
    if _cron_error(expr) is not None:
        raise _NotPlain
    return expr


def _max_papers(event: Any, nxt: object) -> int:
    return _integer(event, 1)


def _categories(event: Any, nxt: Callable[[], Any]) -> tuple[str, ...]:
    values = _list(event, nxt, _text)
    if not all(_CATEGORY.fullmatch(value) for value in values):
        raise _NotPlain
    return values


def _upvotes(event: Any, nxt: object) -> int | None:
    if type(event) is ScalarEvent and _tag(event) == _NULL:
        return None
    return _integer(event, 0)


def _flag(event: Any, nxt: object) -> bool:
    if _tag(event) != _BOOL:
        raise _NotPlain
    return event.value.lower() in _TRUE


_TOPIC_READERS: dict[str, Read] = {
    "name": _text, "include": _terms, "require": _terms, "exclude": _terms,
    "categories": _categories, "authors": _strings, "min_upvotes": _upvotes, "expand": _flag,
    "passing_mentions": _flag, "about": _optional_text, "like": _strings,
}


class PlainEntries:
    """Reads plain subscribers entries for ``_People``, with its defaults, its feed names
    (``None``: not checked), its table of addresses seen (updated for each entry read here)
    and its table of shared values (``None``: nothing shared). ``subscriber_keys`` and
    ``topic_keys`` are the keys ``_People`` allows: only those are read here."""

    def __init__(self, defaults: dict[str, Any], feed_names: tuple[str, ...] | None,
                 seen: dict[str, tuple[int, int]], shared: dict[object, Any] | None, *,
                 subscriber_keys: tuple[str, ...], topic_keys: tuple[str, ...]) -> None:
        self.defaults = defaults
        self.feed_names = feed_names
        self.seen = seen
        self.shared = shared
        subscriber: dict[str, Read] = {
            "email": _email, "name": _optional_text, "timezone": _zone,
            "schedule": _schedule, "max_papers": _max_papers, "topics": self._topics,
            "categories": _categories, "authors": _strings, "min_upvotes": _upvotes,
            "feeds": self._feeds,
        }
        # keys are strings: quoted, or plain and not resolved to another type
        strings = {k for k in (*subscriber_keys, *topic_keys) if plain_tag(k) == _STR}
        self.subscriber_readers = {k: subscriber[k] for k in subscriber_keys
                                   if k in subscriber and k in strings}
        self.topic_readers = {k: _TOPIC_READERS[k] for k in topic_keys
                              if k in _TOPIC_READERS and k in strings}
        self.enabled = RESOLVED_FIRST is not None

    def subscriber(self, events: list[Any], index: int) -> Subscriber | None:
        """The subscriber of entry ``index`` (its events), or ``None`` to read it as nodes."""
        if not self.enabled:
            return None
        try:
            return self._subscriber(events, index)
        except _NotPlain:
            return None

    def _subscriber(self, events: list[Any], index: int) -> Subscriber:
        nxt = iter(events).__next__
        start = nxt()
        if type(start) is not MappingStartEvent:
            raise _NotPlain
        values = dict(self.defaults, line=_line(start))
        readers = self.subscriber_readers
        done = set()
        email_line = 0
        while type(key := nxt()) is not MappingEndEvent:  # Reader.mapping: known keys, once
            name = key.value if type(key) is ScalarEvent else None
            if name not in readers or name in done:
                raise _NotPlain
            done.add(name)
            if name == "email":
                email_line = _line(key)
            value = readers[name](nxt(), nxt)
            if value is not None:
                values[name] = value
        email = values.get("email")
        if email is None or "topics" not in values:
            raise _NotPlain
        folded = email.casefold()
        if folded in self.seen:
            raise _NotPlain
        self.seen[folded] = (index, email_line)
        shared = self.shared
        if shared is not None:
            for name in ("timezone", "schedule", "topics", "categories", "authors"):
                if name in values:
                    values[name] = shared.setdefault(values[name], values[name])
        return Subscriber(**values)

    def _topics(self, event: Any, nxt: Callable[[], Any]) -> tuple[Topic, ...]:
        """``_People.topics``: at least one, names unique ignoring case."""
        if type(event) is not SequenceStartEvent:
            raise _NotPlain
        topics = []
        names = set()
        while type(item := nxt()) is not SequenceEndEvent:
            if type(item) is MappingStartEvent:
                topic = self._topic(nxt)
            else:
                term = _term(item)
                topic = Topic(name=term, include=(term,))
            folded = topic.name.casefold()
            if folded in names:
                raise _NotPlain
            names.add(folded)
            topics.append(topic)
        if not topics:
            raise _NotPlain
        return tuple(topics)

    def _topic(self, nxt: Callable[[], Any]) -> Topic:
        """``_People.topic`` for a mapping whose start was read."""
        values: dict[str, Any] = {}
        readers = self.topic_readers
        done = set()
        while type(key := nxt()) is not MappingEndEvent:
            name = key.value if type(key) is ScalarEvent else None
            if name not in readers or name in done:
                raise _NotPlain
            done.add(name)
            value = readers[name](nxt(), nxt)
            if value is not None:
                values[name] = value
        terms = values.get("include", ()) + values.get("require", ())
        if not terms:
            raise _NotPlain
        excluded = {term.casefold() for term in values.get("exclude", ())}
        if excluded and any(term.casefold() in excluded for term in terms):
            raise _NotPlain
        values.setdefault("name", terms[0])
        return Topic(**values)

    def _feeds(self, event: Any, nxt: Callable[[], Any]) -> tuple[str, ...]:
        """``_People.feeds``: names of configured feeds, each once."""
        names = _list(event, nxt, _text)
        known = self.feed_names
        if known is not None and any(name not in known for name in names):
            raise _NotPlain
        return tuple(dict.fromkeys(names))
