"""``settings.feeds`` (several named feeds) and a subscriber's ``feeds:``: what loads, and the
exact text of every problem (file:line: key: message)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Config, FeedSettings

NAME = "subscribers.yaml"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(folder: Path, text: str) -> Config:
    (folder / NAME).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_config(Path(NAME), environ={})


def problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(folder, text)
    return [str(p) for p in info.value.problems]


def test_several_named_feeds_and_who_reads_which(here: Path) -> None:
    config = load(here, """
        settings:
          feeds:
            - {name: hf, source: huggingface}
            - {name: ml, source: arxiv_rss, categories: [cs.LG, stat.ML], cross: true}
            - {name: bio, source: biorxiv, categories: [neuroscience, Cell Biology]}
            - {source: medrxiv, revisions: true}
        subscribers:
          - email: a@example.org
            topics: [x]
            feeds: [bio, medrxiv]
          - email: b@example.org
            topics: [y]
    """)
    hf, ml, bio, med = config.settings.feed_list
    assert (hf.label, ml.label, bio.label, med.label) == ("hf", "ml", "bio", "medrxiv")
    assert ml == FeedSettings(source="arxiv_rss", name="ml", categories=("cs.LG", "stat.ML"),
                              cross=True, limit=2000)  # a whole day's listing by default
    assert hf.limit == 100
    assert bio.categories == ("neuroscience", "cell_biology")  # one spelling, the API's
    assert med.categories == () and med.revisions  # every subject
    assert [s.feeds for s in config.subscribers] == [("bio", "medrxiv"), ()]


def test_the_single_feed_setting_still_works(here: Path) -> None:
    config = load(here, """
        settings:
          feed: {source: arxiv_rss, categories: [cs.CL]}
        subscribers:
          - {email: a@example.org, topics: [x], feeds: [arxiv_rss]}
    """)
    assert config.settings.feeds == ()
    assert config.settings.feed_list == (FeedSettings(source="arxiv_rss",
                                                      categories=("cs.CL",), limit=2000),)
    assert config.subscribers[0].feeds == ("arxiv_rss",)


def test_every_feed_problem_with_its_line(here: Path) -> None:
    assert problems(here, """
        settings:
          feed: {source: huggingface}
          feeds:
            - {name: hf, source: huggingface, cross: true}
            - {name: ml, source: arxiv_rss, categories: [cs.LG, "cell biology"]}
            - {name: bio, source: biorxiv, categories: [nueroscience]}
            - {name: med, source: medrxiv, revisions: maybe}
            - {name: "x y", source: arxiv_rss, categories: [cs.LG]}
            - {name: ok, source: arxiv_rss, categories: []}
            - {name: ok, source: huggingface}
        subscribers:
          - {email: a@example.org, topics: [x]}
    """) == [
        "subscribers.yaml:3: settings.feeds: give either feed: (one feed) or feeds: (several), "
        "not both (feed: is at line 2)",
        "subscribers.yaml:4: settings.feeds[0].cross: only for source: arxiv_rss (this feed is "
        "source: huggingface)",
        "subscribers.yaml:5: settings.feeds[1].categories[1]: expected an arXiv category like "
        "cs.LG or stat.ML, got 'cell biology' (bioRxiv subjects are written with underscores: "
        "'cell_biology')",
        "subscribers.yaml:6: settings.feeds[2].categories[0]: unknown biorxiv subject "
        "'nueroscience' (did you mean 'neuroscience'?)",
        "subscribers.yaml:7: settings.feeds[3].revisions: expected true or false, got 'maybe'",
        "subscribers.yaml:8: settings.feeds[4].name: expected a short name of letters, digits, "
        "- and _ (e.g. biorxiv or ml-rss), got 'x y'",
        "subscribers.yaml:9: settings.feeds[5].categories: expected at least one arXiv category "
        "for source: arxiv_rss, got an empty list",
        "subscribers.yaml:10: settings.feeds[6].name: duplicate feed name 'ok' (first at line "
        "9); give each feed its own name:",
    ]


def test_duplicate_names_and_unknown_feeds_of_a_subscriber(here: Path) -> None:
    assert problems(here, """
        settings:
          feeds:
            - {name: hf, source: huggingface}
            - {name: bio, source: biorxiv}
            - {name: hf, source: arxiv_rss, categories: [cs.LG]}
        subscribers:
          - {email: a@example.org, topics: [x]}
    """) == [
        "subscribers.yaml:5: settings.feeds[2].name: duplicate feed name 'hf' (first at line 3); "
        "give each feed its own name:"]
    assert problems(here, """
        settings:
          feeds:
            - {name: hf, source: huggingface}
            - {name: biorxiv, source: biorxiv}
        subscribers:
          - email: a@example.org
            topics: [x]
            feeds: [biorxv, hf, arxiv]
    """) == [
        "subscribers.yaml:8: subscribers[0].feeds[0]: unknown feed 'biorxv' (did you mean "
        "'biorxiv'?); the feeds are: hf, biorxiv (settings.feeds names them)",
        "subscribers.yaml:8: subscribers[0].feeds[2]: unknown feed 'arxiv' (did you mean "
        "'biorxiv'?); the feeds are: hf, biorxiv (settings.feeds names them)"]


def test_a_subscriber_may_filter_on_biorxiv_subjects(here: Path) -> None:
    config = load(here, """
        settings:
          feeds: [{name: bio, source: biorxiv}]
        subscribers:
          - {email: a@example.org, topics: [x], categories: [cell_biology]}
    """)
    assert config.subscribers[0].categories == ("cell_biology",)


def test_arxiv_categories_a_feed_asks_for_must_exist_as_spelled(here: Path) -> None:
    assert problems(here, """
        settings:
          feeds:
            - {name: ml, source: arxiv_rss, categories: [cs.lg, physics.optics, stat.ML]}
            - {name: api, source: arxiv, categories: [maths.AG]}
        subscribers:
          - {email: a@example.org, topics: [x], categories: [cs.lg]}
    """) == [
        "subscribers.yaml:3: settings.feeds[0].categories[0]: arXiv spells it cs.LG, got "
        "'cs.lg' (arXiv answers a wrongly cased category with nothing)",
        "subscribers.yaml:4: settings.feeds[1].categories[0]: unknown arXiv archive "
        "'maths' in 'maths.AG' (did you mean 'math'?)",
    ]
