"""digest.memo.Generations: bounded, and what was used lately survives a fill-up."""

from __future__ import annotations

import random

import pytest

from digest.memo import Generations


def test_never_holds_more_than_its_size_and_keeps_the_latest_half() -> None:
    memo: Generations[int, str] = Generations(8)
    for i in range(100):
        memo[i] = str(i)
        assert len(memo) <= 8
    assert all(memo.get(i) == str(i) for i in range(96, 100))  # the young generation
    assert memo.get(0) is None and 0 not in memo


def test_an_entry_met_again_survives_the_turnover_and_is_kept_once() -> None:
    memo: Generations[str, int] = Generations(4)
    memo["hot"] = 1
    for i in range(50):
        memo[f"cold{i}"] = i
        assert memo.get("hot") == 1  # promoted before its generation is dropped
        assert len(memo) <= 4
    memo["hot"] = 2  # a key is in one generation only: setting it again replaces it
    assert memo["hot"] == 2 and len(memo) <= 4


def test_lookups_behave_like_a_dict_of_what_is_kept() -> None:
    memo: Generations[str, object] = Generations(6)
    memo["none"] = None  # a value may be None: get's default tells "not kept" apart
    sentinel = object()
    assert memo.get("none", sentinel) is None and memo.get("gone", sentinel) is sentinel
    with pytest.raises(KeyError):
        memo["gone"]
    with pytest.raises(TypeError):
        memo.get([1, 2])  # type: ignore[call-overload]
    memo.clear()
    assert len(memo) == 0 and "none" not in memo


def test_against_a_model_of_the_two_generations() -> None:
    """Random use against a plain model: whatever it returns was the latest value set for
    the key, and every key set or read within the last size // 2 distinct keys is there."""
    rng = random.Random(3)
    memo: Generations[int, int] = Generations(10)
    latest: dict[int, int] = {}
    recent: list[int] = []
    for step in range(5000):
        key = rng.randrange(30)
        if rng.random() < 0.5:
            memo[key] = latest[key] = step
        else:
            found = memo.get(key)
            assert found is None or found == latest[key]
            if found is None:
                continue
        if key in recent:
            recent.remove(key)
        recent.append(key)
        for kept in recent[-5:]:
            assert kept in memo
        assert len(memo) <= 10
