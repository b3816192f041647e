"""Subscribers kept in a file instead of memory, for ``open_config`` on a big subscribers file.

Owns: ``SpillWriter`` (appends each validated ``Subscriber`` as one pickle and remembers where it
starts) and ``SpilledSubscribers``, the ``Sequence[Subscriber]`` reading them back one at a time
(an 8-byte offset per subscriber in memory, and how many have each (timezone, schedule)). A
slice is another view of the same file, so a send shard gets its share by pickling a path and
some offsets, never the subscribers themselves. The file lives in a private temporary folder that ``open_config``
removes when its block ends; it is read only by this program's own processes.

May import: the standard library, ``digest.models``.
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

from digest.models import Subscriber

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
            return _load(file)

    def __iter__(self) -> Iterator[Subscriber]:
        with self.path.open("rb") as file:
            for offset in self.offsets:
                if file.tell() != offset:  # a strided slice; within the buffer it is cheap
                    file.seek(offset)
                yield _load(file)

    def __repr__(self) -> str:
        return f"SpilledSubscribers({str(self.path)!r}, {len(self)} subscribers)"


def _load(file: object) -> Subscriber:
    found = pickle.load(file)  # type: ignore[arg-type]
    assert isinstance(found, Subscriber)
    return found


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
        data = pickle.dumps(subscriber, protocol=pickle.HIGHEST_PROTOCOL)
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
