"""The plain typed data that flows between stages.

Owns: every value type passed from one stage to the next (papers, config, picks, summaries,
digests, rendered emails, deliveries). Imports nothing from the project: every stage imports
this module, never each other. All datetimes are timezone-aware; all collections are tuples so
values stay frozen and hashable.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

FeedSource = Literal["sample", "huggingface", "arxiv", "arxiv_rss", "biorxiv", "medrxiv", "file"]
FeedState = Literal["ok", "empty", "down"]
DeliveryMode = Literal["outbox", "smtp"]
Security = Literal["starttls", "tls", "none"]
DkimAlgorithm = Literal["rsa-sha256", "ed25519-sha256"]
Where = Literal["title", "abstract"]
# "uncertain": the server may have accepted it (no reply to the final "." twice, or a crash
# mid-send after a re-send): held for the admin, never sent again automatically.
DeliveryState = Literal["sending", "sent", "deferred", "failed", "uncertain"]


# --------------------------------------------------------------------------- feeds

# bioRxiv's 27 subject collections, as the details API spells them in ``category``. Its own
# ``?category=`` filter silently falls back to every subject for a name it does not know, so the
# config checks names against this list (medRxiv's ~50 are checked for shape only).
BIORXIV_SUBJECTS = frozenset({
    "animal behavior and cognition", "biochemistry", "bioengineering", "bioinformatics",
    "biophysics", "cancer biology", "cell biology", "clinical trials", "developmental biology",
    "ecology", "epidemiology", "evolutionary biology", "genetics", "genomics", "immunology",
    "microbiology", "molecular biology", "neuroscience", "paleontology", "pathology",
    "pharmacology and toxicology", "physiology", "plant biology",
    "scientific communication and education", "synthetic biology", "systems biology", "zoology"})


@dataclass(frozen=True)
class Paper:
    """One paper as read from any feed. Text is kept as the feed gave it (cleaning is the
    summarizer's job); ``id`` is the arXiv id without version where known, else a stable id
    derived from the normalized title."""

    id: str
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    url: str | None = None  # the paper's main page (arXiv abs page, else the feed's page)
    published: datetime | None = None  # arXiv publication time, UTC
    listed: date | None = None  # the daily list the paper appeared on (HF submittedOnDailyAt)
    categories: tuple[str, ...] = ()  # arXiv categories, primary first
    upvotes: int | None = None  # the feed's trending signal (HF upvotes)
    source: str = "file"  # "huggingface" | "arxiv" | "arxiv-rss" | "file" | "sample"
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None  # GitHub repository, when the feed knows it
    project_url: str | None = None
    ai_summary: str | None = None  # the feed's own one-line summary (HF ai_summary)
    ai_keywords: tuple[str, ...] = ()
    comments: int | None = None
    feeds: tuple[str, ...] = ()  # names of the configured feeds that listed it (settings.feeds)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Topic:
    """One topic filter. A paper matches when any ``include`` term matches (if any are given),
    every ``require`` term matches and no ``exclude`` term matches; the optional metadata
    filters (``categories``, ``authors``, ``min_upvotes``) must hold too."""

    name: str
    include: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    min_upvotes: int | None = None
    expand: bool = True  # also find the other spellings the vocabulary knows (False: as written)
    passing_mentions: bool = False  # True: one mention of one term in the abstract is a match
    about: str | None = None  # one sentence on the interest: re-ranks what the terms let through
    like: tuple[str, ...] = ()  # arXiv ids of papers liked: re-rank, and "you may also like"


@dataclass(frozen=True)
class Subscriber:
    email: str  # normalized address
    name: str | None
    timezone: str  # IANA name, already defaulted from settings
    schedule: str  # 5-field cron, as written
    max_papers: int
    topics: tuple[Topic, ...]
    # per-subscriber metadata filters, applied on top of every topic
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    min_upvotes: int | None = None
    line: int = 0  # line of this entry in the config file, for messages
    feeds: tuple[str, ...] = ()  # names of the feeds this subscriber reads; empty = all


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password_env: str | None = None  # the NAME of an environment variable, never the secret
    ca_file: Path | None = None
    timeout: float = 30.0  # seconds: connecting and each command
    # seconds for the reply to the final "." (RFC 5321 4.5.3.2: 10 minutes): a server may
    # take long to store the message, and giving up earlier makes the outcome unknown
    data_timeout: float = 600.0
    connections: int = 4
    max_per_second: float | None = None
    helo: str | None = None  # the EHLO/HELO name; None = this host's FQDN


@dataclass(frozen=True)
class DkimKey:
    """One DKIM signing key, read from ``path`` and checked by the config stage (RSA of at
    least 2048 bits as PEM; Ed25519 as the base64 32-byte seed)."""

    algorithm: DkimAlgorithm
    selector: str
    path: Path
    private_key: bytes = field(repr=False)  # never in logs or tracebacks


@dataclass(frozen=True)
class DkimSettings:
    """``settings.dkim``: every message is signed once per key (RSA, then the optional
    Ed25519) with ``d=domain``."""

    domain: str
    keys: tuple[DkimKey, ...]


@dataclass(frozen=True)
class FeedSettings:
    source: FeedSource = "sample"
    path: Path | None = None  # for source "file"
    # arXiv categories (sources arxiv, arxiv_rss) or bioRxiv/medRxiv subjects (empty = all)
    categories: tuple[str, ...] = ("cs.LG", "cs.CL", "cs.CV", "cs.AI")
    limit: int = 100  # at most this many papers (config default 2000 for arxiv_rss/biorxiv/medrxiv)
    timeout: float = 30.0
    name: str = ""  # how subscribers' feeds: and the reports name it; "" = the source's name
    cross: bool = False  # arxiv_rss: also the day's cross-lists from other archives
    revisions: bool = False  # biorxiv/medrxiv: also new versions of older preprints

    @property
    def label(self) -> str:
        return self.name or self.source


@dataclass(frozen=True)
class FeedReport:
    """How one feed did for one run: ``ok`` with its papers and the day they were listed,
    ``empty`` with why (weekend, holiday, not yet announced), or ``down`` with the error."""

    name: str
    source: str
    state: FeedState
    papers: int = 0
    day: date | None = None  # the listing day the papers come from (or that was asked for)
    reason: str = ""

    def __str__(self) -> str:
        if self.state == "ok":
            return f"{self.name}: {self.papers} papers ({self.day})"
        return f"{self.name}: {self.state} ({self.reason})" if self.reason else \
            f"{self.name}: {self.state}"


MIN_SECRET_BYTES = 32  # the shortest key settings.unsubscribe_secret_env may name


@dataclass(frozen=True)
class Settings:
    sender: str = "Paper Digest <digest@localhost>"
    timezone: str = "UTC"
    # a SQLite file (absolute after loading, relative to the config file) or PostgreSQL
    database: Path | PostgresDatabase = Path("digest.db")
    delivery: DeliveryMode = "outbox"
    outbox: Path = Path("outbox")  # absolute after loading
    smtp: SmtpSettings | None = None
    feed: FeedSettings = field(default_factory=FeedSettings)
    # several feeds, merged (settings.feeds:); empty = just ``feed``
    feeds: tuple[FeedSettings, ...] = ()
    templates: Path | None = None  # a folder that overrides the stock templates
    summary_chars: int = 350  # character budget for each paper's claims
    max_email_bytes: int = 90_000  # HTML budget (Gmail clips at ~102 KB)
    catch_up: timedelta = timedelta(hours=12)
    retry_for: timedelta = timedelta(days=2)
    unsubscribe_url: str | None = None  # https base URL for one-click unsubscribe
    unsubscribe_secret_env: str | None = None  # env var holding the HMAC key for tokens
    list_id: str = "paper-digest.localhost"
    manage_url: str | None = None  # where subscribers change their topics
    base_url: str | None = None  # https root of ``digest serve`` (unsubscribe, preferences, archive)
    archive_for: timedelta = timedelta(days=180)  # sent editions kept for the web view (base_url)
    dkim: DkimSettings | None = None  # sign every message (settings.dkim)

    queue: str | None = None  # amqp:// broker URL: delivery runs as tasks on `digest worker`s
    queue_password_env: str | None = None  # env var holding the broker password

    @property
    def feed_list(self) -> tuple[FeedSettings, ...]:
        """The configured feeds: ``feeds`` when given, else the single ``feed``."""
        return self.feeds or (self.feed,)


@dataclass(frozen=True)
class PostgresDatabase:
    """``settings.database`` given as a ``postgresql://`` URL: the shared ledger that queue
    workers on many machines need. Never holds a password (libpq reads ``PGPASSWORD`` or
    ``~/.pgpass``)."""

    url: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Config:
    path: Path  # the YAML file it came from (absolute)
    settings: Settings
    subscribers: tuple[Subscriber, ...]

    def subscriber(self, email: str) -> Subscriber | None:
        wanted = email.strip().lower()
        return next((s for s in self.subscribers if s.email.lower() == wanted), None)


@dataclass(frozen=True)
class StreamedConfig:
    """A ``Config`` for a run over every subscriber (``digest send``), from
    ``config.open_config``: on a big file the subscribers are read back one at a time from a
    temporary file (a ``Sequence``, not a tuple), so they are never all in memory."""

    path: Path
    settings: Settings
    subscribers: Sequence[Subscriber]
    # how many subscribers have each (timezone, schedule), counted as they were read: which
    # are due at a time is then known without reading a spilled list back (None: not counted)
    schedules: Mapping[tuple[str, str], int] | None = None


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chose on the preferences page (``digest serve``), kept in the ledger
    and laid over their YAML entry, which stays the admin's: ``None`` means "as the YAML says"."""

    email: str  # lower-cased address
    paused_until: date | None = None  # no edition dated before this day
    max_papers: int | None = None
    updated: datetime | None = None

    def paused_on(self, edition: date) -> bool:
        return self.paused_until is not None and edition < self.paused_until

    def apply(self, subscriber: Subscriber) -> Subscriber:
        """``subscriber`` with these choices laid over it."""
        if self.max_papers is None or self.max_papers == subscriber.max_papers:
            return subscriber
        return replace(subscriber, max_papers=self.max_papers)


# --------------------------------------------------------------------------- selector


@dataclass(frozen=True)
class Reason:
    topic: str
    term: str  # the spelling found: the topic's term, or another one the vocabulary gave it
    where: Where
    # why another spelling counts: "a kind of GNN", "same as RLHF"; "like" for a "you may
    # also like" paper, whose ``term`` is the title of the liked paper it is close to
    via: str = ""

    def __str__(self) -> str:
        if self.via == "like":
            return f"close to your paper «{self.term}»"
        if self.via:
            return f"matched: {self.term} ({self.via}) in {self.where}"
        return f"matched: {self.term} in {self.where}"


class Rank(NamedTuple):
    """How well a paper matches, compared as a tuple (bigger ranks first; ties go to the
    paper listed first)."""

    title_terms: int  # distinct terms found in the title
    terms: int  # distinct terms found anywhere
    abstract_hits: int  # mentions in the abstract


@dataclass(frozen=True)
class Pick:
    paper: Paper
    topics: tuple[str, ...]  # names of the topics it matched, best first
    reasons: tuple[Reason, ...]
    rank: Rank


@dataclass(frozen=True)
class Selection:
    """What one subscriber would get now: ``picks`` in rank order (at most ``max_papers``),
    ``more`` how many further matches ``max_papers`` dropped, ``cut`` those matches (built only
    when asked for: ``Selector.select(..., with_cut=True)``, ``plan(..., build_cuts=True)``),
    ``skipped_reason`` set when nothing is new."""

    subscriber: Subscriber
    picks: tuple[Pick, ...]
    more: int = 0
    cut: tuple[Pick, ...] = ()
    skipped_reason: str | None = None
    # "you may also like": at most 3 papers no topic term matched, very close to a paper
    # the subscriber liked (a topic's ``like``, or ``digest feedback --more``)
    also: tuple[Pick, ...] = ()


@dataclass(frozen=True)
class Feedback:
    """What one subscriber told us about papers (``digest feedback``): liked papers join
    every topic's ``like``; papers close to a disliked one rank lower. Papers, not ids, so a
    paper from an earlier day can still be compared with today's."""

    more: tuple[Paper, ...] = ()
    less: tuple[Paper, ...] = ()


# --------------------------------------------------------------------------- summarizer


@dataclass(frozen=True)
class Summary:
    paper_id: str
    title: str  # cleaned title
    headline: str  # the one-sentence headline claim
    results: tuple[str, ...] = ()  # up to two result claims with the evidence
    ai_summary: str | None = None  # the feed's own one-liner, cleaned, when it has one

    @property
    def claims(self) -> tuple[str, ...]:
        return (self.headline, *self.results) if self.headline else self.results


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class DigestItem:
    pick: Pick
    summary: Summary


@dataclass(frozen=True)
class Digest:
    """One subscriber's edition, ready to render."""

    subscriber: Subscriber
    edition: date  # the subscriber's local date of the send
    generated_at: datetime  # aware
    items: tuple[DigestItem, ...]
    more: int = 0  # matches beyond max_papers, mentioned in the email
    unsubscribe_url: str | None = None  # https one-click URL when configured
    unsubscribe_mailto: str | None = None
    manage_url: str | None = None
    view_url: str | None = None  # this edition in a browser ("View in browser"), with base_url
    preferences_url: str | None = None  # the subscriber's preferences page, with base_url
    publisher: str | None = None  # the sender's display name: the masthead and footer
    sender_address: str | None = None  # the From address, named in the footer
    archive_url: str | None = None  # the subscriber's past digests on digest serve, with base_url
    also: tuple[DigestItem, ...] = ()  # "you may also like" (Selection.also), after the cards
    more_url: str | None = None  # digest serve's page of the matches left out, with base_url


@dataclass(frozen=True)
class LeftOut:
    """A match an edition left out (past ``max_papers``, or over the size budget), as the "N
    more matched" page of ``digest serve`` shows it: frozen when the message is built, so the
    page shows what the email promised even after the feed moves on."""

    paper_id: str
    title: str  # cleaned, as a card shows it
    authors: str  # "A, B, C et al."
    url: str | None  # the title link (http/https only)
    tags: tuple[str, ...] = ()  # "Quantization · in title", one per matched topic


# --------------------------------------------------------------------------- renderer


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    papers: tuple[str, ...]  # ids of the papers actually in the email (after the size budget)
    dropped: int = 0  # papers left out to keep the HTML under the budget


# --------------------------------------------------------------------------- delivery


class Outcome(enum.Enum):
    """What one delivery call did (the ledger state says where the row stands)."""

    SENT = "sent"
    POSSIBLE_DUPLICATE = "possible duplicate"  # sent again after a crash mid-send
    DEFERRED = "deferred"
    FAILED = "failed"
    ALREADY_SENT = "already sent"
    NOTHING_NEW = "nothing new"
    SUPPRESSED = "suppressed"
    PAUSED = "paused"  # on the preferences page of digest serve
    FAILED_BEFORE = "failed earlier, not retried"
    WOULD_SEND = "dry run"
    UNCERTAIN = "uncertain"  # held: the server may have accepted it; the admin resolves it
    QUEUED = "queued for the workers"  # settings.queue: a worker delivers it


_STATE_OUTCOME = {"sent": Outcome.SENT, "deferred": Outcome.DEFERRED, "failed": Outcome.FAILED,
                  "sending": Outcome.DEFERRED, "uncertain": Outcome.UNCERTAIN}


@dataclass(frozen=True)
class Delivery:
    """The outcome of one (subscriber, edition) send, as recorded in the ledger."""

    email: str
    edition: date
    state: DeliveryState | Literal["skipped"]
    message_id: str | None = None
    papers: tuple[str, ...] = ()
    code: int | None = None  # last SMTP reply code
    error: str | None = None
    detail: str | None = None  # prose for people, e.g. "nothing new: no paper matches"
    outcome: Outcome | None = None  # what happened, for counting; derived from state if None

    def __post_init__(self) -> None:
        if self.outcome is None:
            derived = _STATE_OUTCOME.get(self.state)
            if derived is None:
                raise ValueError(f"a {self.state!r} delivery needs its outcome")
            object.__setattr__(self, "outcome", derived)
