"""Subscribers kept in a file instead of memory, for ``open_config`` on a big subscribers file.

Owns: ``SpillWriter`` (appends each validated ``Subscriber`` as one record and remembers where it
starts) and ``SpilledSubscribers``, the ``Sequence[Subscriber]`` reading them back one at a time
(an 8-byte offset per subscriber in memory, and how many have each (timezone, schedule)). A
slice is another view of the same file, so a send shard gets its share by pickling a path and
some offsets, never the subscribers themselves. The file lives in a private temporary folder that ``open_config``
removes when its block ends; it is read only by this program's own processes.

May import: the standard library, ``digest.models``.
"""

from __future__ import annotations

import marshal
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, TypeVar, overload

from digest.models import Subscriber, Topic

__all__ = ["SpillWriter", "SpilledSubscribers"]


class SpilledSubscribers(Sequence[Subscriber]):
    """The subscribers written to ``path``, in file order (or the slice of them this view
    was cut to): each one is unpickled when asked for and not kept."""

    def __init__(self, path: Path, offsets: array[int],
                 schedules: dict[tuple[str, str], int] | None = None) -> None:
        self.path = path
        self.offsets = offsets
        # (timezone, schedule) -> how many of these subscribers (the whole list's; None for
        # a slice)
        self.schedules = schedules

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> Subscriber: ...

    @overload
    def __getitem__(self, index: slice) -> SpilledSubscribers: ...

    def __getitem__(self, index: int | slice) -> Subscriber | SpilledSubscribers:
        if isinstance(index, slice):
            return SpilledSubscribers(self.path, self.offsets[index])
        with self.path.open("rb") as file:
            file.seek(self.offsets[index])
            return _read(file)

    def __iter__(self) -> Iterator[Subscriber]:
        with self.path.open("rb") as file:
            for offset in self.offsets:
                if file.tell() != offset:  # a strided slice; within the buffer it is cheap
                    file.seek(offset)
                yield _read(file)

    def __repr__(self) -> str:
        return f"SpilledSubscribers({str(self.path)!r}, {len(self)} subscribers)"


# A record: its length, then the subscriber's field values in ``fields`` order as one marshal
# (its topics' likewise), rebuilt as ``pickle`` rebuilds a dataclass (its ``__dict__`` set,
# no ``__init__``). A pickle of the objects took 2x as long both ways: it writes every field's
# name in every record and reads them back (bench/bench_config.py: load and read back).
_LENGTH = struct.Struct("<I")
_SUBSCRIBER = tuple(f.name for f in fields(Subscriber))
_TOPIC = tuple(f.name for f in fields(Topic))
_TOPICS_AT = _SUBSCRIBER.index("topics")
_T = TypeVar("_T")


def _record(subscriber: Subscriber) -> bytes:
    values: list[Any] = [getattr(subscriber, name) for name in _SUBSCRIBER]
    values[_TOPICS_AT] = tuple(tuple(getattr(topic, name) for name in _TOPIC)
                               for topic in subscriber.topics)
    data = marshal.dumps(tuple(values))
    return _LENGTH.pack(len(data)) + data


def _read(file: IO[bytes]) -> Subscriber:
    (length,) = _LENGTH.unpack(file.read(_LENGTH.size))
    values = list(marshal.loads(file.read(length)))
    values[_TOPICS_AT] = tuple(_rebuilt(Topic, _TOPIC, topic) for topic in values[_TOPICS_AT])
    return _rebuilt(Subscriber, _SUBSCRIBER, values)


def _rebuilt(cls: type[_T], names: tuple[str, ...], values: Sequence[Any]) -> _T:
    obj = object.__new__(cls)
    obj.__dict__.update(zip(names, values))
    return obj


class SpillWriter:
    """Appends subscribers to ``path`` (created new); ``finish`` closes it and returns the
    sequence reading them back."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = path.open("xb")
        self._offsets: array[int] = array("q")
        self._size = 0
        # (timezone, schedule) -> how many: a run counts who is due without reading them back
        self.schedules: dict[tuple[str, str], int] = {}

    def append(self, subscriber: Subscriber) -> None:
        data = _record(subscriber)
        self._offsets.append(self._size)
        self._file.write(data)
        self._size += len(data)
        key = (subscriber.timezone, subscriber.schedule)
        self.schedules[key] = self.schedules.get(key, 0) + 1

    def finish(self) -> SpilledSubscribers:
        self._file.close()
        return SpilledSubscribers(self._path, self._offsets, self.schedules)

    def close(self) -> None:
        self._file.close()
