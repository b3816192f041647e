"""Loading and validating the subscribers YAML into a ``Config``.

Owns: ``load_config`` (the one way every command reads a config file), the schema of the file
(settings, smtp, feed, subscribers, topics), defaults, and the path rules (relative paths are
relative to the YAML file's folder). Every problem in the file is collected and raised at once as
one ``ConfigError`` whose lines read ``file:line: key.path: message``; the file is shown as the
path the caller gave (``str(path)``), so ``digest validate subscribers.yaml`` prints
``subscribers.yaml:14: ...``. Secrets are never read from the YAML, only the names of the
environment variables that hold them; the variables are checked in ``environ``.

May import: the standard library, PyYAML, ``digest.config._schema`` (the node readers, which
bring email-validator and ``digest.cron``), ``_compose`` (parsing, the subscribers streamed),
``_plain`` (a plain entry read from its events), ``_spill``, ``_dkim``, ``digest.models``,
``digest.errors``. Touches the
file system only to read the YAML and check that referenced files and folders exist.
"""

from __future__ import annotations

import gc
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from digest.config._dkim import check_alignment, read_dkim, read_helo
from digest.config._compose import ItemSink, compose
from digest.config._plain import PlainEntries
from digest.config._schema import Entry, Reader, is_null, line_of, suggest
from digest.config._spill import SpilledSubscribers, SpillWriter
from digest.errors import ConfigError, Problem
from digest.models import (
    BIORXIV_SUBJECTS,
    MIN_SECRET_BYTES,
    Config,
    FeedSettings,
    PostgresDatabase,
    Settings,
    SmtpSettings,
    StreamedConfig,
    Subscriber,
    Topic,
)

__all__ = ["DEFAULT_MAX_PAPERS", "DEFAULT_SCHEDULE", "load_config", "open_config"]

_FEED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# arXiv's archives; in these the subject class is upper case (cs.LG, math.AG, q-bio.NC), and
# arXiv answers a wrongly cased one (cs.lg) with an empty listing rather than an error.
ARXIV_ARCHIVES = ("astro-ph", "cond-mat", "cs", "econ", "eess", "gr-qc", "hep-ex", "hep-lat",
                  "hep-ph", "hep-th", "math", "math-ph", "nlin", "nucl-ex", "nucl-th",
                  "physics", "q-bio", "q-fin", "quant-ph", "stat")
_UPPER_SUBJECTS = ("astro-ph", "cs", "econ", "eess", "math", "nlin", "q-bio", "q-fin", "stat")
DEFAULT_SCHEDULE = "0 7 * * *"  # every day at 07:00 in the subscriber's timezone
DEFAULT_MAX_PAPERS = 10

# Spelled out (tests check them against models.py): a field added to a model must get its
# reader here before the file may set it, instead of failing with a KeyError at load time.
SETTINGS_KEYS = ("sender", "timezone", "database", "delivery", "outbox", "smtp", "feed",
                 "feeds", "templates", "summary_chars", "max_email_bytes", "catch_up",
                 "retry_for", "unsubscribe_url", "unsubscribe_secret_env", "list_id",
                 "manage_url", "base_url", "archive_for", "dkim", "queue", "queue_password_env")
SMTP_KEYS = ("host", "port", "security", "username", "password_env", "ca_file", "timeout",
             "data_timeout", "connections", "max_per_second", "helo")
FEED_KEYS = ("source", "path", "categories", "limit", "timeout", "name", "cross", "revisions")
FEED_SOURCES = ("sample", "huggingface", "arxiv", "arxiv_rss", "biorxiv", "medrxiv", "file")
LISTINGS = ("arxiv_rss", "biorxiv", "medrxiv")  # a day's whole listing, not a ranked top
LISTING_LIMIT = 2000
SUBSCRIBER_KEYS = ("email", "name", "timezone", "schedule", "max_papers", "topics",
                   "categories", "authors", "min_upvotes", "feeds")
TOPIC_KEYS = ("name", "include", "require", "exclude", "categories", "authors", "min_upvotes",
              "expand", "passing_mentions", "about", "like")

_SECRET = ("never put secrets in the YAML: remove it, put the {what} in an environment variable "
           "and give that variable's name in {key} (e.g. {key}: {example})")
_PASSWORD = _SECRET.format(what="password", key="password_env", example="DIGEST_SMTP_PASSWORD")
_REFUSED_SETTINGS = {
    "password": _SECRET.format(what="password", key="smtp.password_env",
                               example="DIGEST_SMTP_PASSWORD"),
    "unsubscribe_secret": _SECRET.format(what="secret", key="unsubscribe_secret_env",
                                         example="DIGEST_UNSUBSCRIBE_SECRET"),
}


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML config at ``path``; raise ``ConfigError`` listing every
    problem (sorted by line). ``environ`` (default ``os.environ``) is where the variables
    named by ``password_env`` and ``unsubscribe_secret_env`` are looked up."""
    with _no_gc():
        absolute, settings, subscribers = _load(path, os.environ if environ is None else environ,
                                                None)
    assert isinstance(subscribers, tuple)  # nothing spilled without a spill file
    return Config(path=absolute, settings=settings, subscribers=subscribers)


@contextmanager
def open_config(path: Path, *, environ: Mapping[str, str] | None = None
                ) -> Iterator[StreamedConfig]:
    """``load_config`` for a run over every subscriber (``digest send``): the same checks and
    problems, but a big file's subscribers (past ``STREAM_ABOVE_BYTES``, ``settings:`` before
    ``subscribers:``) are written one by one to a temporary file as they are read and the
    config reads them back from it, one at a time (``SpilledSubscribers``), so neither the
    node tree nor the subscribers are ever all in memory. The file is removed when the block
    ends; a smaller file is read as ``load_config`` reads it."""
    with ExitStack() as folder:
        def spill() -> Path:
            """Made only when subscribers are spilled: a process killed in the block leaves
            no folder behind when there was nothing to spill (the usual small file)."""
            made = folder.enter_context(tempfile.TemporaryDirectory(prefix="digest-subscribers-"))
            return Path(made) / "subscribers.pickle"

        with _no_gc():
            path_, settings, subscribers = _load(path, os.environ if environ is None else environ,
                                                 spill)
        yield StreamedConfig(path_, settings, subscribers, schedules=(
            subscribers.schedules if isinstance(subscribers, SpilledSubscribers) else None))


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the node tree is built and read: a 10,000
    subscriber file makes ~1M small objects, and the collector's repeated passes over them
    take 2-3x longer than the parsing itself. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load(path: Path, env: Mapping[str, str], spill: Callable[[], Path] | None
          ) -> tuple[Path, Settings, Sequence[Subscriber]]:
    """``spill``: makes the file streamed subscribers go to instead of a list
    (``open_config``)."""
    file = str(path)
    absolute = Path(os.path.abspath(path))
    reader = Reader(file)
    streamed: list[Subscriber] | SpillWriter | None = None
    early: list[Settings] = []

    def sink(top_so_far: MappingNode) -> _Keep | None:
        """``settings:`` came before ``subscribers:`` (the usual order): read it now and each
        subscriber as it is parsed, so the file's node tree is never held whole."""
        nonlocal streamed
        keys = [k.value for k, _ in top_so_far.value if isinstance(k, ScalarNode)]
        if "<<" in keys or "subscribers" in keys:
            return None
        entry = next((Entry(line_of(k), v) for k, v in top_so_far.value
                      if isinstance(k, ScalarNode) and k.value == "settings"), None)
        if entry is None:  # settings may still follow (their defaults apply to everyone)
            return None
        early.append(_settings(reader, entry, absolute.parent, env))
        # Spilled subscribers are read back one at a time: sharing equal values between them
        # would only make the table of shared values grow with the file.
        people = _People(reader, early[0], share=spill is None)
        streamed = [] if spill is None else SpillWriter(spill())
        return _Keep(people, streamed)

    try:
        root = _compose(absolute, file, sink)
    except BaseException:
        if isinstance(streamed, SpillWriter):
            streamed.close()
        raise
    top = reader.mapping(root, "", ("settings", "subscribers"), required=("subscribers",),
                         what="a mapping with settings: and subscribers:",
                         free_prefix="x-") or {}
    settings = early[0] if early else _settings(reader, top.get("settings"), absolute.parent, env)
    subscribers: Sequence[Subscriber] = ()
    if isinstance(streamed, SpillWriter):
        subscribers = streamed.finish()
    elif streamed is not None:
        subscribers = tuple(streamed)
    elif "subscribers" in top:
        subscribers = _People(reader, settings).all(top["subscribers"].node)
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=lambda p: p.line or 0))
    return absolute, settings, subscribers


# A subscribers file past this size is refused before it is read (about 600,000 subscribers of
# the example's shape): a clear message beats a process swapping itself to death.
MAX_CONFIG_BYTES = 64 * 2**20
# From this size on (about 1,000 subscribers, a node tree of ~8 MB) subscribers are read as
# they are parsed.
STREAM_ABOVE_BYTES = 256 * 2**10


def _compose(absolute: Path, file: str, sink: ItemSink | None = None) -> Node:
    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([Problem(file, line, "", message)])

    try:
        size = absolute.stat().st_size
    except OSError:
        size = 0  # reported by the read below
    if size > MAX_CONFIG_BYTES:
        raise fail(f"{size / 2**20:.0f} MB is more than paper-digest reads "
                   f"({MAX_CONFIG_BYTES // 2**20} MB, about 600,000 subscribers); split the "
                   "subscribers over several files (each with its own database)")
    try:
        data = absolute.read_bytes()
    except FileNotFoundError:
        raise fail("no such file (start from subscribers.example.yaml)") from None
    except IsADirectoryError:
        raise fail("is a folder, expected a YAML file") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror}") from None
    try:
        if not data.isascii():  # (a copy of the text, but only for a moment)
            data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                   line) from None
    # A small file is composed whole by libyaml's own composer, as it always was (streamed,
    # with the plain entries read from their events, it would take ~0.6 of the time, but a
    # broken alias or anchor in its subscribers would be worded by our composer, not
    # libyaml's); the whole tree holds ~8 KB a subscriber, so a big file is streamed.
    root, problem = compose(data, file, sink if len(data) > STREAM_ABOVE_BYTES else None)
    if problem is not None:
        raise ConfigError([problem])
    if root is None:
        raise fail("the file is empty; it needs settings: and subscribers: "
                   "(see subscribers.example.yaml)")
    return root


# --------------------------------------------------------------------------- settings


def _settings(r: Reader, entry: Entry | None, base: Path, env: Mapping[str, str]) -> Settings:
    values: dict[str, Any] = {}
    entries: dict[str, Entry] = {}
    if entry is not None and not is_null(entry.node):
        entries = r.mapping(entry.node, "settings", SETTINGS_KEYS,
                            refused=_REFUSED_SETTINGS) or {}
    defaults = {f.name: f.default for f in fields(Settings)}
    readers: dict[str, Callable[[Node, str], Any]] = {
        "sender": r.sender,
        "timezone": r.timezone,
        "database": lambda n, k: _database(r, n, k, base),
        "delivery": lambda n, k: r.choice(n, k, ("outbox", "smtp")),
        "outbox": lambda n, k: r.path(n, k, base, kind="new folder"),
        # password_env is checked against env only when mail really goes out by SMTP
        "smtp": lambda n, k: _smtp(r, n, k, base,
                                   env if values.get("delivery") == "smtp" else None),
        "feed": lambda n, k: _feed(r, n, k, base),
        "feeds": lambda n, k: _feeds(r, n, k, base),
        "templates": lambda n, k: r.path(n, k, base, kind="folder"),
        "summary_chars": r.integer,
        "max_email_bytes": r.integer,
        "catch_up": r.duration,
        "retry_for": r.duration,
        "unsubscribe_url": lambda n, k: r.url(n, k, schemes=("https",)),
        "unsubscribe_secret_env": r.env_name,
        "list_id": r.list_id,
        "manage_url": lambda n, k: r.url(n, k, schemes=("https", "http")),
        "base_url": lambda n, k: _base_url(r, n, k),
        "archive_for": r.duration,
        "dkim": lambda n, k: read_dkim(r, n, k, base),
        "queue": lambda n, k: _queue(r, n, k),
        "queue_password_env": r.env_name,
    }
    # delivery first: the smtp reader needs it (problems are sorted by line in the end)
    for name, found in sorted(entries.items(), key=lambda item: item[0] != "delivery"):
        if is_null(found.node) and defaults[name] is None:
            continue  # `templates:` left empty means "not set", like leaving it out
        value = readers[name](found.node, f"settings.{name}")
        if value is not None:
            values[name] = value
    values.setdefault("database", base / "digest.db")
    values.setdefault("outbox", base / "outbox")
    if "feed" in entries and "feeds" in entries:
        r.problem(entries["feeds"].line, "settings.feeds",
                  f"give either feed: (one feed) or feeds: (several), not both (feed: is at "
                  f"line {entries['feed'].line})")
    settings = Settings(**values)
    _cross_check(r, settings, entries, env)
    return settings


def _database(r: Reader, node: Node, key: str, base: Path) -> Path | PostgresDatabase | None:
    """A SQLite file (a path, relative to the config's folder) or a ``postgresql://`` URL."""
    value = r.text(node, key, what="a path or a postgresql:// URL")
    if value is None or "://" not in value:
        return None if value is None else r.path(node, key, base, kind="new file")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        r.bad(node, key, f"expected a SQLite file or a postgresql:// URL, got a "
              f"{parts.scheme}:// URL")
        return None
    if parts.password or "password=" in parts.query.lower():
        r.bad(node, key, "never put secrets in the YAML: remove the password from the URL; "
              "PostgreSQL clients read it from the PGPASSWORD environment variable or "
              "~/.pgpass")
        return None
    return PostgresDatabase("postgresql" + value[len(parts.scheme):])


def _queue(r: Reader, node: Node, key: str) -> str | None:
    value = r.url(node, key, schemes=("amqp", "amqps"))
    if value is not None and urlsplit(value).password:
        r.bad(node, key, _SECRET.format(what="broker password", key="queue_password_env",
                                        example="DIGEST_QUEUE_PASSWORD"))
        return None
    return value


def _cross_check(r: Reader, settings: Settings, entries: dict[str, Entry],
                 env: Mapping[str, str]) -> None:
    """Rules between keys: smtp delivery needs an smtp server, signed unsubscribe links need
    the name of the variable holding their key, queue workers need a shared ledger."""
    if settings.queue and not isinstance(settings.database, PostgresDatabase):
        r.problem(entries["queue"].line, "settings.queue",
                  "needs settings.database to be a postgresql:// URL (workers on other "
                  "machines share the ledger; a SQLite file cannot be shared)")
    secret_env = settings.queue_password_env
    if settings.queue and secret_env and not env.get(secret_env):
        r.problem(entries["queue_password_env"].line, "settings.queue_password_env",
                  f"environment variable {secret_env} is not set (the password of the "
                  "settings.queue broker)")
    if settings.delivery == "smtp" and "delivery" in entries:
        if "smtp" not in entries or is_null(entries["smtp"].node):
            r.problem(entries["delivery"].line, "settings.smtp",
                      "missing (delivery is smtp; give at least smtp: {host: ...})")
    if settings.dkim is not None:
        problem = check_alignment(settings.dkim, settings.sender.rpartition("<")[2].rstrip("> "))
        if problem is not None:
            r.problem(entries["dkim"].line, "settings.dkim.domain", problem)
    signed = "base_url" if settings.base_url else "unsubscribe_url" \
        if settings.unsubscribe_url else None
    if settings.base_url and settings.unsubscribe_url:
        r.problem(entries["unsubscribe_url"].line, "settings.unsubscribe_url",
                  "remove it: with base_url set, digest serve answers the one-click unsubscribe "
                  "itself (at base_url/u/<token>)")
    if signed:
        secret = settings.unsubscribe_secret_env
        value = env.get(secret) if secret else None
        if not secret:
            r.problem(entries.get("unsubscribe_secret_env", entries[signed]).line,
                      "settings.unsubscribe_secret_env",
                      f"missing ({signed} is set; name the environment variable that "
                      "holds the key signing unsubscribe links)")
        elif not value:
            r.problem(entries["unsubscribe_secret_env"].line, "settings.unsubscribe_secret_env",
                      f"environment variable {secret} is not set "
                      f"(it signs the links of {signed})")
        elif len(value.encode("utf-8")) < MIN_SECRET_BYTES:
            # Never echo the value; its length is enough to act on.
            r.problem(entries["unsubscribe_secret_env"].line, "settings.unsubscribe_secret_env",
                      f"the secret in {secret} is {len(value.encode('utf-8'))} bytes; use at "
                      f"least {MIN_SECRET_BYTES} random bytes (e.g. the output of "
                      "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")


def _base_url(r: Reader, node: Node, key: str) -> str | None:
    """The https root ``digest serve`` answers at: a host and an optional path, nothing else."""
    value = r.url(node, key, schemes=("https",))
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.query or parts.fragment or "@" in parts.netloc or not parts.hostname:
        r.bad(node, key, f"expected https://host[/path] with no query, fragment or user, "
              f"got {value!r}")
        return None
    return value.rstrip("/")


def _smtp(r: Reader, node: Node, key: str, base: Path,
          env: Mapping[str, str] | None) -> SmtpSettings | None:
    """The smtp: block; with ``env`` (delivery is smtp) password_env must name a set
    variable."""
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
        "password_env": r.env_name,
        "ca_file": lambda n, k: r.path(n, k, base, kind="file"),
        "timeout": r.number,
        "data_timeout": r.number,
        "connections": r.integer,
        "max_per_second": lambda n, k: r.number(n, k, optional=True),
        "helo": lambda n, k: read_helo(r, n, k),
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
    if env is not None and smtp.password_env and not env.get(smtp.password_env):
        r.bad(entries["password_env"].node, f"{key}.password_env", f"environment variable "
              f"{smtp.password_env} is not set (delivery is smtp)")
    return smtp


def _feed(r: Reader, node: Node, key: str, base: Path) -> FeedSettings | None:
    entries = r.mapping(node, key, FEED_KEYS)
    if entries is None:
        return None
    before = len(r.problems)
    values: dict[str, Any] = {}
    source = entries.get("source")
    kind = r.choice(source.node, f"{key}.source", FEED_SOURCES) if source else "sample"
    if kind is None:
        return None
    values["source"] = kind
    rxiv = kind in ("biorxiv", "medrxiv")
    readers: dict[str, Callable[[Node, str], Any]] = {
        "path": lambda n, k: r.path(n, k, base, kind="file"),
        "categories": (lambda n, k: r.subjects(n, k, BIORXIV_SUBJECTS if kind == "biorxiv"
                                               else None, kind)) if rxiv else r.categories,
        "limit": r.integer,
        "timeout": r.number,
        "name": lambda n, k: _feed_name(r, n, k),
        "cross": r.boolean,
        "revisions": r.boolean,
    }
    only = {"cross": ("arxiv_rss",), "revisions": ("biorxiv", "medrxiv"), "path": ("file",)}
    for name, found in entries.items():
        if name == "source":
            continue
        if name in only and kind not in only[name]:
            r.bad(found.node, f"{key}.{name}", f"only for source: {' or '.join(only[name])} "
                  f"(this feed is source: {kind})")
            continue
        value = readers[name](found.node, f"{key}.{name}")
        if value is not None:
            values[name] = value
    if len(r.problems) > before:
        return None
    if rxiv:
        values.setdefault("categories", ())  # every subject
    if kind in LISTINGS:  # a day's whole listing: arXiv RSS caps one answer at 2000 items
        values.setdefault("limit", LISTING_LIMIT)
    feed = FeedSettings(**values)
    if feed.source == "file" and feed.path is None:
        r.bad(node, f"{key}.path", "missing (source: file reads papers from this file)")
    if feed.source in ("arxiv", "arxiv_rss") and "categories" in entries:
        _arxiv_listing_categories(r, entries["categories"].node, f"{key}.categories",
                                  feed.categories)
    if feed.source in ("arxiv", "arxiv_rss") and not feed.categories:
        r.bad(entries["categories"].node, f"{key}.categories",
              f"expected at least one arXiv category for source: {feed.source}, got an empty "
              "list")
    return feed


def _arxiv_listing_categories(r: Reader, node: Node, key: str,
                              categories: tuple[str, ...]) -> None:
    """A feed asks arXiv for these: each must be a real archive, its subject class cased as
    arXiv spells it (a subscriber's filter is case-insensitive; a request is not)."""
    for index, category in enumerate(categories):
        where = node.value[index] if isinstance(node, SequenceNode) else node
        archive, dot, subject = category.partition(".")
        if archive not in ARXIV_ARCHIVES:
            r.bad(where, f"{key}[{index}]", f"unknown arXiv archive {archive!r} in "
                  f"{category!r}{suggest(archive, ARXIV_ARCHIVES)}")
        elif dot and archive in _UPPER_SUBJECTS and subject != subject.upper():
            r.bad(where, f"{key}[{index}]", f"arXiv spells it {archive}.{subject.upper()}, "
                  f"got {category!r} (arXiv answers a wrongly cased category with nothing)")


def _feed_name(r: Reader, node: Node, key: str) -> str | None:
    name = r.text(node, key, what="a feed name")
    if name is not None and not _FEED_NAME.fullmatch(name):
        r.bad(node, key, f"expected a short name of letters, digits, - and _ (e.g. biorxiv or "
              f"ml-rss), got {name!r}")
        return None
    return name


def _feeds(r: Reader, node: Node, key: str, base: Path) -> tuple[FeedSettings, ...] | None:
    """``feeds:``: a list of feed mappings, each with its own name (default: its source)."""
    items = r.sequence(node, key, "a list of feeds (each a mapping with source:)")
    if items is None:
        return None
    if not items:
        r.bad(node, key, "expected at least one feed, got an empty list")
        return None
    feeds: list[FeedSettings] = []
    seen: dict[str, int] = {}
    ok = True
    for index, item in enumerate(items):
        feed = _feed(r, item, f"{key}[{index}]", base)
        if feed is None:
            ok = False
            continue
        line = int(item.start_mark.line) + 1
        if feed.label in seen:
            r.bad(item, f"{key}[{index}].name", f"duplicate feed name {feed.label!r} (first at "
                  f"line {seen[feed.label]}); give each feed its own name:")
            ok = False
        seen.setdefault(feed.label, line)
        feeds.append(feed)
    return tuple(feeds) if ok else None


# --------------------------------------------------------------------------- subscribers


class _Keep:
    """Where a streamed file's subscribers go (``kept``: a list, or the spill file), each read
    from its parser events when it is a plain entry (``PlainEntries``), else from its node."""

    def __init__(self, people: _People, kept: list[Subscriber] | SpillWriter) -> None:
        self.people = people
        self.kept = kept

    def from_events(self, events: list[Any], index: int) -> bool:
        found = self.people.plain.subscriber(events, index)
        if found is None:
            return False
        self.kept.append(found)
        return True

    def from_node(self, node: Node, index: int) -> None:
        found = self.people.subscriber(node, index)
        if found is not None:
            self.kept.append(found)


class _People:
    """Reads the ``subscribers:`` list. The key -> reader tables are built once per file,
    not once per subscriber: a 10,000-subscriber file would otherwise make 160k closures."""

    def __init__(self, r: Reader, settings: Settings, *, share: bool = True) -> None:
        self.r = r
        self.settings = settings
        self.share = share
        self.seen: dict[str, tuple[int, int]] = {}  # case-folded address -> (index, line)
        self.shared: dict[object, Any] = {}
        upvotes: Callable[[Node, str], int | None] = \
            lambda n, k: None if is_null(n) else r.integer(n, k, minimum=0)
        self.subscriber_readers: dict[str, Callable[[Node, str], Any]] = {
            "email": r.email,
            "name": lambda n, k: r.text(n, k, optional=True),
            "timezone": r.timezone,
            "schedule": r.schedule,
            "max_papers": r.integer,
            "topics": self.topics,
            "categories": r.categories,
            "authors": r.strings,
            "min_upvotes": upvotes,
            "feeds": self.feeds,
        }
        # None: settings.feeds has problems of its own, so names cannot be checked against it
        # (the feeds are broken: do not also blame every subscriber)
        self.feed_names: tuple[str, ...] | None = None if any(
            p.key.startswith("settings.feed") for p in r.problems) else tuple(
            f.label for f in settings.feed_list)
        self.topic_readers: dict[str, Callable[[Node, str], Any]] = {
            "name": lambda n, k: r.text(n, k, what="a topic name"),
            "include": r.terms,
            "require": r.terms,
            "exclude": r.terms,
            "categories": r.categories,
            "authors": r.strings,
            "min_upvotes": upvotes,
            "expand": r.flag,
            "passing_mentions": r.flag,
            "about": lambda n, k: r.text(n, k, what="one sentence", optional=True),
            "like": lambda n, k: r.strings(n, k, what="a list of arXiv ids",
                                           item="an arXiv id"),
        }
        self.plain = PlainEntries(
            {"timezone": settings.timezone, "schedule": DEFAULT_SCHEDULE,
             "max_papers": DEFAULT_MAX_PAPERS, "name": None}, self.feed_names, self.seen,
            self.shared if share else None, subscriber_keys=SUBSCRIBER_KEYS,
            topic_keys=TOPIC_KEYS)

    def all(self, node: Node) -> tuple[Subscriber, ...]:
        items = self.r.sequence(node, "subscribers", "a list of subscribers")
        if items is None:
            return ()
        found = (self.subscriber(item, index) for index, item in enumerate(items))
        return tuple(s for s in found if s is not None)

    def subscriber(self, node: Node, index: int) -> Subscriber | None:
        r = self.r
        key = f"subscribers[{index}]"
        entries = r.mapping(node, key, SUBSCRIBER_KEYS, required=("email", "topics"),
                            what="a subscriber (a mapping with email: and topics:)")
        if entries is None:
            return None
        before = len(r.problems)
        values: dict[str, Any] = {"timezone": self.settings.timezone,
                                  "schedule": DEFAULT_SCHEDULE, "max_papers": DEFAULT_MAX_PAPERS,
                                  "name": None, "line": int(node.start_mark.line) + 1}
        for name, found in entries.items():
            value = self.subscriber_readers[name](found.node, f"{key}.{name}")
            if value is not None:
                values[name] = value
        email = values.get("email")
        if email is not None:
            folded = email.casefold()
            if folded in self.seen:
                first, line = self.seen[folded]
                r.bad(entries["email"].node, f"{key}.email", f"duplicate subscriber {email!r} "
                      f"(first at line {line}, subscribers[{first}]); addresses are compared "
                      "ignoring case")
            else:
                self.seen[folded] = (index, entries["email"].line)
        if len(r.problems) > before or "email" not in values or "topics" not in values:
            return None
        # Thousands of subscribers share a few zones, schedules and topic lists: keep one copy
        # of each (equal frozen values), so a big file costs memory per subscriber, not per
        # topic term.
        for name in ("timezone", "schedule", "topics", "categories", "authors"):
            if self.share and name in values:
                values[name] = self.shared.setdefault(values[name], values[name])
        return Subscriber(**values)

    def feeds(self, node: Node, key: str) -> tuple[str, ...] | None:
        """The names of the feeds this subscriber reads; each must be a configured feed."""
        names = self.r.strings(node, key, what="a list of feed names", item="a feed name")
        if names is None:
            return None
        ok = True
        known = self.feed_names
        for index, name in enumerate(names):
            if known is not None and name not in known:
                where = node.value[index] if isinstance(node, SequenceNode) else node
                self.r.bad(where, f"{key}[{index}]", f"unknown feed {name!r}"
                           f"{suggest(name, known)}; the feeds are: "
                           f"{', '.join(known)} (settings.feeds names them)")
                ok = False
        return tuple(dict.fromkeys(names)) if ok else None

    def topics(self, node: Node, key: str) -> tuple[Topic, ...] | None:
        items = self.r.sequence(node, key, "a list of topics")
        if items is None:
            return None
        if not items:
            self.r.bad(node, key, "expected at least one topic, got an empty list")
            return None
        topics: list[Topic] = []
        names: dict[str, int] = {}  # case-folded topic name -> line, to catch duplicates
        ok = True
        for index, item in enumerate(items):
            tkey = f"{key}[{index}]"
            topic = self.topic(item, tkey)
            if topic is None:
                ok = False
                continue
            folded = topic.name.casefold()
            if folded in names:
                self.r.bad(item, tkey, f"duplicate topic name {topic.name!r} (first at line "
                           f"{names[folded]}); give each topic its own name:")
                ok = False
            names.setdefault(folded, int(item.start_mark.line) + 1)
            topics.append(topic)
        return tuple(topics) if ok else None

    def topic(self, node: Node, key: str) -> Topic | None:
        r = self.r
        if not isinstance(node, MappingNode):
            term = r.term(node, key, what="a topic (a search term, or a mapping with include:)")
            return Topic(name=term, include=(term,)) if term is not None else None
        before = len(r.problems)
        entries = r.mapping(node, key, TOPIC_KEYS)
        if entries is None:
            return None
        values: dict[str, Any] = {}
        for name, found in entries.items():
            value = self.topic_readers[name](found.node, f"{key}.{name}")
            if value is not None:
                values[name] = value
        if len(r.problems) > before:
            return None
        terms = values.get("include", ()) + values.get("require", ())
        if not terms:
            r.bad(node, key, "needs at least one include or require term")
            return None
        # A required term that is also excluded makes a topic that can never match.
        excluded = {term.casefold() for term in values.get("exclude", ())}
        clash = [term for term in values.get("require", ()) if term.casefold() in excluded]
        clash += [term for term in values.get("include", ()) if term.casefold() in excluded]
        if clash:
            r.bad(entries["exclude"].node, f"{key}.exclude", f"{clash[0]!r} is also in "
                  f"{'require' if clash[0] in values.get('require', ()) else 'include'}; "
                  "a paper matching it would be excluded at once")
            return None
        values.setdefault("name", terms[0])
        return Topic(**values)
