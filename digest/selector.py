"""The selector: which papers each subscriber gets, in what order, and why.

Owns: topic semantics (include any / require all / exclude none, plus the metadata filters
``categories``, ``authors``, ``min_upvotes`` per topic and per subscriber), ranking, reasons,
history (a paper already sent is never picked again) and the ``max_papers`` cut. Term matching
itself lives in ``digest.matching``. May import ``digest.models``, ``digest.matching`` and
``digest.textclean``; pure, no I/O.

Speed: ``plan`` builds one ``PaperIndex`` for the run; each distinct term, metadata filter and
topic is evaluated once as a bitmask over the papers (shared by every subscriber who uses it),
so a subscriber costs a few integer ANDs plus the work of ranking the papers they match.

Ranking, best first: more distinct terms in the title; then more distinct terms anywhere; then
more occurrences in the abstract (so a passing mention, one abstract hit of one term, comes
last among term matches); then upvotes; then paper id, for determinism.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from digest.matching import PaperIndex, Term, bits, compile_term
from digest.models import Paper, Pick, Reason, Selection, Subscriber, Topic
from digest.textclean import fold

__all__ = ["Selector", "plan", "select", "category_matches"]

NO_MATCH = "no new papers match your topics"

_TermKey = tuple[tuple[str, ...], bool]


def already_sent(count: int) -> str:
    return ("1 matching paper was already sent" if count == 1
            else f"{count} matching papers were already sent")


def category_matches(wanted: str, category: str) -> bool:
    """arXiv semantics: "cs.LG" is that category; "cs" or "cs.*" the whole archive."""
    w = wanted.strip().casefold()
    c = category.strip().casefold()
    if w.endswith(".*"):
        w = w[:-2]
    elif "." in w:
        return c == w
    return c == w or c.startswith(w + ".")


@dataclass(frozen=True)
class _TermHit:
    """One positive term of a topic hitting one paper."""

    key: _TermKey
    raw: str
    in_title: bool
    abstract_count: int


@dataclass(frozen=True)
class _CompiledTopic:
    name: str
    mask: int  # papers matching the topic (terms and the topic's own metadata filters)
    hits: Mapping[int, tuple[_TermHit, ...]]  # paper index -> its positive term hits


def _rank_key(title_terms: int, terms: int, abstract_hits: int) -> float:
    # One float (models.Pick.score) that sorts like the tuple: caps keep the tiers apart.
    return (min(title_terms, 999) * 1_000_000.0 + min(terms, 999) * 1_000.0
            + min(abstract_hits, 999))


class Selector:
    """Select for many subscribers against one set of papers (build once per run)."""

    def __init__(self, papers: Iterable[Paper]) -> None:
        unique: dict[str, Paper] = {}
        for paper in papers:
            unique.setdefault(paper.id, paper)  # the first copy of a repeated id wins
        self.index = PaperIndex(tuple(unique.values()))
        self.papers = self.index.papers
        self._position = {p.id: i for i, p in enumerate(self.papers)}
        self._all = (1 << len(self.papers)) - 1
        self._terms: dict[str, Term] = {}
        self._topics: dict[Topic, _CompiledTopic] = {}
        self._meta: dict[tuple[str, tuple[str, ...]], int] = {}
        self._upvote_masks: dict[int, int] = {}
        self._reasons: dict[tuple[str, str, str], Reason] = {}
        self._upvotes = [p.upvotes or 0 for p in self.papers]
        self._categories = [tuple(c.casefold() for c in p.categories) for p in self.papers]
        self._authors: list[str] | None = None

    # ------------------------------------------------------------------ filters

    def _term(self, raw: str) -> Term:
        term = self._terms.get(raw)
        if term is None:
            term = self._terms[raw] = compile_term(raw)
        return term

    def _term_mask(self, term: Term) -> int:
        return self.index.hits(term).anywhere if term.words else 0

    def _category_mask(self, wanted: tuple[str, ...]) -> int:
        key = ("categories", wanted)
        mask = self._meta.get(key)
        if mask is None:
            mask = 0
            for i, cats in enumerate(self._categories):
                if any(category_matches(w, c) for w in wanted for c in cats):
                    mask |= 1 << i
            self._meta[key] = mask
        return mask

    def _author_mask(self, wanted: tuple[str, ...]) -> int:
        key = ("authors", wanted)
        mask = self._meta.get(key)
        if mask is None:
            if self._authors is None:
                # One folded string per paper; NUL keeps a needle from spanning two names.
                self._authors = ["\0".join(fold(a) for a in p.authors) for p in self.papers]
            needles = [n for n in (fold(w).strip() for w in wanted) if n]
            mask = 0
            for i, names in enumerate(self._authors):
                if any(n in names for n in needles):
                    mask |= 1 << i
            self._meta[key] = mask
        return mask

    def _upvote_mask(self, minimum: int) -> int:
        mask = self._upvote_masks.get(minimum)
        if mask is None:
            mask = 0
            for i, votes in enumerate(self._upvotes):
                if votes >= minimum:
                    mask |= 1 << i
            self._upvote_masks[minimum] = mask
        return mask

    def _metadata_mask(self, categories: tuple[str, ...], authors: tuple[str, ...],
                       min_upvotes: int | None) -> int:
        mask = self._all
        if categories:
            mask &= self._category_mask(categories)
        if authors:
            mask &= self._author_mask(authors)
        if min_upvotes is not None:
            mask &= self._upvote_mask(min_upvotes)
        return mask

    def _compile_topic(self, topic: Topic) -> _CompiledTopic:
        found = self._topics.get(topic)
        if found is not None:
            return found
        include = [self._term(t) for t in topic.include]
        require = [self._term(t) for t in topic.require]
        mask = self._metadata_mask(topic.categories, topic.authors, topic.min_upvotes)
        if include:
            any_of = 0
            for term in include:
                any_of |= self._term_mask(term)
            mask &= any_of
        for term in require:
            mask &= self._term_mask(term)
        for raw in topic.exclude:
            mask &= ~self._term_mask(self._term(raw))
        positive: dict[_TermKey, Term] = {}
        for term in (*include, *require):
            if term.words:
                positive.setdefault(term.key, term)
        hits: dict[int, tuple[_TermHit, ...]] = {}
        term_hits = [(t, self.index.hits(t)) for t in positive.values()]
        for i in bits(mask):
            bit = 1 << i
            hits[i] = tuple(
                _TermHit(t.key, t.raw, bool(h.title & bit), h.abstract_counts.get(i, 0))
                for t, h in term_hits if h.anywhere & bit)
        compiled = self._topics[topic] = _CompiledTopic(topic.name, mask, hits)
        return compiled

    # ------------------------------------------------------------------ selection

    def _reason(self, topic: str, term: str, in_title: bool) -> Reason:
        key = (topic, term, "title" if in_title else "abstract")
        reason = self._reasons.get(key)
        if reason is None:
            reason = self._reasons[key] = Reason(topic, term, "title" if in_title else "abstract")
        return reason

    def _pick(self, i: int, topics: Sequence[_CompiledTopic]) -> Pick:
        seen: dict[_TermKey, Reason] = {}
        title_terms = abstract_hits = 0
        topic_scores: list[tuple[float, int, str]] = []
        for order, topic in enumerate(topics):
            entries = topic.hits.get(i)
            if entries is None:
                continue
            t_title = sum(1 for e in entries if e.in_title)
            t_abstract = sum(e.abstract_count for e in entries)
            topic_scores.append((-_rank_key(t_title, len(entries), t_abstract), order, topic.name))
            for e in entries:
                if e.key not in seen:
                    seen[e.key] = self._reason(topic.name, e.raw, e.in_title)
                    title_terms += e.in_title
                    abstract_hits += e.abstract_count
        names = tuple(dict.fromkeys(name for _s, _o, name in sorted(topic_scores)))
        reasons = sorted(seen.values(), key=lambda r: r.where != "title")
        return Pick(paper=self.papers[i], topics=names, reasons=tuple(reasons),
                    score=_rank_key(title_terms, len(seen), abstract_hits))

    def select(self, subscriber: Subscriber, history: frozenset[str] = frozenset()
               ) -> Selection:
        topics = [self._compile_topic(t) for t in subscriber.topics]
        allowed = self._metadata_mask(subscriber.categories, subscriber.authors,
                                      subscriber.min_upvotes)
        matched = 0
        for topic in topics:
            matched |= topic.mask
        matched &= allowed
        sent = 0
        for paper_id in history:
            pos = self._position.get(paper_id)
            if pos is not None:
                sent |= 1 << pos
        new = matched & ~sent
        if not new:
            reason = already_sent(matched.bit_count()) if matched else NO_MATCH
            return Selection(subscriber=subscriber, picks=(), skipped_reason=reason)
        picks = [self._pick(i, topics) for i in bits(new)]
        picks.sort(key=lambda p: (-p.score, -(p.paper.upvotes or 0), p.paper.id))
        limit = max(subscriber.max_papers, 0)
        return Selection(subscriber=subscriber, picks=tuple(picks[:limit]),
                         cut=tuple(picks[limit:]))


def select(papers: Iterable[Paper], subscriber: Subscriber, *,
           history: frozenset[str] = frozenset()) -> Selection:
    """One subscriber's selection: ranked picks (at most ``max_papers``), the cut, or why not."""
    return Selector(papers).select(subscriber, history)


def plan(papers: Iterable[Paper], subscribers: Iterable[Subscriber],
         history: Mapping[str, frozenset[str]]) -> tuple[Selection, ...]:
    """Every subscriber's selection against one index; ``history`` keys are lower-cased emails."""
    selector = Selector(papers)
    return tuple(selector.select(s, history.get(s.email.lower(), frozenset()))
                 for s in subscribers)
