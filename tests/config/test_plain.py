"""The plain-entry fast path (``_plain.PlainEntries``) reads a subscriber exactly as the node
reader (``_People``) does, and takes only entries that reader takes without a problem: on
thousands of random entries (good values, bad ones, YAML traps, anchors, tags, merges), the
streamed read (events where plain, nodes otherwise) gives the same subscribers, the same
problems and the same table of addresses as reading the whole tree's nodes, and the fast path
takes every entry it should."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import yaml
from yaml.nodes import Node

from digest.config._compose import compose
from digest.config._load import SUBSCRIBER_KEYS, _Keep, _People
from digest.config._schema import Reader
from digest.models import FeedSettings, Settings, Subscriber

SETTINGS = Settings(sender="D <d@example.org>", timezone="Europe/Berlin",
                    feeds=(FeedSettings(source="sample", name="ml"),
                           FeedSettings(source="sample", name="bio")))

# (text, how the node reader takes it, alone): "ok" a value the fast path reads too, "slow" a
# value it is fine with that the fast path leaves to the nodes, "bad" a problem. {i} is the
# entry's number, so that addresses and anchors differ between entries unless meant not to.
Pool = list[tuple[str, str]]
EMAIL: Pool = [("reader{i}@example.org", "ok"), ("Reader{i}@EXAMPLE.org", "ok"),
               ('"q{i}@example.org"', "ok"), ("' s{i}@example.org '", "ok"),
               ('"n{i}@example.org\\n"', "ok"), ("x.y+{i}@sub.example.co.uk", "ok"),
               ("u{i}@münchen.de", "ok"),
               ("not-an-address", "bad"), ("", "bad"), ("~", "bad"), ("[a{i}@example.org]", "bad"),
               ("jö{i}@example.org", "bad"), ("a{i}@localhost", "bad"),
               ("Name <n{i}@example.org>", "bad"), ("123", "bad"), ("yes", "bad"),
               ('"a{i}@exa\\tmple.org"', "bad"), ("!!str s{i}@example.org", "slow"),
               ("&e{i} e{i}@example.org", "slow")]
NAME: Pool = [("Reader {i}", "ok"), ("", "ok"), ("~", "ok"), ("null", "ok"), ('"  "', "ok"),
              ('"Zoë"', "ok"), ("'O''Brien'", "ok"), ("topic", "ok"), ("Yesterday", "ok"),
              ("|\n      one line", "ok"), (">\n      folded\n      text", "ok"),
              ("|\n      two\n      lines", "bad"), ("123", "bad"), ("yes", "bad"),
              ("No", "bad"), ('"a\\nb"', "bad"), ("[x]", "bad"), ("{a: b}", "bad"),
              ("12:30", "bad"), ("2026-01-01", "bad"), ("!!str 123", "slow")]
ZONE: Pool = [("UTC", "ok"), ("Europe/Berlin", "ok"), ('"America/New_York"', "ok"),
              ("utc", "bad"), ("Mars/Base", "bad"), ("", "bad"), ("1", "bad"), ("London", "bad")]
SCHEDULE: Pool = [('"0 7 * * *"', "ok"), ("'30 6 * * mon-fri'", "ok"), ("0 7 * * 1", "ok"),
                  ('"*/15 * * * *"', "ok"), ('"61 7 * * *"', "bad"), ("daily", "bad"),
                  ("", "bad"), ("7", "bad")]
MAX_PAPERS: Pool = [("3", "ok"), ("10", "ok"), ("0", "bad"), ("-1", "bad"), ("3.5", "bad"),
                    ("'3'", "bad"), ("yes", "bad"), ("", "bad"), ("08", "bad"),
                    ("010", "slow"), ("0x0A", "slow"), ("1_0", "slow"), ("+5", "slow"),
                    ("1:30", "slow"), ("99999999999999999999", "slow"), ("!!int '4'", "slow")]
TERM: Pool = [("diffusion", "ok"), ('"language model"', "ok"), ("LLM*", "ok"),
              ("'graph'", "ok"), ("token*", "ok"), ("3D", "ok"), ("zero*shot", "bad"),
              ("yes", "bad"), ("'**'", "bad"), ("[nested]", "bad"), ("''", "bad"), ("12", "bad")]
CATEGORIES: Pool = [("[cs.LG, stat.ML]", "ok"), ("[cs.lg]", "ok"), ("[]", "ok"), ("", "ok"),
                    ("[cell_biology]", "ok"), ("[CS]", "bad"), ("[cell biology]", "bad"),
                    ("cs.LG", "bad"), ("[1]", "bad")]
AUTHORS: Pool = [("[Ada Lovelace]", "ok"), ("[]", "ok"), ("~", "ok"),
                 ('["Grace Hopper", Alan Turing]', "ok"), ("[1]", "bad"), ('[""]', "bad"),
                 ('["Ada\\nLovelace"]', "bad"), ('["Ada\\u007f"]', "bad"),
                 ("Ada", "bad"), ("[[Ada]]", "bad")]
UPVOTES: Pool = [("3", "ok"), ("0", "ok"), ("~", "ok"), ("", "ok"), ("-2", "bad"),
                 ("'3'", "bad"), ("0o7", "bad"), ("017", "slow"), ("0x1F", "slow"), ("1.5", "bad")]
FEEDS: Pool = [("[ml]", "ok"), ("[ml, bio, ml]", "ok"), ("[]", "ok"), ("~", "ok"),
               ("[nope]", "bad"), ("[Ml]", "bad"), ("ml", "bad")]
FLAG: Pool = [("true", "ok"), ("false", "ok"), ("yes", "ok"), ("Off", "ok"), ('"true"', "bad"),
              ("1", "bad"), ("", "bad")]
ABOUT: Pool = [("diffusion models for video", "ok"), ("", "ok"), ('"a\\tb"', "ok"),
               ('"a\\u0007b"', "bad"), ("[x]", "bad")]
LIKE: Pool = [('["2401.00001"]', "ok"), ("[]", "ok"), ("[2401.00001]", "bad")]


def _pick(rnd: random.Random, pool: Pool, i: int) -> tuple[str, str]:
    """Mostly a good value, so that about half the entries have no problem at all."""
    text, kind = rnd.choice([p for p in pool if p[1] == "ok"] if rnd.random() < 0.93 else pool)
    return text.replace("{i}", str(i)), kind


def _terms(rnd: random.Random, i: int, kinds: list[str]) -> str:
    if rnd.random() < 0.03:
        return rnd.choice(["~", "[]", "x", "{a: b}"])  # null, empty, not a list, a mapping
    picked = [_pick(rnd, TERM, i) for _ in range(rnd.randint(1, 3))]
    kinds += [kind for _, kind in picked]
    return "[" + ", ".join(text for text, _ in picked) + "]"


def _topic(rnd: random.Random, i: int, k: int, kinds: list[str]) -> str:
    """One topics item, at the indent of ``      - ``."""
    if rnd.random() < 0.25:
        text, kind = _pick(rnd, TERM, i)
        kinds.append(kind)
        return f"      - {text}\n"
    fields: list[tuple[str, str]] = []
    if rnd.random() < 0.8:
        fields.append(("name", rnd.choice([f"topic {k}", f"Topic {k}", f"'t{k}'"]) if
                       rnd.random() < 0.9 else rnd.choice(["same", "Same", "yes", "''"])))
    for key, chance in (("include", 0.9), ("require", 0.2), ("exclude", 0.1)):
        if rnd.random() < chance:
            fields.append((key, _terms(rnd, i, kinds)))
    for key, pool, chance in (("categories", CATEGORIES, 0.15), ("authors", AUTHORS, 0.15),
                              ("min_upvotes", UPVOTES, 0.15), ("expand", FLAG, 0.1),
                              ("passing_mentions", FLAG, 0.1), ("about", ABOUT, 0.1),
                              ("like", LIKE, 0.1)):
        if rnd.random() < chance:
            text, kind = _pick(rnd, pool, i)
            kinds.append(kind)
            fields.append((key, text))
    if rnd.random() < 0.03:
        fields.append(("includes", "[x]"))  # unknown key
    if rnd.random() < 0.03 and fields:
        fields.append(rnd.choice(fields))  # duplicate key
    if rnd.random() < 0.03:
        fields.append(("exclude", "[diffusion]"))  # often clashes with an include
    if rnd.random() < 0.05:
        return "      - {" + ", ".join(f"{k}: {v}" for k, v in fields if "\n" not in v) + "}\n"
    rnd.shuffle(fields)
    if not fields:
        return "      - {}\n"
    lines = [f"{k}: {v}" for k, v in fields]
    return "      - " + "\n        ".join(lines) + "\n"


def _entry(rnd: random.Random, i: int) -> tuple[str, bool]:
    """A random subscribers item (at the indent of ``  - ``), and whether it uses a form the
    fast path leaves to the nodes on purpose."""
    kinds: list[str] = []
    shape = rnd.random()
    if shape < 0.02:
        return rnd.choice(["  - plain\n", "  -\n", "  - []\n", "  - [a, b]\n"]), False
    fields: list[tuple[str, str]] = []
    if rnd.random() < 0.97:
        # now and then an address another entry has too (compared ignoring case)
        text, kind = (rnd.choice(["dup@example.org", "DUP@Example.org"]), "ok") \
            if rnd.random() < 0.04 else _pick(rnd, EMAIL, i)
        kinds.append(kind)
        fields.append(("email", text))
    for key, pool, chance in (("name", NAME, 0.7), ("timezone", ZONE, 0.5),
                              ("schedule", SCHEDULE, 0.5), ("max_papers", MAX_PAPERS, 0.5),
                              ("categories", CATEGORIES, 0.15), ("authors", AUTHORS, 0.15),
                              ("min_upvotes", UPVOTES, 0.15), ("feeds", FEEDS, 0.2)):
        if rnd.random() < chance:
            text, kind = _pick(rnd, pool, i)
            kinds.append(kind)
            fields.append((key, text))
    if rnd.random() < 0.95:
        if rnd.random() < 0.05:
            fields.append(("topics", rnd.choice(["[]", "~", "x", "{a: b}"])))
        else:
            topics = "".join(_topic(rnd, i, k, kinds) for k in range(rnd.randint(1, 3)))
            fields.append(("topics", "\n" + topics.rstrip("\n")))
    if rnd.random() < 0.03:
        fields.append((rnd.choice(["paused", "Email", "topic", "1", "~"]), "no"))
    if rnd.random() < 0.03 and fields:
        again = rnd.choice(fields)  # a key given twice
        fields.append((again[0], again[1].replace("&", "")))
    slow = "slow" in kinds
    if rnd.random() < 0.03:
        fields.append(("<<", "{name: Merged, max_papers: 4}"))
        slow = True
    if rnd.random() < 0.02:
        fields.append(("'email'", f"quoted{i}@example.org"))  # a quoted key
    rnd.shuffle(fields)
    if fields and shape < 0.06 and all("\n" not in v for _, v in fields):
        return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields) + "}\n", slow
    if not fields:
        return "  - {}\n", False
    return "  - " + "\n    ".join(f"{k}: {v}" for k, v in fields) + "\n", slow


def _document(seed: int, n: int) -> tuple[bytes, set[int]]:
    rnd = random.Random(seed)
    entries = [_entry(rnd, i) for i in range(n)]
    text = "subscribers:\n" + "".join(entry for entry, _ in entries)
    return text.encode("utf-8"), {i for i, (_, slow) in enumerate(entries) if slow}


class _Counting(_Keep):
    """``_Keep`` noting which entries the fast path took."""

    def __init__(self, people: _People, kept: list[Subscriber]) -> None:
        super().__init__(people, kept)
        self.fast: set[int] = set()

    def from_events(self, events: list[Any], index: int) -> bool:
        taken = super().from_events(events, index)
        if taken:
            self.fast.add(index)
        return taken


def _by_nodes(doc: bytes) -> tuple[list[Subscriber], _People]:
    root = yaml.compose(doc, Loader=yaml.CSafeLoader)
    people = _People(Reader("s.yaml"), SETTINGS, share=False)
    items: Node = root.value[0][1]
    return list(people.all(items)), people


def _streamed(doc: bytes) -> tuple[list[Subscriber], _People, set[int]]:
    people = _People(Reader("s.yaml"), SETTINGS, share=False)
    keep = _Counting(people, [])
    root, problem = compose(doc, "s.yaml", sink=lambda top: keep)
    assert problem is None and root is not None
    assert isinstance(keep.kept, list)
    return keep.kept, people, keep.fast


def _read_both_ways(doc: bytes) -> tuple[set[int], set[int]]:
    """``doc`` read streamed (the fast path where plain) and by nodes: the same subscribers,
    problems and addresses seen. The entries the fast path took, and those a problem names."""
    expected, reference = _by_nodes(doc)
    found, people, fast = _streamed(doc)
    assert found == expected
    assert [str(p) for p in people.r.problems] == [str(p) for p in reference.r.problems]
    assert people.seen == reference.seen
    blamed = {int(m.group(1)) for p in reference.r.problems
              if (m := re.match(r"subscribers\[(\d+)\]", p.key))}
    return fast, blamed


@pytest.mark.parametrize("seed", range(12))
def test_random_entries_read_as_the_node_reader_reads_them(seed: int) -> None:
    doc, slow = _document(seed, 400)
    fast, blamed = _read_both_ways(doc)
    # the fast path took exactly the entries read without a problem, but for the forms it
    # leaves to the nodes on purpose
    assert fast == set(range(400)) - blamed - slow
    assert len(fast) > 100 and len(blamed) > 100, (len(fast), len(blamed))  # both had work


TOPIC_NAME: Pool = [("topic", "ok"), ('"  spaced  "', "ok"), ("yes", "bad"), ("''", "bad"),
                    ('"bell\\u0007"', "bad"), ("~", "bad"), ("[a]", "bad"), ("12", "bad")]
SUBSCRIBER_POOLS = {"email": EMAIL, "name": NAME, "timezone": ZONE, "schedule": SCHEDULE,
                    "max_papers": MAX_PAPERS, "categories": CATEGORIES, "authors": AUTHORS,
                    "min_upvotes": UPVOTES, "feeds": FEEDS}
TOPIC_POOLS = {"name": TOPIC_NAME, "include": TERM, "categories": CATEGORIES,
               "authors": AUTHORS, "min_upvotes": UPVOTES, "expand": FLAG,
               "passing_mentions": FLAG, "about": ABOUT, "like": LIKE}


def test_each_value_alone_in_a_good_entry() -> None:
    """Every value of every pool, as the one change to an entry that is fine otherwise."""
    entries: list[str] = []
    kinds: list[str] = []
    for key, pool in SUBSCRIBER_POOLS.items():
        for text, kind in pool:
            i = len(entries)
            fields = {"email": f"base{i}@example.org", "topics": "[diffusion]",
                      key: text.replace("{i}", str(i))}
            entries.append("  - " + "\n    ".join(f"{k}: {v}" for k, v in fields.items()))
            kinds.append(kind)
    for key, pool in TOPIC_POOLS.items():
        for text, kind in pool:
            i = len(entries)
            value = f"[{text}]" if key == "include" else text
            topic = {"name": "t", "include": "[graph]", key: value}
            entries.append(f"  - email: base{i}@example.org\n    topics:\n      - "
                           + "\n        ".join(f"{k}: {v}" for k, v in topic.items()))
            kinds.append(kind)
    doc = ("subscribers:\n" + "\n".join(entries) + "\n").encode("utf-8")
    fast, blamed = _read_both_ways(doc)
    assert blamed == {i for i, kind in enumerate(kinds) if kind == "bad"}
    assert fast == {i for i, kind in enumerate(kinds) if kind == "ok"}


def test_the_plain_entries_of_a_big_list_are_read_from_events() -> None:
    """The shapes the example file and the benchmarks use all take the fast path."""
    doc = b"""subscribers:
  - email: reader00001@example.org
    name: Reader 1
    timezone: UTC
    schedule: "0 7 * * *"
    max_papers: 7
    topics:
      - name: topic 0
        include: ["attention", "code"]
      - name: topic 1
        include: ["graph", "reinforcement learning"]
  - email: Ada@Example.ORG
    topics:
      - "segment anything"
      - name: Topic 3
        include: [quantization, "low-bit 17"]
        exclude: [survey]
        require: [efficient]
        categories: [cs.LG]
        authors: [Song Han]
        min_upvotes: 0
        expand: false
        passing_mentions: yes
        about: small models on phones
        like: ["2401.00001"]
    categories: [cs.CL]
    authors: []
    min_upvotes: 3
    feeds: [ml]
  - {email: bob@example.org, topics: [diffusion]}
"""
    found, people, fast = _streamed(doc)
    assert fast == {0, 1, 2}
    assert found == _by_nodes(doc)[0]
    assert found[1].email == "Ada@example.org" and found[1].topics[1].expand is False
    assert not people.r.problems


def test_every_subscriber_key_has_a_fast_reader() -> None:
    people = _People(Reader("s.yaml"), SETTINGS)
    assert set(people.plain.subscriber_readers) == set(SUBSCRIBER_KEYS)
    assert set(people.plain.topic_readers) == set(people.topic_readers)
