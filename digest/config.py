"""Loading and validating the subscribers YAML into a ``Config``.

Owns: ``load_config`` (the one way every command reads a config file), the schema of the file
(settings, smtp, feed, subscribers, topics), defaults, and the path rules (relative paths are
relative to the YAML file's folder). Every problem in the file is collected and raised at once as
one ``ConfigError`` whose lines read ``file:line: key.path: message``; the file is shown as the
path the caller gave (``str(path)``), so ``digest validate subscribers.yaml`` prints
``subscribers.yaml:14: ...``. Secrets are never read from the YAML, only the names of the
environment variables that hold them; the variables are checked in ``environ``.

May import: the standard library, PyYAML (through ``digest.config_schema``), email-validator,
``digest.models``, ``digest.errors``, ``digest.cron`` (schedule validation). Touches the file
system only to read the YAML and check that referenced files and folders exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from digest.config_schema import Entry, Reader, compose, describe
from digest.cron import cron_trigger
from digest.errors import ConfigError, Problem
from digest.models import Config, FeedSettings, Settings, SmtpSettings, Subscriber, Topic

__all__ = ["DEFAULT_MAX_PAPERS", "DEFAULT_SCHEDULE", "load_config"]

DEFAULT_SCHEDULE = "0 7 * * *"  # every day at 07:00 in the subscriber's timezone
DEFAULT_MAX_PAPERS = 10

SETTINGS_KEYS = tuple(f.name for f in fields(Settings))
SMTP_KEYS = tuple(f.name for f in fields(SmtpSettings))
FEED_KEYS = tuple(f.name for f in fields(FeedSettings))
SUBSCRIBER_KEYS = ("email", "name", "timezone", "schedule", "max_papers", "topics",
                   "categories", "authors", "min_upvotes")
TOPIC_KEYS = ("name", "include", "require", "exclude", "categories", "authors", "min_upvotes")

_SECRET = ("never put secrets in the YAML: remove it, put the {what} in an environment variable "
           "and give that variable's name in {key} (e.g. {key}: {example})")
_PASSWORD = _SECRET.format(what="password", key="password_env", example="DIGEST_SMTP_PASSWORD")
_REFUSED_SETTINGS = {
    "password": _SECRET.format(what="password", key="smtp.password_env",
                               example="DIGEST_SMTP_PASSWORD"),
    "unsubscribe_secret": _SECRET.format(what="secret", key="unsubscribe_secret_env",
                                         example="DIGEST_UNSUBSCRIBE_SECRET"),
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# arXiv categories: archive (cs, stat, q-bio, hep-th, astro-ph) and optional subject class.
_CATEGORY = re.compile(r"[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?")
_LIST_ID = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")  # RFC 2919: label.namespace
_WORD = re.compile(r"\w")


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML config at ``path``; raise ``ConfigError`` listing every
    problem (sorted by line). ``environ`` (default ``os.environ``) is where the variables
    named by ``password_env`` and ``unsubscribe_secret_env`` are looked up."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    file = str(path)
    absolute = Path(os.path.abspath(path))
    root = _compose(absolute, file)
    reader = Reader(file)
    top = reader.mapping(root, "", ("settings", "subscribers"), required=("subscribers",),
                         what="a mapping with settings: and subscribers:") or {}
    settings = _settings(reader, top.get("settings"), absolute.parent, env)
    subscribers: tuple[Subscriber, ...] = ()
    if "subscribers" in top:
        subscribers = _subscribers(reader, top["subscribers"].node, settings)
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=lambda p: p.line or 0))
    return Config(path=absolute, settings=settings, subscribers=subscribers)


def _compose(absolute: Path, file: str) -> Node:
    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([Problem(file, line, "", message)])

    try:
        text = absolute.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("no such file (start from subscribers.example.yaml)") from None
    except IsADirectoryError:
        raise fail("is a folder, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror}") from None
    root, problem = compose(text, file)
    if problem is not None:
        raise ConfigError([problem])
    if root is None:
        raise fail("the file is empty; it needs settings: and subscribers: "
                   "(see subscribers.example.yaml)")
    return root


def _null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


# --------------------------------------------------------------------------- settings


def _settings(r: Reader, entry: Entry | None, base: Path, env: Mapping[str, str]) -> Settings:
    values: dict[str, Any] = {}
    entries: dict[str, Entry] = {}
    if entry is not None and not _null(entry.node):
        entries = r.mapping(entry.node, "settings", SETTINGS_KEYS,
                            refused=_REFUSED_SETTINGS) or {}
    defaults = {f.name: f.default for f in fields(Settings)}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "sender": lambda n, k: _sender(r, n, k),
        "timezone": r.timezone,
        "database": lambda n, k: _path(r, n, k, base, kind="database"),
        "delivery": lambda n, k: r.choice(n, k, ("outbox", "smtp")),
        "outbox": lambda n, k: _path(r, n, k, base, kind="folder"),
        "smtp": lambda n, k: _smtp(r, n, k, base),
        "feed": lambda n, k: _feed(r, n, k, base),
        "templates": lambda n, k: _path(r, n, k, base, kind="existing folder"),
        "summary_chars": r.integer,
        "max_email_bytes": r.integer,
        "catch_up": r.duration,
        "retry_for": r.duration,
        "unsubscribe_url": lambda n, k: _url(r, n, k, schemes=("https",)),
        "unsubscribe_secret_env": lambda n, k: _env_name(r, n, k),
        "list_id": lambda n, k: _list_id(r, n, k),
        "manage_url": lambda n, k: _url(r, n, k, schemes=("https", "http")),
    }
    for name, found in entries.items():
        if _null(found.node) and defaults[name] is None:
            continue  # `templates:` left empty means "not set", like leaving it out
        value = readers[name](found.node, f"settings.{name}")
        if value is not None:
            values[name] = value
    values.setdefault("database", base / "digest.db")
    values.setdefault("outbox", base / "outbox")
    settings = Settings(**values)
    _cross_check(r, settings, entries, env)
    return settings


def _cross_check(r: Reader, settings: Settings, entries: dict[str, Entry],
                 env: Mapping[str, str]) -> None:
    """Rules between keys: what smtp delivery needs, what signed unsubscribe links need."""
    smtp_entries: dict[str, Entry] = {}
    if "smtp" in entries and isinstance(entries["smtp"].node, MappingNode):
        smtp_entries = {k.value: Entry(k.start_mark.line + 1, v)
                        for k, v in entries["smtp"].node.value if isinstance(k, ScalarNode)}
    if settings.delivery == "smtp" and "delivery" in entries:
        if "smtp" not in entries:
            r.problem(entries["delivery"].line, "settings.smtp",
                      "missing (delivery is smtp; give at least smtp: {host: ...})")
        elif settings.smtp is not None and settings.smtp.password_env:
            name = settings.smtp.password_env
            if not env.get(name):
                line = smtp_entries.get("password_env", entries["smtp"]).line
                r.problem(line, "settings.smtp.password_env",
                          f"environment variable {name} is not set (delivery is smtp)")
    if settings.unsubscribe_url:
        line = entries["unsubscribe_url"].line
        secret = settings.unsubscribe_secret_env
        if "unsubscribe_secret_env" not in entries:
            r.problem(line, "settings.unsubscribe_secret_env",
                      "missing (unsubscribe_url is set; name the environment variable that "
                      "holds the key signing unsubscribe links)")
        elif secret and not env.get(secret):
            r.problem(entries["unsubscribe_secret_env"].line, "settings.unsubscribe_secret_env",
                      f"environment variable {secret} is not set "
                      "(it signs the links of unsubscribe_url)")


def _smtp(r: Reader, node: Node, key: str, base: Path) -> SmtpSettings | None:
    entries = r.mapping(node, key, SMTP_KEYS, required=("host",),
                        refused={"password": _PASSWORD})
    if entries is None:
        return None
    before = len(r.problems)
    values: dict[str, Any] = {}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "host": lambda n, k: r.text(n, k, what="a host name"),
        "port": lambda n, k: r.integer(n, k, minimum=1, maximum=65535),
        "security": lambda n, k: r.choice(n, k, ("starttls", "tls", "none")),
        "username": lambda n, k: r.text(n, k, optional=True),
        "password_env": lambda n, k: _env_name(r, n, k),
        "ca_file": lambda n, k: _path(r, n, k, base, kind="existing file"),
        "timeout": r.number,
        "connections": r.integer,
        "max_per_second": lambda n, k: r.number(n, k, optional=True),
    }
    for name, found in entries.items():
        value = readers[name](found.node, f"{key}.{name}")
        if value is not None:
            values[name] = value
    if len(r.problems) > before or "host" not in values:
        return None
    smtp = SmtpSettings(**values)
    if smtp.port == 465 and smtp.security == "starttls":
        # Port 465 speaks TLS from the first byte; a STARTTLS client just hangs there.
        r.bad(entries["security"].node if "security" in entries else node, f"{key}.security",
              "port 465 expects security: tls (implicit TLS); starttls is for port 587")
    if smtp.username and not smtp.password_env:
        r.bad(node, f"{key}.password_env", "missing (username is set; name the environment "
              "variable that holds the password)")
    return smtp


def _feed(r: Reader, node: Node, key: str, base: Path) -> FeedSettings | None:
    entries = r.mapping(node, key, FEED_KEYS)
    if entries is None:
        return None
    before = len(r.problems)
    values: dict[str, Any] = {}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "source": lambda n, k: r.choice(n, k, ("sample", "huggingface", "arxiv", "file")),
        "path": lambda n, k: _path(r, n, k, base, kind="file"),
        "categories": lambda n, k: _categories(r, n, k),
        "limit": r.integer,
        "timeout": r.number,
    }
    for name, found in entries.items():
        value = readers[name](found.node, f"{key}.{name}")
        if value is not None:
            values[name] = value
    if len(r.problems) > before:
        return None
    feed = FeedSettings(**values)
    if feed.source == "file" and feed.path is None:
        r.bad(node, f"{key}.path", "missing (source: file reads papers from this file)")
    if feed.source == "arxiv" and not feed.categories:
        r.bad(entries["categories"].node, f"{key}.categories",
              "expected at least one arXiv category for source: arxiv, got an empty list")
    return feed


# --------------------------------------------------------------------------- subscribers


def _subscribers(r: Reader, node: Node, settings: Settings) -> tuple[Subscriber, ...]:
    items = r.sequence(node, "subscribers", "a list of subscribers")
    if items is None:
        return ()
    seen: dict[str, tuple[int, int]] = {}  # case-folded address -> (index, line)
    subscribers: list[Subscriber] = []
    for index, item in enumerate(items):
        subscriber = _subscriber(r, item, index, settings, seen)
        if subscriber is not None:
            subscribers.append(subscriber)
    return tuple(subscribers)


def _subscriber(r: Reader, node: Node, index: int, settings: Settings,
                seen: dict[str, tuple[int, int]]) -> Subscriber | None:
    key = f"subscribers[{index}]"
    entries = r.mapping(node, key, SUBSCRIBER_KEYS, required=("email", "topics"),
                        what="a subscriber (a mapping with email: and topics:)")
    if entries is None:
        return None
    before = len(r.problems)
    values: dict[str, Any] = {"timezone": settings.timezone, "schedule": DEFAULT_SCHEDULE,
                              "max_papers": DEFAULT_MAX_PAPERS, "name": None,
                              "line": int(node.start_mark.line) + 1}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "email": lambda n, k: _email(r, n, k),
        "name": lambda n, k: r.text(n, k, optional=True),
        "timezone": r.timezone,
        "schedule": lambda n, k: _schedule(r, n, k),
        "max_papers": r.integer,
        "topics": lambda n, k: _topics(r, n, k),
        "categories": lambda n, k: _categories(r, n, k),
        "authors": r.strings,
        "min_upvotes": lambda n, k: None if _null(n) else r.integer(n, k, minimum=0),
    }
    for name, found in entries.items():
        value = readers[name](found.node, f"{key}.{name}")
        if value is not None:
            values[name] = value
    email = values.get("email")
    if email is not None:
        folded = email.casefold()
        if folded in seen:
            first, line = seen[folded]
            r.bad(entries["email"].node, f"{key}.email", f"duplicate subscriber {email!r} "
                  f"(first at line {line}, subscribers[{first}]); addresses are compared "
                  "ignoring case")
        else:
            seen[folded] = (index, entries["email"].line)
    if len(r.problems) > before or "email" not in values or "topics" not in values:
        return None
    return Subscriber(**values)


def _topics(r: Reader, node: Node, key: str) -> tuple[Topic, ...] | None:
    items = r.sequence(node, key, "a list of topics")
    if items is None:
        return None
    if not items:
        r.bad(node, key, "expected at least one topic, got an empty list")
        return None
    topics: list[Topic] = []
    names: dict[str, int] = {}  # case-folded topic name -> line, to catch duplicates
    ok = True
    for index, item in enumerate(items):
        tkey = f"{key}[{index}]"
        topic = _topic(r, item, tkey)
        if topic is None:
            ok = False
            continue
        folded = topic.name.casefold()
        if folded in names:
            r.bad(item, tkey, f"duplicate topic name {topic.name!r} (first at line "
                  f"{names[folded]}); give each topic its own name:")
            ok = False
        names.setdefault(folded, int(item.start_mark.line) + 1)
        topics.append(topic)
    return tuple(topics) if ok else None


def _topic(r: Reader, node: Node, key: str) -> Topic | None:
    if not isinstance(node, MappingNode):
        term = _term(r, node, key, what="a topic (a search term, or a mapping with include:)")
        return Topic(name=term, include=(term,)) if term is not None else None
    entries = r.mapping(node, key, TOPIC_KEYS)
    if entries is None:
        return None
    before = len(r.problems)
    values: dict[str, Any] = {}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "name": lambda n, k: r.text(n, k, what="a topic name"),
        "include": lambda n, k: _terms(r, n, k),
        "require": lambda n, k: _terms(r, n, k),
        "exclude": lambda n, k: _terms(r, n, k),
        "categories": lambda n, k: _categories(r, n, k),
        "authors": r.strings,
        "min_upvotes": lambda n, k: None if _null(n) else r.integer(n, k, minimum=0),
    }
    for name, found in entries.items():
        value = readers[name](found.node, f"{key}.{name}")
        if value is not None:
            values[name] = value
    if len(r.problems) > before:
        return None
    terms = values.get("include", ()) + values.get("require", ())
    if not terms:
        r.bad(node, key, "needs at least one include or require term")
        return None
    values.setdefault("name", terms[0])
    return Topic(**values)


def _term(r: Reader, node: Node, key: str, what: str = "a search term") -> str | None:
    term = r.text(node, key, what=what)
    if term is not None and not _WORD.search(term):
        r.bad(node, key, f"expected a search term with letters or digits, got {term!r}")
        return None
    return term


def _terms(r: Reader, node: Node, key: str) -> tuple[str, ...] | None:
    if _null(node):
        return ()
    items = r.sequence(node, key, "a list of strings")
    if items is None:
        return None
    terms = [_term(r, item, f"{key}[{index}]") for index, item in enumerate(items)]
    return tuple(t for t in terms if t is not None) if None not in terms else None


def _categories(r: Reader, node: Node, key: str) -> tuple[str, ...] | None:
    values = r.strings(node, key, what="a list of arXiv categories", item="an arXiv category")
    if values is None:
        return None
    ok = True
    for index, value in enumerate(values):
        if not _CATEGORY.fullmatch(value):
            r.bad(node.value[index] if isinstance(node, SequenceNode) else node, f"{key}[{index}]",
                  f"expected an arXiv category like cs.LG or stat.ML, got {value!r}")
            ok = False
    return values if ok else None


# --------------------------------------------------------------------------- scalars


def _email(r: Reader, node: Node, key: str) -> str | None:
    value = r.text(node, key, what="an email address")
    if value is None:
        return None
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        hint = " (put the display name in name:)" if "<" in value else ""
        r.bad(node, key, f"invalid email address {value!r}: {str(exc).rstrip('.')}{hint}")
        return None


def _sender(r: Reader, node: Node, key: str) -> str | None:
    value = r.text(node, key, what='an address like "Paper Digest <digest@example.org>"')
    if value is None:
        return None
    _, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    # digest@localhost is fine for a sender on a test box; email-validator wants a dot.
    check = f"{local}@localhost.localdomain" if domain.lower() == "localhost" else address
    try:
        validate_email(check, check_deliverability=False)
    except EmailNotValidError as exc:
        r.bad(node, key, f"invalid sender address {value!r}: {str(exc).rstrip('.')}")
        return None
    return value


@lru_cache(maxsize=4096)
def _cron_error(expr: str) -> str | None:
    # The zone is checked on its own; a fixed one lets 10k subscribers share this cache.
    try:
        cron_trigger(expr, "UTC")
    except ValueError as exc:
        return str(exc)
    return None


def _schedule(r: Reader, node: Node, key: str) -> str | None:
    expr = r.text(node, key, what='a cron expression like "0 7 * * mon-fri"')
    if expr is None:
        return None
    error = _cron_error(expr)
    if error is not None:
        r.bad(node, key, f"invalid cron expression {expr!r}: {error}")
        return None
    return expr


def _path(r: Reader, node: Node, key: str, base: Path, *, kind: str) -> Path | None:
    """A path relative to the config file's folder (``~`` expanded), checked for ``kind``:
    ``file``/``existing file``/``existing folder`` must exist as such; ``folder`` and
    ``database`` may be missing (they are created) but must not be the wrong kind."""
    value = r.text(node, key, what="a path")
    if value is None:
        return None
    path = Path(os.path.normpath(base / Path(value).expanduser()))
    if kind in ("file", "existing file") and not path.is_file():
        r.bad(node, key, f"is a folder, expected a file: {path}" if path.is_dir()
              else f"no such file: {path}")
        return None
    if kind == "existing folder" and not path.is_dir():
        r.bad(node, key, f"no such folder: {path}")
        return None
    if kind == "folder" and path.exists() and not path.is_dir():
        r.bad(node, key, f"expected a folder, but this is a file: {path}")
        return None
    if kind == "database" and path.is_dir():
        r.bad(node, key, f"is a folder, expected a database file: {path}")
        return None
    return path


def _env_name(r: Reader, node: Node, key: str) -> str | None:
    # Never echo the value: a user who pastes the secret itself here must not see it printed.
    if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:str" \
            and _ENV_NAME.fullmatch(node.value.strip()):
        return str(node.value).strip()
    r.bad(node, key, "expected the NAME of an environment variable (letters, digits and _, "
          "e.g. DIGEST_SMTP_PASSWORD), not the secret itself")
    return None


def _url(r: Reader, node: Node, key: str, *, schemes: tuple[str, ...]) -> str | None:
    what = " or ".join(f"{s}://" for s in schemes) + " URL"
    value = r.text(node, key, what=f"an {what}")
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in schemes or not parts.netloc or " " in value:
        r.bad(node, key, f"expected an {what}, got {value!r}")
        return None
    return value


def _list_id(r: Reader, node: Node, key: str) -> str | None:
    value = r.text(node, key, what="a list id")
    if value is not None and not _LIST_ID.fullmatch(value):
        r.bad(node, key, f"expected a list id like paper-digest.example.org (RFC 2919), "
              f"got {describe(node)}")
        return None
    return value
