"""open_config: a big file's subscribers spilled to a temporary file and read back one at a
time, with the same checks, problems and values as load_config."""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from digest.config import load_config, open_config
from digest.config._load import STREAM_ABOVE_BYTES
from digest.config._spill import SpilledSubscribers, SpillWriter
from digest.errors import ConfigError
from digest.models import Subscriber, Topic

NAME = "subscribers.yaml"


def _entries(n: int, *, first: int = 0) -> str:
    return "".join(f"""  - email: reader{i}@example.org
    name: Reader {i}
    schedule: "{i % 60} 7 * * mon-fri"
    topics:
      - "segment anything"
      - name: Topic {i % 7}
        include: [quantization, "low-bit {i}"]
        exclude: [survey]
""" for i in range(first, first + n))


def _big(n: int, extra: str = "") -> str:
    return ('settings:\n  sender: "D <d@example.org>"\n  timezone: Europe/Berlin\n'
            "subscribers:\n" + _entries(n) + extra)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path) -> None:
    os.chdir(tmp_path)


def test_a_big_file_reads_back_the_subscribers_load_config_reads(tmp_path: Path) -> None:
    Path(NAME).write_text(_big(1500), encoding="utf-8")
    assert Path(NAME).stat().st_size > STREAM_ABOVE_BYTES
    eager = load_config(Path(NAME), environ={})
    with open_config(Path(NAME), environ={}) as config:
        spilled = config.subscribers
        assert isinstance(spilled, SpilledSubscribers)
        assert (config.path, config.settings) == (eager.path, eager.settings)
        assert len(spilled) == 1500
        assert list(spilled) == list(eager.subscribers)
        assert spilled[1234] == eager.subscribers[1234]
        assert spilled[-1].email == "reader1499@example.org"
        # a shard's share: every 3rd from the 2nd, still read from the file
        share = spilled[1::3]
        assert isinstance(share, SpilledSubscribers)
        assert list(share) == list(eager.subscribers[1::3])
        assert list(share[2::2]) == list(eager.subscribers[1::3][2::2])
        folder = spilled.path.parent
        assert spilled.path.is_file()
    assert not folder.exists()  # removed with the block


def test_every_field_of_a_spilled_subscriber_comes_back_as_written(tmp_path: Path) -> None:
    """The spill writes field values, not objects: each field of a subscriber and of its
    topics, set away from its default, reads back equal, typed as written, and hashes as the
    original (a memo keyed by it finds it)."""
    topic = Topic(name="Vision", include=("segment anything", "SAM*"), require=("mask",),
                  exclude=("survey",), categories=("cs.CV",), authors=("Kirillov",),
                  min_upvotes=3, expand=False, passing_mentions=True, about="Segmenting.",
                  like=("2304.02643",))
    people = [Subscriber(email="ada@example.org", name="Ada Ünïcode", timezone="Asia/Tokyo",
                         schedule="30 6 * * mon-fri", max_papers=7,
                         topics=(topic, Topic(name="bare")), categories=("cs.LG",),
                         authors=("Hinton",), min_upvotes=10, line=14, feeds=("arxiv",)),
              Subscriber(email="bo@example.org", name=None, timezone="UTC",
                         schedule="0 7 * * *", max_papers=5, topics=())]
    writer = SpillWriter(tmp_path / "spill")
    for person in people:
        writer.append(person)
    spilled = writer.finish()
    back = list(spilled)
    assert back == people and [spilled[1], spilled[0]] == people[::-1]
    assert [type(t) for t in back[0].topics] == [Topic, Topic]
    assert {back[0]: 1}[people[0]] == 1 and hash(back[0].topics[0]) == hash(topic)
    assert back[0].topics[0].expand is False and back[0].topics[0].min_upvotes == 3


def test_a_small_file_is_read_whole() -> None:
    Path(NAME).write_text(_big(3), encoding="utf-8")
    with open_config(Path(NAME), environ={}) as config:
        assert config.subscribers == load_config(Path(NAME), environ={}).subscribers
        assert isinstance(config.subscribers, tuple)


def test_the_temporary_folder_is_made_only_for_a_spill(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``digest send`` killed while it runs cannot remove its temporary folder: on a file
    that spills nothing (small, or settings after the subscribers) there is none to leave."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    big = _big(1500)
    settings_last = "subscribers:\n" + _entries(1500) + big[:big.index("subscribers:")]
    for text in (_big(3), settings_last):
        Path(NAME).write_text(text, encoding="utf-8")
        with open_config(Path(NAME), environ={}) as config:
            assert isinstance(config.subscribers, tuple) and len(config.subscribers) > 1
            assert list(temp.iterdir()) == []
    Path(NAME).write_text(big, encoding="utf-8")
    with open_config(Path(NAME), environ={}) as config:
        assert isinstance(config.subscribers, SpilledSubscribers)
        assert [p.name[:19] for p in temp.iterdir()] == ["digest-subscribers-"]
    assert list(temp.iterdir()) == []
    Path(NAME).write_text(big + "  - email: broken\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        with open_config(Path(NAME), environ={}):
            pass
    assert list(temp.iterdir()) == []


def test_every_problem_of_a_big_file_at_once_as_load_config_reports_them() -> None:
    """Duplicates are found across the whole file (the first at its line), and nothing is
    kept of a file with problems."""
    broken = ("  - email: reader7@example.org\n    topics: [x]\n"
              "  - email: not-an-address\n    topics: [y]\n"
              "  - email: ok@example.org\n    topics:\n      - include: x\n")
    Path(NAME).write_text(_big(1500, broken), encoding="utf-8")
    with pytest.raises(ConfigError) as eager:
        load_config(Path(NAME), environ={})
    with pytest.raises(ConfigError) as streamed:
        with open_config(Path(NAME), environ={}):
            pass
    assert str(streamed.value) == str(eager.value)
    lines = str(streamed.value).splitlines()
    assert lines[0] == ("subscribers.yaml:12005: subscribers[1500].email: duplicate subscriber "
                        "'reader7@example.org' (first at line 61, subscribers[7]); addresses "
                        "are compared ignoring case")
    assert lines[1].startswith("subscribers.yaml:12007: subscribers[1501].email: ")
    assert lines[2] == ("subscribers.yaml:12011: subscribers[1502].topics[0].include: expected "
                        "a list of strings, got 'x'")
    assert len(lines) == 3


def test_memory_stays_flat_in_the_number_of_subscribers() -> None:
    """Neither the node tree nor the subscribers are held: four times the subscribers costs
    only the file's bytes (read whole, ~230 a subscriber here) and what duplicate detection
    keeps of each address (its text, index and line: ~230)."""
    peaks = []
    for n in (1500, 6000):
        Path(NAME).write_text(_big(n), encoding="utf-8")
        tracemalloc.start()
        try:
            with open_config(Path(NAME), environ={}) as config:
                count = sum(1 for _ in config.subscribers)
                peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert count == n
    per_subscriber = (peaks[1] - peaks[0]) / 4500
    file_bytes = len(_big(1)) - len(_big(0))
    assert per_subscriber < file_bytes + 300, f"{per_subscriber:.0f} bytes a subscriber ({peaks})"
