"""``Generations``: the bounded memo the stages keep their per-run caches in (the renderer's
card memo, the selector's compiled topics). May import nothing of the project.

Two generations of plain dicts: new entries, and old ones met again, go to the young one;
when it is full the old one is dropped and the young one becomes old. So an entry used
within the last ``size // 2`` insertions survives, memory is bounded by ``size`` entries, a
hit in the young generation is one dict lookup (no reordering, as an LRU's would be), and
filling up never empties the memo at once (a clear-when-full memo loses everything each
time it fills: with 10,000 subscribers the card memo started over 15 times a run).
"""

from __future__ import annotations

from typing import Generic, TypeVar, overload

_K = TypeVar("_K")
_V = TypeVar("_V")
_D = TypeVar("_D")
_MISSING = object()  # a value may be None: "not kept" is told apart by identity


class Generations(Generic[_K, _V]):
    """A memo of at most ``size`` entries, in two generations of ``size // 2``."""

    __slots__ = ("_half", "_old", "_young")

    def __init__(self, size: int) -> None:
        self._young: dict[_K, _V] = {}
        self._old: dict[_K, _V] = {}
        self._half = max(size // 2, 1)

    @overload
    def get(self, key: _K) -> _V | None: ...

    @overload
    def get(self, key: _K, default: _D) -> _V | _D: ...

    def get(self, key: _K, default: object = None) -> object:
        """The value kept for ``key`` (moved to the young generation if it was old), else
        ``default``. Raises ``TypeError`` for an unhashable key, as a dict does."""
        found = self._young.get(key, _MISSING)
        if found is _MISSING:
            found = self._old.pop(key, _MISSING)
            if found is _MISSING:
                return default
            self[key] = found  # type: ignore[assignment]
        return found

    def __setitem__(self, key: _K, value: _V) -> None:
        young = self._young
        if len(young) >= self._half and key not in young:
            self._old = young
            young = self._young = {}
        young[key] = value

    def __getitem__(self, key: _K) -> _V:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return key in self._young or key in self._old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        self._young, self._old = {}, {}
