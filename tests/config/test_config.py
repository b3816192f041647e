"""load_config: every problem reported at once, with the exact text a user sees.

Files are written to a temporary folder that is also the working directory, and loaded as the
relative path ``subscribers.yaml``, so messages read exactly as ``digest validate
subscribers.yaml`` prints them.
"""

from __future__ import annotations

import textwrap
from dataclasses import fields, replace
from datetime import timedelta
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from digest.config import load_config
from digest.config._load import (
    DEFAULT_MAX_PAPERS,
    DEFAULT_SCHEDULE,
    FEED_KEYS,
    SETTINGS_KEYS,
    SMTP_KEYS,
    SUBSCRIBER_KEYS,
    TOPIC_KEYS,
)
from digest.errors import ConfigError, DigestError
from digest.models import (
    Config,
    FeedSettings,
    Settings,
    SmtpSettings,
    Subscriber,
    Topic,
)

REPO = Path(__file__).resolve().parents[2]
NAME = "subscribers.yaml"
ONE = """
subscribers:
  - email: ada@example.org
    topics: [diffusion]
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    (folder / NAME).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return Path(NAME)


def load(folder: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(folder, text), environ=env or {})


def problems(folder: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(folder, text, env)
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------- valid files


def test_the_schema_covers_the_models() -> None:
    """Every settings field can be set from the file; subscribers set all but ``line``."""
    assert SETTINGS_KEYS == tuple(f.name for f in fields(Settings))
    assert SMTP_KEYS == tuple(f.name for f in fields(SmtpSettings))
    assert FEED_KEYS == tuple(f.name for f in fields(FeedSettings))
    assert TOPIC_KEYS == tuple(f.name for f in fields(Topic))
    assert set(SUBSCRIBER_KEYS) == {f.name for f in fields(Subscriber)} - {"line"}


def test_example_file_validates_with_four_subscribers() -> None:
    config = load_config(REPO / "subscribers.example.yaml", environ={})
    assert [s.email for s in config.subscribers] == [
        "ada@example.org", "grace@example.org", "linus@example.org", "katherine@example.org"]
    assert sum(len(s.topics) for s in config.subscribers) == 9
    assert config.settings.delivery == "outbox"
    assert config.settings.feed.source == "sample"
    assert config.settings.database == REPO / "digest.db"
    assert config.settings.outbox == REPO / "outbox"
    ada = config.subscriber("ADA@example.org")
    assert ada is not None and ada.schedule == "0 7 * * mon-fri" and ada.max_papers == 8
    assert ada.topics[0] == Topic(name="segment anything", include=("segment anything",))
    assert ada.topics[1] == Topic(name="Quantization", include=("quantization", "low-bit",
                                                                 "sub-1-bit"),
                                  exclude=("survey",))


def test_defaults_and_shorthands(here: Path) -> None:
    config = load(here, """
        settings:
          timezone: Europe/Berlin
        subscribers:
          - email: Ada@EXAMPLE.org
            topics:
              - "segment anything"
              - include: [quantization, low-bit]
              - {require: [diffusion, video]}
    """)
    (ada,) = config.subscribers
    assert ada.email == "Ada@example.org"  # email-validator lower-cases the domain only
    assert ada.name is None
    assert ada.timezone == "Europe/Berlin"  # from settings
    assert ada.schedule == DEFAULT_SCHEDULE == "0 7 * * *"
    assert ada.max_papers == DEFAULT_MAX_PAPERS == 10
    assert ada.line == 4
    assert [t.name for t in ada.topics] == ["segment anything", "quantization", "diffusion"]
    assert ada.topics[2].require == ("diffusion", "video") and ada.topics[2].include == ()
    assert config.path == here / NAME


def test_settings_values_and_paths_relative_to_the_file(here: Path) -> None:
    (here / "conf" / "tmpl").mkdir(parents=True)
    (here / "papers.json").write_text("[]")
    (here / "conf" / "ca.pem").write_text("x")
    (here / "conf" / "c.yaml").write_text(textwrap.dedent("""
        settings:
          sender: digest@localhost
          database: state/digest.db
          outbox: ../mail
          templates: tmpl
          catch_up: 90m
          retry_for: 1d12h
          summary_chars: 200
          list_id: digest.example.org
          unsubscribe_url: https://digest.example.org/u
          unsubscribe_secret_env: DIGEST_SECRET
          manage_url: http://localhost:8000/topics
          delivery: smtp
          smtp: {host: mail.example.org, port: 465, security: tls, username: me,
                 password_env: DIGEST_PW, ca_file: ca.pem, timeout: 5, connections: 2,
                 max_per_second: 2.5}
          feed: {source: file, path: ../papers.json, limit: 20}
        subscribers: []
    """))
    config = load_config(Path("conf/c.yaml"), environ={"DIGEST_PW": "s", "DIGEST_SECRET": "k" * 32})
    s = config.settings
    assert s.database == here / "conf" / "state" / "digest.db"
    assert s.outbox == here / "mail"
    assert s.templates == here / "conf" / "tmpl"
    assert s.feed.path == here / "papers.json" and s.feed.limit == 20
    assert s.catch_up == timedelta(minutes=90) and s.retry_for == timedelta(days=1, hours=12)
    assert s.smtp is not None and s.smtp.ca_file == here / "conf" / "ca.pem"
    assert (s.smtp.port, s.smtp.security, s.smtp.timeout, s.smtp.connections,
            s.smtp.max_per_second) == (465, "tls", 5.0, 2, 2.5)
    assert s.summary_chars == 200 and s.list_id == "digest.example.org"
    assert config.subscribers == ()


def test_merge_keys_and_x_anchor_holders(here: Path) -> None:
    config = load(here, """
        x-defaults: &defaults
          timezone: Asia/Tokyo
          max_papers: 3
          topics: [diffusion]
        subscribers:
          - <<: *defaults
            email: ada@example.org
          - <<: *defaults
            email: grace@example.org
            max_papers: 5
    """)
    assert [(s.timezone, s.max_papers) for s in config.subscribers] == [
        ("Asia/Tokyo", 3), ("Asia/Tokyo", 5)]


def test_durations(here: Path) -> None:
    text = "settings:\n  catch_up: {value}\nsubscribers: []\n"
    for value, expected in [("30s", timedelta(seconds=30)), ("1w", timedelta(weeks=1)),
                            ("0m", timedelta(0)), ("2D", timedelta(days=2))]:
        assert load(here, text.format(value=value)).settings.catch_up == expected
    assert problems(here, text.format(value="9999999999d")) == [
        "subscribers.yaml:2: settings.catch_up: expected a duration like 90m, 12h, 2d or 1d12h, "
        "got '9999999999d' (too long)"]
    assert problems(here, text.format(value="1h 30m")) == [
        "subscribers.yaml:2: settings.catch_up: expected a duration like 90m, 12h, 2d or 1d12h, "
        "got '1h 30m'"]


def test_merge_into_itself_is_reported_not_recursed(here: Path) -> None:
    assert problems(here, """
        x-a: &a
          email: a@example.org
          topics: [x]
          <<: *a
        subscribers: [*a]
    """) == ["subscribers.yaml:1: subscribers[0]: << merges the mapping into itself"]


def test_nested_merges_expand_once(here: Path) -> None:
    # 2**40 expansions if each merge were expanded at every use.
    levels = ["x-m0: &m0 {email: a@example.org, topics: [x]}"]
    levels += [f"x-m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 41)]
    config = load(here, "\n".join(levels) + "\nsubscribers: [*m40]\n")
    assert config.subscribers[0].email == "a@example.org"


def test_smtp_password_env_is_only_checked_for_smtp_delivery(here: Path) -> None:
    text = """
        settings:
          delivery: {delivery}
          smtp: {{host: smtp.example.org, username: digest, password_env: DIGEST_SMTP_PASSWORD}}
        subscribers: []
    """
    assert load(here, text.format(delivery="outbox")).settings.smtp is not None
    config = load(here, text.format(delivery="smtp"), env={"DIGEST_SMTP_PASSWORD": "x"})
    assert config.settings.delivery == "smtp"
    assert problems(here, text.format(delivery="smtp"), env={"DIGEST_SMTP_PASSWORD": ""}) == [
        "subscribers.yaml:3: settings.smtp.password_env: environment variable "
        "DIGEST_SMTP_PASSWORD is not set (delivery is smtp)"]


def test_environ_defaults_to_the_process_environment(here: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write(here, """
        settings:
          delivery: smtp
          smtp: {host: smtp.example.org, password_env: DIGEST_TEST_PW}
        subscribers: []
    """)
    monkeypatch.setenv("DIGEST_TEST_PW", "secret")
    assert load_config(Path(NAME)).settings.delivery == "smtp"


# --------------------------------------------------------------------------- exact errors


def test_the_issue_example_message(here: Path) -> None:
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            topics: [diffusion]
          - email: grace@example.org
            topics:
              - name: Quantization
                include: x
    """) == ["subscribers.yaml:7: subscribers[1].topics[0].include: "
             "expected a list of strings, got 'x'"]


def test_yaml_syntax_error_has_its_line(here: Path) -> None:
    assert problems(here, """
        settings:
          timezone: UTC
        subscribers:
          - email: [ada@example.org
            topics: [x]
    """) == ["subscribers.yaml:5: invalid YAML: did not find expected ',' or ']' "
             "(while parsing a flow sequence started at line 4)"]


def test_unquoted_star_cron_gets_a_quoting_hint(here: Path) -> None:
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            schedule: * * * * *
            topics: [x]
    """) == ["subscribers.yaml:3: invalid YAML: did not find expected alphabetic or numeric "
             "character (while scanning an alias started at line 3); quote values that start "
             'with * (e.g. schedule: "*/30 * * * *")']


def test_tabs_get_a_hint(here: Path) -> None:
    assert problems(here, "subscribers:\n\t- email: ada@example.org\n") == [
        "subscribers.yaml:2: invalid YAML: found character that cannot start any token (while "
        "scanning for the next token started at line 2); indent with spaces, YAML does not "
        "allow tabs"]


def test_one_document_only(here: Path) -> None:
    assert problems(here, "subscribers: []\n---\nsubscribers: []\n") == [
        "subscribers.yaml:2: invalid YAML: but found another document (expected a single "
        "document in the stream started at line 1)"]


def test_unknown_keys_name_the_allowed_ones_and_the_close_match(here: Path) -> None:
    assert problems(here, """
        settings:
          timzone: UTC
        subscribers:
          - email: ada@example.org
            topics: [{name: x, includes: [a]}]
            frobnicate: 1
        extra: 1
    """) == [
        "subscribers.yaml:2: settings.timzone: unknown key (did you mean 'timezone'?); "
        "allowed: sender, timezone, database, delivery, outbox, smtp, feed, feeds, templates, "
        "summary_chars, max_email_bytes, catch_up, retry_for, unsubscribe_url, "
        "unsubscribe_secret_env, list_id, manage_url, base_url, archive_for, dkim, queue, "
        "queue_password_env",
        "subscribers.yaml:5: subscribers[0].topics[0].includes: unknown key (did you mean "
        "'include'?); allowed: name, include, require, exclude, categories, authors, "
        "min_upvotes, expand, passing_mentions, about, like",
        "subscribers.yaml:6: subscribers[0].frobnicate: unknown key; allowed: email, name, "
        "timezone, schedule, max_papers, topics, categories, authors, min_upvotes, feeds",
        "subscribers.yaml:7: extra: unknown key; allowed: settings, subscribers",
    ]


def test_every_problem_at_once_in_line_order(here: Path) -> None:
    assert problems(here, """
        settings:
          delivery: smpt
          feed: {source: rss}
        subscribers:
          - name: Ada
            topics: [diffusion]
          - email: ada@@example.org
            topics: [diffusion]
          - email: grace@example.org
            timezone: Europe/Londn
            schedule: "0 7 * *"
            max_papers: 0
            topics: [diffusion]
          - email: Grace@Example.org
            max_papers: ten
            topics: []
          - email: linus@example.org
            topics:
    """) == [
        "subscribers.yaml:2: settings.delivery: expected one of outbox, smtp, got 'smpt' "
        "(did you mean 'smtp'?)",
        "subscribers.yaml:3: settings.feed.source: expected one of sample, huggingface, arxiv, "
        "arxiv_rss, biorxiv, medrxiv, file, got 'rss'",
        "subscribers.yaml:5: subscribers[0].email: missing",
        "subscribers.yaml:7: subscribers[1].email: invalid email address 'ada@@example.org': "
        "The part after the @-sign contains invalid characters: '@'",
        "subscribers.yaml:10: subscribers[2].timezone: unknown timezone 'Europe/Londn' (did you "
        "mean 'Europe/London'?); use an IANA name such as 'Europe/Berlin' or "
        "'America/New_York'",
        "subscribers.yaml:11: subscribers[2].schedule: invalid cron expression '0 7 * *': "
        "expected 5 fields (minute hour day month weekday), got 4",
        "subscribers.yaml:12: subscribers[2].max_papers: expected a positive integer, got 0",
        "subscribers.yaml:14: subscribers[3].email: duplicate subscriber 'Grace@example.org' "
        "(first at line 9, subscribers[2]); addresses are compared ignoring case",
        "subscribers.yaml:15: subscribers[3].max_papers: expected a positive integer, "
        "got 'ten'",
        "subscribers.yaml:16: subscribers[3].topics: expected at least one topic, "
        "got an empty list",
        "subscribers.yaml:18: subscribers[4].topics: expected a list of topics, got nothing",
    ]


@pytest.mark.parametrize(("value", "message"), [
    ("ada", "invalid email address 'ada': An email address must have an @-sign"),
    ('"Ada <ada@example.org>"', "invalid email address 'Ada <ada@example.org>': A display "
     "name and angle brackets around the email address are not permitted here (put the "
     "display name in name:)"),
    ("jösé@example.org", "invalid email address 'jösé@example.org': Internationalized "
     "characters before the @-sign are not supported: 'é', 'ö' (paper-digest sends without SMTPUTF8, so every send to it would fail; use the "
     "subscriber's ASCII address)"),
    ("", "expected an email address, got nothing"),
    ("no", 'expected an email address, got no (YAML 1.1 reads it as the boolean false); '
     'quote it: "no"'),
])
def test_bad_email(here: Path, value: str, message: str) -> None:
    assert problems(here, f"""
        subscribers:
          - email: {value}
            topics: [x]
    """) == [f"subscribers.yaml:2: subscribers[0].email: {message}"]


@pytest.mark.parametrize(("value", "message"), [
    ("-3", "expected a positive integer, got -3"),
    ("true", "expected a positive integer, got true"),
    ("2.5", "expected a positive integer, got 2.5"),
    ("[1]", "expected a positive integer, got a list"),
])
def test_max_papers_must_be_a_positive_integer(here: Path, value: str, message: str) -> None:
    assert problems(here, f"""
        subscribers:
          - email: ada@example.org
            max_papers: {value}
            topics: [x]
    """) == [f"subscribers.yaml:3: subscribers[0].max_papers: {message}"]


def test_yaml_1_1_traps_where_strings_are_expected(here: Path) -> None:
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            name: no
            schedule: 7:30
            topics:
              - on
              - 12:30
              - 2024
              - {name: Off, include: [yes]}
    """) == [
        'subscribers.yaml:3: subscribers[0].name: expected a string, got no (YAML 1.1 reads it '
        'as the boolean false); quote it: "no"',
        'subscribers.yaml:4: subscribers[0].schedule: expected a cron expression like '
        '"0 7 * * mon-fri", got 7:30 (YAML 1.1 reads it as the base-60 number 450); '
        'quote it: "7:30"',
        "subscribers.yaml:6: subscribers[0].topics[0]: expected a topic (a search term, or a "
        'mapping with include:), got on (YAML 1.1 reads it as the boolean true); quote it: "on"',
        "subscribers.yaml:7: subscribers[0].topics[1]: expected a topic (a search term, or a "
        "mapping with include:), got 12:30 (YAML 1.1 reads it as the base-60 number 750); "
        'quote it: "12:30"',
        "subscribers.yaml:8: subscribers[0].topics[2]: expected a topic (a search term, or a "
        'mapping with include:), got 2024 (a number); quote it: "2024"',
        "subscribers.yaml:9: subscribers[0].topics[3].name: expected a topic name, got Off "
        '(YAML 1.1 reads it as the boolean false); quote it: "Off"',
        "subscribers.yaml:9: subscribers[0].topics[3].include[0]: expected a search term, got "
        'yes (YAML 1.1 reads it as the boolean true); quote it: "yes"',
    ]
    # Quoted, the same values are the strings they look like.
    config = load(here, """
        subscribers:
          - email: ada@example.org
            name: "no"
            topics: ["on", "12:30"]
    """)
    assert config.subscribers[0].name == "no"
    assert [t.name for t in config.subscribers[0].topics] == ["on", "12:30"]


def test_duplicate_keys_pyyaml_would_drop(here: Path) -> None:
    assert problems(here, """
        settings:
          timezone: UTC
          timezone: Europe/Paris
        subscribers:
          - email: ada@example.org
            topics:
              - name: GANs
                include: [gan]
                include: [diffusion]
            email: grace@example.org
    """) == [
        "subscribers.yaml:3: settings.timezone: duplicate key (first at line 2); YAML would "
        "silently keep only the last one",
        "subscribers.yaml:9: subscribers[0].topics[0].include: duplicate key (first at line 8); "
        "YAML would silently keep only the last one",
        "subscribers.yaml:10: subscribers[0].email: duplicate key (first at line 5); YAML would "
        "silently keep only the last one",
    ]


def test_validate_refuses_every_term_matching_would_refuse(here: Path) -> None:
    # The one term rule (digest.text.term_problem): these once passed validate and failed later.
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            topics:
              - {include: ["zero*shot"]}
              - {include: ["__"]}
              - "graph*"
    """) == [
        "subscribers.yaml:4: subscribers[0].topics[0].include[0]: term 'zero*shot': '*' is only "
        "a wildcard at the end of a term",
        "subscribers.yaml:5: subscribers[0].topics[1].include[0]: term '__' has no letters or "
        "digits, so it can never match",
    ]


def test_malformed_topics_and_empty_terms(here: Path) -> None:
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            topics:
              - ""
              - {name: only-exclude, exclude: [survey]}
              - {include: [diffusion, "  "]}
              - {include: ["---"]}
              - [diffusion]
              - {name: Same, include: [a]}
              - {name: same, include: [b]}
              - {include: [gan, Diffusion], exclude: [survey, diffusion]}
          - email: grace@example.org
            topics: diffusion
          - email: linus@example.org
    """) == [
        "subscribers.yaml:4: subscribers[0].topics[0]: expected a topic (a search term, or a "
        "mapping with include:), got an empty string",
        "subscribers.yaml:5: subscribers[0].topics[1]: needs at least one include or require "
        "term",
        "subscribers.yaml:6: subscribers[0].topics[2].include[1]: expected a search term, "
        "got an empty string",
        "subscribers.yaml:7: subscribers[0].topics[3].include[0]: term '---' has no letters or "
        "digits, so it can never match",
        "subscribers.yaml:8: subscribers[0].topics[4]: expected a topic (a search term, or a "
        "mapping with include:), got a list",
        "subscribers.yaml:10: subscribers[0].topics[6]: duplicate topic name 'same' (first at "
        "line 9); give each topic its own name:",
        "subscribers.yaml:11: subscribers[0].topics[7].exclude: 'Diffusion' is also in "
        "include; a paper matching it would be excluded at once",
        "subscribers.yaml:13: subscribers[1].topics: expected a list of topics, got 'diffusion'",
        "subscribers.yaml:14: subscribers[2].topics: missing",
    ]


def test_metadata_filters(here: Path) -> None:
    config = load(here, """
        subscribers:
          - email: ada@example.org
            categories: [cs.CV, stat.ML, hep-th]
            authors: [Kaiming He]
            min_upvotes: 0
            topics:
              - {include: [x], categories: [cs.LG], min_upvotes: 5}
    """)
    ada = config.subscribers[0]
    assert (ada.categories, ada.authors, ada.min_upvotes) == (
        ("cs.CV", "stat.ML", "hep-th"), ("Kaiming He",), 0)
    assert (ada.topics[0].categories, ada.topics[0].min_upvotes) == (("cs.LG",), 5)


def test_topic_vocabulary_and_semantic_keys(here: Path) -> None:
    text = """
        subscribers:
          - email: ada@example.org
            topics:
              - {include: [GNN], expand: false, about: "Graph learning.", like: ["2406.01234"]}
              - {include: [x], expand: "no"}
        """
    assert problems(here, text) == [
        "subscribers.yaml:5: subscribers[0].topics[1].expand: expected true or false, got 'no'"]
    topic = load(here, text.replace('expand: "no"', "expand: true")).subscribers[0].topics[0]
    assert (topic.expand, topic.about, topic.like) == (False, "Graph learning.", ("2406.01234",))


def test_terms_pass_the_selections_own_check(here: Path) -> None:
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            topics: ["zero*shot", {include: ["=quant*"]}]
        """) == [
        "subscribers.yaml:3: subscribers[0].topics[0]: term 'zero*shot': '*' is only a "
        "wildcard at the end of a term",
        "subscribers.yaml:3: subscribers[0].topics[1].include[0]: term '=quant*': '=' (exact) "
        "and a trailing '*' (prefix) do not combine"]
    assert problems(here, """
        subscribers:
          - email: ada@example.org
            categories: [machine learning]
            authors: Kaiming He
            min_upvotes: -1
            topics: [x]
    """) == [
        "subscribers.yaml:3: subscribers[0].categories[0]: expected an arXiv category like "
        "cs.LG or stat.ML, got 'machine learning'",
        "subscribers.yaml:4: subscribers[0].authors: expected a list of strings, "
        "got 'Kaiming He'",
        "subscribers.yaml:5: subscribers[0].min_upvotes: expected a non-negative integer, "
        "got -1",
    ]


def test_secrets_never_live_in_the_yaml(here: Path) -> None:
    found = problems(here, """
        settings:
          delivery: smtp
          smtp:
            host: smtp.example.org
            username: digest
            password: hunter2
            password_env: "hunter2!"
        subscribers: []
    """)
    assert found == [
        "subscribers.yaml:6: settings.smtp.password: never put secrets in the YAML: remove it, "
        "put the password in an environment variable and give that variable's name in "
        "password_env (e.g. password_env: DIGEST_SMTP_PASSWORD)",
        "subscribers.yaml:7: settings.smtp.password_env: expected the NAME of an environment "
        "variable (letters, digits and _, e.g. DIGEST_SMTP_PASSWORD), not the secret itself",
    ]
    assert not any("hunter2" in line for line in found)


def test_smtp_rules(here: Path) -> None:
    assert problems(here, """
        settings:
          delivery: smtp
        subscribers: []
    """) == ["subscribers.yaml:2: settings.smtp: missing (delivery is smtp; give at least "
             "smtp: {host: ...})"]
    assert problems(here, """
        settings:
          delivery: smtp
          smtp:
        subscribers: []
    """) == ["subscribers.yaml:2: settings.smtp: missing (delivery is smtp; give at least "
             "smtp: {host: ...})"]
    assert problems(here, """
        settings:
          smtp: {port: 70000, security: ssl}
        subscribers: []
    """) == [
        "subscribers.yaml:2: settings.smtp.host: missing",
        "subscribers.yaml:2: settings.smtp.port: expected an integer from 1 to 65535, "
        "got 70000",
        "subscribers.yaml:2: settings.smtp.security: expected one of starttls, tls, none, "
        "got 'ssl'",
    ]
    assert problems(here, """
        settings:
          smtp:
            host: smtp.example.org
            port: 465
            username: digest
        subscribers: []
    """) == [
        "subscribers.yaml:3: settings.smtp.security: port 465 expects security: tls (implicit "
        "TLS); starttls is for port 587",
        "subscribers.yaml:3: settings.smtp.password_env: missing (username is set; name the "
        "environment variable that holds the password)",
    ]


def test_feed_rules(here: Path) -> None:
    (here / "dir").mkdir()
    cases = {
        "{source: rss}": "settings.feed.source: expected one of sample, huggingface, arxiv, "
                         "arxiv_rss, biorxiv, medrxiv, file, got 'rss'",
        "{source: file}": "settings.feed.path: missing (source: file reads papers from this "
                          "file)",
        "{source: file, path: nope.json}": f"settings.feed.path: no such file: "
                                           f"{here / 'nope.json'}",
        "{source: file, path: dir}": f"settings.feed.path: is a folder, expected a file: "
                                     f"{here / 'dir'}",
        "{source: arxiv, categories: []}": "settings.feed.categories: expected at least one "
                                           "arXiv category for source: arxiv, got an empty list",
        "{source: huggingface, limit: 0}": "settings.feed.limit: expected a positive integer, "
                                           "got 0",
        "huggingface": "settings.feed: expected a mapping, got 'huggingface'",
    }
    for feed, message in cases.items():
        assert problems(here, f"""
            settings:
              feed: {feed}
            subscribers: []
        """) == [f"subscribers.yaml:2: {message}"], feed


@pytest.mark.parametrize(("zone", "guess"), [
    ("London", "Europe/London"), ("new york", "America/New_York"), ("utc", "UTC"),
    ("Europe/Londn", "Europe/London")])
def test_timezone_suggestions(here: Path, zone: str, guess: str) -> None:
    assert problems(here, f"""
        subscribers:
          - email: ada@example.org
            timezone: {zone}
            topics: [x]
    """) == [f"subscribers.yaml:3: subscribers[0].timezone: unknown timezone {zone!r} (did you "
             f"mean {guess!r}?); use an IANA name such as 'Europe/Berlin' or "
             "'America/New_York'"]


def test_other_settings_rules(here: Path) -> None:
    (here / "afile").write_text("")
    assert problems(here, """
        settings:
          sender: "Digest <digest@>"
          timezone: europe/berlin
          outbox: afile
          templates: missing-folder
          catch_up: 12
          retry_for: 2x
          list_id: bad id
          unsubscribe_url: http://example.org/u
          manage_url: example.org
          summary_chars: 0
        subscribers: []
    """) == [
        "subscribers.yaml:2: settings.sender: invalid sender address 'Digest <digest@>': "
        "There must be something after the @-sign",
        "subscribers.yaml:3: settings.timezone: unknown timezone 'europe/berlin' (did you mean "
        "'Europe/Berlin'?); use an IANA name such as 'Europe/Berlin' or 'America/New_York'",
        f"subscribers.yaml:4: settings.outbox: is a file, expected a folder: {here / 'afile'}",
        f"subscribers.yaml:5: settings.templates: no such folder: {here / 'missing-folder'}",
        "subscribers.yaml:6: settings.catch_up: expected a duration like 90m, 12h, 2d or 1d12h, "
        "got 12 (add a unit: m, h or d)",
        "subscribers.yaml:7: settings.retry_for: expected a duration like 90m, 12h, 2d or "
        "1d12h, got '2x'",
        "subscribers.yaml:8: settings.list_id: expected a list id like paper-digest.example.org "
        "(RFC 2919), got 'bad id'",
        "subscribers.yaml:9: settings.unsubscribe_url: expected an https:// URL, "
        "got 'http://example.org/u'",
        "subscribers.yaml:10: settings.manage_url: expected an https:// or http:// URL, "
        "got 'example.org'",
        "subscribers.yaml:11: settings.summary_chars: expected a positive integer, got 0",
    ]


def test_unsubscribe_url_needs_a_signing_secret(here: Path) -> None:
    base = """
        settings:
          unsubscribe_url: https://digest.example.org/u
          {extra}
        subscribers: []
    """
    missing = ("settings.unsubscribe_secret_env: missing (unsubscribe_url is set; name the "
               "environment variable that holds the key signing unsubscribe links)")
    assert problems(here, base.format(extra="")) == [f"subscribers.yaml:2: {missing}"]
    assert problems(here, base.format(extra="unsubscribe_secret_env:")) == [
        f"subscribers.yaml:3: {missing}"]
    with_env = base.format(extra="unsubscribe_secret_env: DIGEST_SECRET")
    assert problems(here, with_env) == [
        "subscribers.yaml:3: settings.unsubscribe_secret_env: environment variable "
        "DIGEST_SECRET is not set (it signs the links of unsubscribe_url)"]
    assert load(here, with_env, env={"DIGEST_SECRET": "k" * 32}).settings.unsubscribe_secret_env \
        == "DIGEST_SECRET"


def test_base_url_needs_a_long_secret_and_replaces_unsubscribe_url(here: Path) -> None:
    base = """
        settings:
          base_url: https://digest.example.org/news/
          unsubscribe_secret_env: DIGEST_SECRET
          {extra}
        subscribers: []
    """
    assert problems(here, base.format(extra=""), env={"DIGEST_SECRET": "k" * 31}) == [
        "subscribers.yaml:3: settings.unsubscribe_secret_env: the secret in DIGEST_SECRET is 31 "
        "bytes; use at least 32 random bytes (e.g. the output of python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')"]
    assert problems(here, base.format(extra="unsubscribe_url: https://x.example.org/u"),
                    env={"DIGEST_SECRET": "k" * 32}) == [
        "subscribers.yaml:4: settings.unsubscribe_url: remove it: with base_url set, digest "
        "serve answers the one-click unsubscribe itself (at base_url/u/<token>)"]
    settings = load(here, base.format(extra=""), env={"DIGEST_SECRET": "k" * 32}).settings
    assert settings.base_url == "https://digest.example.org/news"


@pytest.mark.parametrize("url", ["http://digest.example.org", "https://digest.example.org/?a=1",
                                 "https://me@digest.example.org", "digest.example.org"])
def test_base_url_is_a_plain_https_root(here: Path, url: str) -> None:
    text = f"""
        settings:
          base_url: {url}
          unsubscribe_secret_env: DIGEST_SECRET
        subscribers: []
    """
    [problem] = problems(here, text, env={"DIGEST_SECRET": "k" * 32})
    assert problem.startswith("subscribers.yaml:2: settings.base_url: expected")


@pytest.mark.parametrize(("content", "message"), [
    ("", "subscribers.yaml: the file is empty; it needs settings: and subscribers: "
         "(see subscribers.example.yaml)"),
    ("- a\n", "subscribers.yaml:1: expected a mapping with settings: and subscribers:, "
              "got a list"),
    ("settings: {}\n", "subscribers.yaml:1: subscribers: missing"),
    ("subscribers: {a: 1}\n", "subscribers.yaml:1: subscribers: expected a list of "
                              "subscribers, got a mapping"),
    ("subscribers:\n  - ada@example.org\n", "subscribers.yaml:2: subscribers[0]: expected a "
     "subscriber (a mapping with email: and topics:), got 'ada@example.org'"),
    ("settings: utc\nsubscribers: []\n", "subscribers.yaml:1: settings: expected a mapping, "
                                         "got 'utc'"),
    ("subscribers: []\n1: x\n", "subscribers.yaml:2: expected a key name, got 1 (a number); "
                                'quote it: "1"'),
])
def test_file_shape(here: Path, content: str, message: str) -> None:
    (here / NAME).write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(Path(NAME), environ={})
    assert str(info.value) == message


def test_unreadable_files(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Path("missing.yaml"), environ={})
    assert str(info.value) == "missing.yaml: no such file (start from subscribers.example.yaml)"
    with pytest.raises(ConfigError) as info:
        load_config(Path("."), environ={})
    assert str(info.value) == ".: is a folder, expected a YAML file"
    (here / NAME).write_bytes(b"subscribers: []\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(Path(NAME), environ={})
    assert str(info.value) == ("subscribers.yaml:2: not UTF-8 text (byte 0xe9); save the file "
                               "as UTF-8")


def test_the_file_is_shown_as_given(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_text("subscribers: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}:1: subscribers: expected a list of subscribers, got 3"
    assert isinstance(info.value, DigestError)  # the CLI catches it: no traceback, exit 1


def test_control_characters_are_refused(here: Path) -> None:
    assert problems(here, r"""
        settings:
          sender: "Digest <d@example.org>\r\nBcc: victim@example.org"
        subscribers: []
    """) == [
        "subscribers.yaml:2: settings.sender: expected an address like \"Paper Digest "
        "<digest@example.org>\", got 'Digest <d@example.org>\\r\\nBcc: victim@example.org' "
        "(control characters such as line breaks are not allowed)"]


# (a non-ASCII local part is refused: no SMTPUTF8, see test_bad_email)
@pytest.mark.parametrize("address", ["ada@example.org", "Ada.Lovelace+digest@Example.ORG",
                                      "postmaster@example.org", "user@bücher.example"])
def test_addresses_are_normalized_as_email_validator_does(here: Path, address: str) -> None:
    config = load(here, f"""
        subscribers:
          - email: "{address}"
            topics: [x]
    """)
    assert config.subscribers[0].email == validate_email(
        address, check_deliverability=False).normalized


def test_email_validator_is_the_authority_for_rejections(here: Path) -> None:
    for address in ["a..b@example.org", "a@example", "a@-example.org", "a@localhost"]:
        with pytest.raises(EmailNotValidError):
            validate_email(address, check_deliverability=False)
        assert len(problems(here, f"""
            subscribers:
              - email: "{address}"
                topics: [x]
        """)) == 1, address


def test_no_value_anywhere_crashes_the_loader(here: Path) -> None:
    """Each value of the example replaced by each YAML trap (or the line deleted) gives a
    Config or a ConfigError, never another exception (which the CLI would show as a
    traceback)."""
    lines = (REPO / "subscribers.example.yaml").read_text().splitlines()
    values = ["no", "{a: [1]}", "~"]  # a boolean, a mapping, nothing (12:30 etc. tested above)
    checked = 0
    for index, line in enumerate(lines):
        key, colon, rest = line.partition(":")
        if not colon or key.lstrip().startswith("#") or not rest.strip():
            continue
        variants = [[*lines[:index], f"{key}: {value}", *lines[index + 1:]] for value in values]
        variants.append([*lines[:index], *lines[index + 1:]])
        for variant in variants:
            (here / NAME).write_text("\n".join(variant) + "\n")
            try:
                load_config(Path(NAME), environ={})
            except ConfigError as exc:
                assert exc.problems and all(p.file == NAME for p in exc.problems)
            checked += 1
    assert checked > 150


def _big_config(n: int, *, settings_first: bool = True) -> str:
    settings = 'settings:\n  sender: "D <d@example.org>"\n  timezone: Europe/Berlin\n'
    subs = "subscribers:\n" + "".join(f"""  - email: reader{i}@example.org
    name: Reader {i}
    schedule: "0 7 * * mon-fri"
    topics:
      - "segment anything"
      - name: Quantization
        include: [quantization, "low-bit"]
        exclude: [survey]
""" for i in range(n))
    return settings + subs if settings_first else subs + settings


def test_memory_per_subscriber_stays_small_for_big_files(tmp_path: Path) -> None:
    """The node tree of the whole file (~8 KB a subscriber: a 50 MB file took 2.1 GB) is never
    held: subscribers are read as they are parsed, and equal zones, schedules and topic lists
    are kept once."""
    import tracemalloc

    from digest.config._load import STREAM_ABOVE_BYTES

    n = 1200
    path = tmp_path / "big.yaml"
    path.write_text(_big_config(n), encoding="utf-8")
    assert path.stat().st_size > STREAM_ABOVE_BYTES
    tracemalloc.start()
    try:
        config = load_config(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(config.subscribers) == n
    assert config.subscribers[5].timezone == "Europe/Berlin"
    assert config.subscribers[5].topics is config.subscribers[6].topics
    assert peak / n < 3000, f"{peak / n:.0f} bytes a subscriber"


def test_settings_after_subscribers_read_the_same(tmp_path: Path) -> None:
    first, last = tmp_path / "first.yaml", tmp_path / "last.yaml"
    first.write_text(_big_config(30), encoding="utf-8")
    last.write_text(_big_config(30, settings_first=False), encoding="utf-8")
    a, b = load_config(first), load_config(last)
    assert a.settings == b.settings
    assert [replace(s, line=0) for s in a.subscribers] == [replace(s, line=0) for s in b.subscribers]


def test_a_pathologically_big_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from digest.config._load import MAX_CONFIG_BYTES

    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing written, nothing read
    with pytest.raises(ConfigError, match=r"huge.yaml: 64 MB is more than paper-digest reads"):
        load_config(path)
