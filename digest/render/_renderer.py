"""Turn a ``Digest`` into the subject, HTML and plain-text parts of one email.

Owns: the Jinja environments (stock templates plus a user override folder), the values templates
see (``Card`` views, shortened authors, http(s)-only links), the HTML size budget and the choice
between the compile-once fast path (``digest.render._shapes``) and a full compile. May import
``digest.models``, ``digest.errors``, ``digest.text`` (a cut pick's title is cleaned as a summary
cleans it), ``digest.render._shapes``, ``_memo``, ``_record``, ``_keyed`` (the subject
replayed by the values it reads) and ``_frame`` (the HTML frame run without its text), jinja2
and markupsafe; pure (reads template files only, through the Jinja loader).

Templates: ``digest.mjml`` (Jinja producing MJML, extends ``_base.mjml``; each paper is
``_paper.mjml``), ``digest.txt`` (plain text, not escaped) and ``subject.txt``. A user folder
(``settings.templates``) is searched first; an override may ``{% extends "stock/digest.mjml" %}``
and replace one block.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from operator import attrgetter
from pathlib import Path
from typing import Any, Generic, TypeVar, overload
from urllib.parse import quote, urlsplit

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2 import (
    TemplateError as JinjaTemplateError,
)
from jinja2.runtime import new_context
from markupsafe import Markup

from digest.errors import TemplateError
from digest.models import Digest, DigestItem, LeftOut, Paper, Pick, Reason, RenderedEmail, Where
from digest.render._frame import Frame, values_template
from digest.render._keyed import KeyedOutputs
from digest.render._memo import FastEnvironment, IncludeGenerator, RecordingGenerator
from digest.render._record import (
    CARD_MARK,
    CARD_MARKUP,
    clean_value,
    compile_mjml,
    guard_filter,
    record_finalize,
    render_recorded,
)
from digest.render._shapes import ShapeCache, Shaper
from digest.text import clean_text

HTML_TEMPLATE = "digest.mjml"
TEXT_TEMPLATE = "digest.txt"
SUBJECT_TEMPLATE = "subject.txt"
_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})$")
_URL_ASCII = re.compile(r"[\x21-\x5b\x5d-\x7e]*")
_URL_SAFE = "!#$%&()*+,-./:;=?@[]^_{|}~"


def stock_templates() -> Path:
    """The stock template folder: inside the installed package (the wheel maps the top-level
    ``templates/`` to ``digest/templates``), else the source tree's ``templates/``."""
    packaged = Path(str(resources.files("digest"))) / "templates"
    if (packaged / HTML_TEMPLATE).is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


# --------------------------------------------------------------------------- template values


def http_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (``javascript:`` and friends)."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(c in url for c in "\x00\r\n\t \"'<>`"):
        return None
    # IRIs and stray backslashes become percent-escapes: a URL is ASCII on the wire
    return quote(url, safe=_URL_SAFE) if not _URL_ASCII.fullmatch(url) else url


def short_authors(authors: Sequence[str], keep: int = 3) -> str:
    """``A, B, C et al.`` past ``keep`` names; all of them otherwise."""
    names = [a.strip() for a in authors if a.strip()]
    if len(names) > keep:
        return ", ".join(names[:keep]) + " et al."
    return ", ".join(names)


@functools.lru_cache(maxsize=2048)  # the same claims recur in many subscribers' emails
def wrap(text: str, width: int = 72, indent: int = 0) -> str:
    """Greedy word wrap for the text part; continuation lines indented by ``indent`` spaces.
    Words longer than ``width`` (URLs) stay whole. Much cheaper than ``textwrap``: each line is
    the longest run of whole words within ``width`` (or one longer word), found by ``rfind``
    in the words joined by single spaces, not by a Python step per word."""
    rest = " ".join(text.split())
    lines: list[str] = []
    while len(rest) > width:
        cut = rest.rfind(" ", 0, width + 1)
        if cut < 0:  # a first word longer than the line: alone on it
            cut = rest.find(" ")
            if cut < 0:
                break
        lines.append(rest[:cut])
        rest = rest[cut + 1:]
    lines.append(rest)
    return ("\n" + " " * indent).join(lines)


def link_line(label: str, url: str, indent: int = 0, width: int = 78) -> str:
    """``label url`` on one line of the text part when it fits ``width``, else the label and
    then the URL alone on the next line (a URL is never wrapped, and nothing is glued to it)."""
    pad = " " * indent
    if len(pad) + len(label) + 1 + len(url) <= width:
        return f"{pad}{label} {url}"
    return f"{pad}{label}\n{pad if len(pad) + len(url) <= width else ''}{url}"


def day(value: date) -> str:
    """``Tue 25 Nov`` (C-locale names, so emails do not depend on the server's locale)."""
    return f"{_DAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]}"


def long_date(value: date) -> str:
    return f"{_LONG_DAYS[value.weekday()]} {value.day} {_LONG_MONTHS[value.month - 1]} {value.year}"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LONG_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")
_MONTHS = tuple(m[:3] for m in _LONG_MONTHS)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class _PaperView:
    """A card's per-paper values, worked out once per paper instead of once per email."""

    url: str | None
    links: tuple[Link, ...]
    authors: str


def _view(paper: Paper) -> _PaperView:
    arxiv = f"https://arxiv.org/abs/{paper.id}" if _ARXIV_ID.match(paper.id) else None
    url = http_url(paper.url) or arxiv or http_url(paper.hf_url) or http_url(paper.pdf_url)
    links: list[Link] = []
    seen = {url}
    for label, raw in (("HF page", paper.hf_url), ("PDF", paper.pdf_url),
                       ("Code", paper.code_url), ("Project", paper.project_url)):
        link = http_url(raw)
        if link and link not in seen:
            seen.add(link)
            links.append(Link(label, link))
    return _PaperView(url, tuple(links), short_authors(paper.authors))


# One view per distinct paper (and below, per distinct reasons tuple), shared by every email of
# a run; bounded, since a daemon sees new papers every day.
_paper_view = functools.lru_cache(maxsize=2048)(_view)


@dataclass(frozen=True)
class _ReasonView:
    """A pick's reasons as the templates show them, worked out once per pick."""

    texts: tuple[str, ...]  # "matched: x in title", one per distinct reason
    tags: tuple[str, ...]  # "Quantization · in title", one per topic
    matched: str  # "matched: llm, agents in title; diffusion in abstract"


def _term_key(term: str) -> str:
    """Terms a reader would call the same: case and a plural ``s`` ignored (LLM, LLMs)."""
    folded = term.casefold().rstrip("*")
    return folded[:-1] if len(folded) > 3 and folded.endswith("s") else folded


@functools.lru_cache(maxsize=2048)
def _reason_view(reasons: tuple[Reason, ...]) -> _ReasonView:
    if reasons and all(r.via == "like" for r in reasons):  # a "you may also like" paper
        texts = tuple(dict.fromkeys(str(r) for r in reasons))
        return _ReasonView(texts=texts, tags=texts, matched=texts[0])
    best: dict[str, Where] = {}  # topic -> where its best hit is (title beats abstract)
    terms: dict[str, tuple[str, Where]] = {}  # term key -> (term as first written, where)
    for r in reasons:
        if best.get(r.topic) != "title":
            best[r.topic] = r.where
        key = _term_key(r.term)
        if key not in terms or (r.where == "title" and terms[key][1] != "title"):
            terms[key] = (terms[key][0] if key in terms else r.term, r.where)
    groups = [(where, [t for t, w in terms.values() if w == where])
              for where in ("title", "abstract")]
    matched = "; ".join(f"{', '.join(found)} in {where}" for where, found in groups if found)
    return _ReasonView(texts=tuple(dict.fromkeys(str(r) for r in reasons)),
                       tags=tuple(f"{topic} \u00b7 in {where}" for topic, where in best.items()),
                       matched=f"matched: {matched}" if matched else "")


class _Once(Generic[_T]):
    """``functools.cached_property`` without its lock: Python 3.11's takes one on every
    first read, and each card's values are read for the first time in every email."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func, self.name = func, func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Once[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> _T | _Once[_T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)  # later reads find it there
        return value


@dataclass(frozen=True, init=False)
class Card:
    """What a paper card shows; built from a ``DigestItem``, every link already http(s)-only.
    ``rank`` is the card's number in the email; ``section`` is the topic heading to show
    before it (set on the first card of each topic when the email has several)."""

    item: DigestItem
    rank: int
    section: str | None = None
    # the pick's reasons as shown: read by every card's memo key, in both parts
    _reason: _ReasonView = field(init=False, repr=False, compare=False)

    def __init__(self, item: DigestItem, rank: int, section: str | None = None) -> None:
        # the fields written straight into the instance: a frozen dataclass's own __init__
        # calls object.__setattr__ per field, three times the cost (a context makes ~6 cards)
        values = self.__dict__
        values["item"], values["rank"], values["section"] = item, rank, section
        values["_reason"] = _reason_view(item.pick.reasons)

    @property
    def paper_id(self) -> str:
        return self.item.pick.paper.id

    @property
    def title(self) -> str:
        return self.item.summary.title or self.item.pick.paper.title

    @property
    def url(self) -> str | None:
        """The title link: the paper's page, else its arXiv abs page, else the HF page."""
        return self._paper.url

    @property
    def links(self) -> tuple[Link, ...]:
        """The secondary links (HF page, PDF, code, project), deduplicated against the title."""
        return self._paper.links

    @property
    def authors(self) -> str:
        return self._paper.authors

    @property
    def claims(self) -> tuple[str, ...]:
        return self.item.summary.claims

    # Worked out once per card (its per-subscriber values key the card memos of both parts)
    @_Once
    def _paper(self) -> _PaperView:
        return _paper_view(self.item.pick.paper)

    @_Once
    def reasons(self) -> tuple[str, ...]:
        """Every distinct reason, as "matched: x in title"."""
        return self._reason.texts

    @_Once
    def tags(self) -> tuple[str, ...]:
        """One short tag per matched topic: "Quantization · in title"."""
        return self._reason.tags

    @_Once
    def matched(self) -> str:
        """The reasons on one line, each term once (singular and plural are one term):
        "matched: llm, agents in title; diffusion in abstract"."""
        return self._reason.matched

    @property
    def topics(self) -> tuple[str, ...]:
        return self.item.pick.topics

    @property
    def upvotes(self) -> int | None:
        return self.item.pick.paper.upvotes


def left_out(items: Sequence[DigestItem], kept: Collection[str], cut: Sequence[Pick]
             ) -> tuple[LeftOut, ...]:
    """The matches an email left out, as its "N more matched" page lists them: the items the
    size budget dropped (not in ``kept``, the rendered papers), then ``cut`` (the picks past
    ``max_papers``, ``Selection.cut``), in rank order, with the card's title link, authors and
    tags. Titles of cut picks are cleaned as a summary cleans them (they have no summary)."""
    out = [LeftOut(paper_id=card.paper_id, title=card.title, authors=card.authors,
                   url=card.url, tags=card.tags)
           for card in (Card(item, 0) for item in items) if card.paper_id not in kept]
    for pick in cut:
        view = _paper_view(pick.paper)
        out.append(LeftOut(paper_id=pick.paper.id, title=clean_text(pick.paper.title),
                           authors=view.authors, url=view.url,
                           tags=_reason_view(pick.reasons).tags))
    return tuple(out)


# What a memoized card partial may read: per paper (the memo key names the paper and its summary
# by identity) or per subscriber (their values join the key).
_PER_PAPER = frozenset({"paper_id", "title", "url", "links", "authors", "claims", "upvotes"})
_PER_CARD = frozenset({"reasons", "tags", "matched", "topics", "rank", "section"})
_CARD_READS = _PER_PAPER | _PER_CARD


@functools.lru_cache(maxsize=64)  # one entry per memoized partial
def _per_card(reads: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A getter of the per-subscriber values among ``reads``, as a tuple (C-speed)."""
    names = tuple(name for name in reads if name in _PER_CARD)
    if not names:
        return lambda card: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda card: (one(card),)
    return attrgetter(*names)


def _card_key(reads: tuple[str, ...]
              ) -> Callable[[Any], tuple[tuple[Any, ...], tuple[Any, ...]] | None]:
    """The part memo's key for a partial reading ``reads``, as a function of the card: the
    paper and summary by identity (kept alive by the memo so an id is never reused while its
    entry lives) plus the per-subscriber values the partial reads."""
    per_card = _per_card(reads)

    def key(card: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        if type(card) is not Card:
            return None
        anchors = _ANCHORS(card)
        return (id(anchors[0]), id(anchors[1]), *per_card(card)), anchors
    return key


_ANCHORS = attrgetter("item.pick.paper", "item.summary")  # (paper, summary): one C call
_PAPER_ID = attrgetter("item.pick.paper.id")  # Card.paper_id, without a property call


def _topics(cards: Sequence[Card]) -> tuple[str, ...]:
    """Topic names by how many cards they lead, ties by rank: the subject's "on X, Y"."""
    count: dict[str, int] = {}
    for card in cards:
        topics = card.item.pick.topics  # Card.topics, without a property call per read
        if topics:
            count[topics[0]] = count.get(topics[0], 0) + 1
    if len(count) < 2:
        return tuple(count)
    return tuple(sorted(count, key=lambda t: -count[t]))  # sorted() is stable: rank breaks ties


def _cards(items: Sequence[DigestItem]) -> tuple[Card, ...]:
    """Numbered cards; with several lead topics, grouped under one heading per topic (topics
    in the order of their best card, cards by rank within), numbered in reading order."""
    lead = [item.pick.topics[0] if item.pick.topics else "" for item in items]
    order = {topic: n for n, topic in enumerate(dict.fromkeys(lead))}
    if len(order) < 2:
        return tuple([Card(item, rank) for rank, item in enumerate(items, 1)])
    shown = sorted(range(len(items)), key=lambda i: order[lead[i]])  # stable: rank within
    return tuple([
        Card(items[i], n, section=(lead[i] or "More") if n == 1 or lead[shown[n - 2]] != lead[i]
             else None)
        for n, i in enumerate(shown, 1)])


DEFAULT_PUBLISHER = "Paper Digest"
ALSO = "You may also like"  # the heading of Digest.also's cards


def context(digest: Digest, keep: int | None = None) -> dict[str, Any]:
    """Everything the templates see. ``keep`` cuts the cards to the best ``keep`` (the items,
    then the "you may also like" ones)."""
    items = digest.items if keep is None else digest.items[:keep]
    cards = _cards(items)
    dropped = len(digest.items) - len(cards)
    # "you may also like" after the cards, under their own heading; the first to go when
    # the email is too big (``keep`` counts them after the items)
    also = digest.also if keep is None else digest.also[:max(0, keep - len(digest.items))]
    if also:
        cards += tuple([Card(item, len(cards) + n, section=ALSO if n == 1 else None)
                        for n, item in enumerate(also, 1)])
    sub = digest.subscriber
    unsubscribe = http_url(digest.unsubscribe_url)
    if unsubscribe is None and digest.unsubscribe_mailto \
            and digest.unsubscribe_mailto.lower().startswith("mailto:"):
        unsubscribe = digest.unsubscribe_mailto
    topics = _topics(cards)
    return {
        "digest": digest,
        "subscriber": sub,
        "name": (sub.name or "").strip() or None,
        "edition": digest.edition,
        "cards": cards,
        "topics": topics,
        "all_topics": tuple([t.name for t in sub.topics]),
        "dropped": dropped,
        "more": digest.more + dropped,
        "archive_url": http_url(digest.archive_url),
        "more_url": http_url(digest.more_url),  # with base_url: the page listing the ``more``
        "preheader": cards[0].claims[0] if cards and cards[0].claims else
        (cards[0].title if cards else "No new papers matched your topics this time."),
        "title": f"Paper digest - {day(digest.edition)}",
        "publisher": (digest.publisher or "").strip() or DEFAULT_PUBLISHER,
        "sender_address": digest.sender_address,
        "unsubscribe_url": unsubscribe,
        "manage_url": http_url(digest.manage_url),
        "view_url": http_url(digest.view_url),  # with base_url: digest serve's pages
        "preferences_url": http_url(digest.preferences_url),
    }


# --------------------------------------------------------------------------- the renderer


_autoescape = functools.lru_cache(maxsize=64)(
    select_autoescape(("mjml", "html", "xml"), default_for_string=False))


class Renderer:
    """Renders digests with one template set. Build one per run and reuse it: compiled MJML
    shapes are cached on the instance (thread-safe)."""

    def __init__(self, templates_dir: Path | None = None, *, max_bytes: int = 90_000,
                 fast: bool = True) -> None:
        self.templates_dir = templates_dir
        self.max_bytes = max_bytes
        self.fast = fast
        stock = FileSystemLoader(stock_templates())
        # "stock/<name>" always means the stock file, so an override can extend its namesake
        loaders: list[BaseLoader] = [PrefixLoader({"stock": stock})]
        if templates_dir is not None:
            if not templates_dir.is_dir():
                raise TemplateError(str(templates_dir), "the templates folder does not exist")
            loaders.append(FileSystemLoader(templates_dir))
        loaders.append(stock)
        self.env = self._environment(ChoiceLoader(loaders), fast=False)
        fast_env = self._environment(self.env.loader, fast=True)
        assert isinstance(fast_env, FastEnvironment)
        self.fast_env: Environment = fast_env
        self._expand = fast_env.expand  # card stand-ins back to their marked text
        # the text part and subject: the naive environment's output, with card partials
        # replayed as plain text (no recording: nothing is compiled)
        self.text_env = self._environment(self.env.loader, fast=False, memo=True)
        self.cache = ShapeCache(HTML_TEMPLATE)
        self.shaper = Shaper()
        self._lock = threading.Lock()
        self._globals: dict[Any, dict[str, Any]] = {}  # template -> its globals, copied once
        self._keyed = KeyedOutputs()  # the subject (and any template proven alike)
        # the HTML template -> its frame run without its text (``_frame``), or None
        self._frames: dict[Any, Frame | None] = {}

    @staticmethod
    def _environment(loader: BaseLoader | None, *, fast: bool, memo: bool = False
                     ) -> Environment:
        env = (FastEnvironment if fast or memo else Environment)(
            loader=loader,
            undefined=StrictUndefined,
            # asked by every Context Jinja makes (each part, each test or hole worked out),
            # for a handful of template names: each answered once
            autoescape=_autoescape,
            finalize=record_finalize if fast else clean_value,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # a Renderer is one template set: no stat() per include; the preview server builds
            # a new Renderer when a template changes
            auto_reload=False,
        )
        env.filters.update(http_url=http_url, short_authors=short_authors, day=day,
                           long_date=long_date, wrap=wrap,
                           link_line=link_line)
        env.globals["card_marker"] = CARD_MARKUP if fast else Markup("")
        if fast or memo:
            # Jinja's async-aware filters (join, first, list...) ask on every call whether
            # the environment is async; these never are: their sync functions, called the
            # same way (Jinja reads how to call a filter when it compiles a template)
            env.filters.update({name: f.__wrapped__ for name, f in env.filters.items()
                                if getattr(f, "jinja_async_variant", False)})
        if fast:
            env.filters = {name: guard_filter(f) for name, f in env.filters.items()}
        if isinstance(env, FastEnvironment):
            env.setup_memo(_card_key, _CARD_READS, _PER_CARD)
            # memoized includes; record_finalize prints as is
            env.code_generator_class = RecordingGenerator if fast else IncludeGenerator
        return env

    # ---------------------------------------------------------------- public

    def render(self, digest: Digest) -> RenderedEmail:
        """Subject, HTML and text for ``digest``, with the lowest-ranked cards dropped whole
        until the HTML fits ``max_bytes``."""
        keep = len(digest.items) + len(digest.also)
        while True:
            ctx = context(digest, keep)
            html = self.html(ctx)
            # the HTML is 7-bit but for raw text (seven_bit_html): its length is its size
            if keep == 0 or (len(html) <= self.max_bytes and html.isascii()) \
                    or len(html.encode()) <= self.max_bytes:
                break
            keep -= 1
        return RenderedEmail(
            subject=self.subject(ctx),
            html=html,
            text=self.text(ctx),
            papers=tuple(map(_PAPER_ID, ctx["cards"])),
            dropped=ctx["dropped"],
        )

    def mjml(self, ctx: dict[str, Any]) -> str:
        """The MJML source of one email (what the naive path compiles)."""
        return self._render(HTML_TEMPLATE, ctx)

    def html(self, ctx: dict[str, Any]) -> str:
        if not self.fast:
            return compile_mjml(self.mjml(ctx), HTML_TEMPLATE)
        template = self._template(self.fast_env, HTML_TEMPLATE)
        frame = self._frame(template)
        # the frame's values and cards without its text; the text its trace stands for is
        # learned from the template's own render (the first email on each path)
        traced = None if frame is None else frame.trace(lambda values: self._run(values, ctx))
        texts = None
        if traced is not None and frame is not None:
            with self._lock:
                texts = frame.texts(traced)
        values = None if traced is None else traced.values
        if texts is None:
            try:
                recorded = render_recorded(lambda: self._run(template, ctx))
            except Exception as exc:  # a template can raise anything (1/0, a bad argument)
                raise _wrap(exc, HTML_TEMPLATE) from None
            if recorded is not None:
                texts, values = recorded[0].split(CARD_MARK), recorded[1]
                if traced is not None and frame is not None:
                    with self._lock:
                        frame.learn(traced, texts, values)
        if texts is not None and values is not None:
            with self._lock:
                parts = self.shaper.shaped(texts, values, self._expand)
                html = None if parts is None else self.cache.html(parts)
            if html is not None:
                return html
        return compile_mjml(self.mjml(ctx), HTML_TEMPLATE)

    def _frame(self, template: Any) -> Frame | None:
        """The template's ``Frame``, found once (None: it does not fit, render it as is)."""
        try:
            return self._frames[template]
        except KeyError:
            pass
        if len(self._frames) >= 16:  # templates are found once each: this is a safeguard
            self._frames.clear()
        values = values_template(self.fast_env, template)
        frame = self._frames[template] = None if values is None else Frame(values)
        return frame

    def subject(self, ctx: dict[str, Any]) -> str:
        # one header line, whatever the template's whitespace (runs of it one space, none at
        # the ends: split() and a regex's \s agree on what whitespace is)
        return " ".join(self._render(SUBJECT_TEMPLATE, ctx, self._plain_env,
                                     keyed=self.fast).split())

    def text(self, ctx: dict[str, Any]) -> str:
        """The plain-text part of one email."""
        return self._render(TEXT_TEMPLATE, ctx, self._plain_env, keyed=self.fast)

    # ---------------------------------------------------------------- internals

    @property
    def _plain_env(self) -> Environment:
        return self.text_env if self.fast else self.env

    def _render(self, name: str, ctx: dict[str, Any], env: Environment | None = None, *,
                keyed: bool = False) -> str:
        template = self._template(env or self.env, name)
        try:
            return self._run(template, ctx, keyed)
        except Exception as exc:  # a template can raise anything (1/0, a bad filter argument)
            raise _wrap(exc, name) from None

    def _run(self, template: Any, ctx: dict[str, Any], keyed: bool = False) -> str:
        """``template.render(ctx)``, with the template's globals merged from a copy taken
        once (Jinja's own ``render`` walks their ChainMap on every call, about a tenth of a
        subject's time): the same context, the same traceback rewriting on errors.
        ``keyed``: replayed when proven a function of a few plain values (``_keyed``)."""
        base = self._globals.get(template)
        if base is None:
            base = self._globals[template] = dict(template.globals)
        variables = {**base, **ctx}
        env = template.environment
        key = self._keyed.key(template, lambda: self._source(env, template.name), variables) \
            if keyed else None
        if key is not None:
            known = self._keyed.get(key)
            if known is not None:
                return known
        try:
            # Jinja's new_context with the plain copy as its globals (the same keys: a
            # Context takes a set of them, and a set of a ChainMap walks both maps)
            output = str(env.concat(template.root_render_func(new_context(
                env, template.name, template.blocks, variables, True, base))))
        except Exception:
            env.handle_exception()
            raise  # handle_exception always raises; this line is for the type checker
        if key is not None:
            self._keyed.keep(key, output)
        return output

    @staticmethod
    def _source(env: Environment, name: str) -> str | None:
        """The source ``name`` was compiled from (auto_reload is off: found once for good)."""
        if env.loader is None:
            return None
        try:
            return env.loader.get_source(env, name)[0]
        except TemplateNotFound:
            return None

    @staticmethod
    def _template(env: Environment, name: str) -> Any:
        try:
            return env.get_template(name)
        except Exception as exc:  # a template can raise anything (1/0, a bad filter argument)
            raise _wrap(exc, name) from None


def _wrap(exc: Exception, name: str) -> TemplateError:
    """Any error raised while loading or rendering a template, as a ``TemplateError`` naming
    the innermost template file and line."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, TemplateNotFound):
        return TemplateError(name, f"template not found: {exc.name}")
    if isinstance(exc, TemplateSyntaxError):
        where = _display_name(exc.filename) if exc.filename else (exc.name or name)
        return TemplateError(where, exc.message or str(exc), exc.lineno)
    if isinstance(exc, JinjaTemplateError):
        message = exc.message or str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    line = _template_line(exc)
    return TemplateError(name if line is None else line[0], message,
                         None if line is None else line[1])


def _display_name(filename: str) -> str:
    """Stock templates by their short name; a user's by full path (the file to open)."""
    path = Path(filename)
    return path.name if path.parent == stock_templates() else filename


def _template_line(exc: BaseException) -> tuple[str, int] | None:
    """The innermost template frame of a render error. Jinja rewrites tracebacks so template
    frames carry the template's file name and line; stock templates are named by their short
    name, a user's by full path (that is the file they must open)."""
    tb = exc.__traceback__
    found: tuple[str, int] | None = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith((".mjml", ".txt", ".html")):
            found = (_display_name(filename), tb.tb_lineno)
        tb = tb.tb_next
    return found
