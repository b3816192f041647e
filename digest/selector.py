"""The selector: which papers each subscriber gets, in what order, and why.

Owns: topic semantics (include any / require all / exclude none, plus the metadata filters
``categories``, ``authors``, ``min_upvotes`` per topic and per subscriber), ranking, reasons,
history (a paper already sent is never picked again) and the ``max_papers`` cut. Term matching
itself lives in ``digest.matching``. May import ``digest.models``, ``digest.matching`` and
``digest.textclean``; pure, no I/O.

API: ``select(papers, subscriber, history=...)`` for one subscriber; ``plan(papers,
subscribers, history)`` for a run; ``Selector(papers).select(subscriber, history)`` when a caller
(the delivery service) selects subscribers one by one against the same papers.

Speed: a ``Selector`` builds one ``PaperIndex``; each distinct term, metadata filter and topic
is evaluated once as a bitmask over the papers (shared by every subscriber who uses it), and a
pick made by one term of a topic is built once per (topic name, term, paper) and shared, so a
subscriber costs a few integer ANDs plus ranking the papers they match.

Ranking, best first: more distinct terms in the title; then more distinct terms anywhere; then
more occurrences in the abstract (so a passing mention, one abstract hit of one term, comes
last among term matches); then upvotes; then paper id, for determinism.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter

from digest.matching import PaperIndex, Term, TermHits, bits, compile_term
from digest.models import Paper, Pick, Reason, Selection, Subscriber, Topic
from digest.textclean import fold

__all__ = ["NO_MATCH", "Selector", "already_sent", "category_matches", "plan", "select"]

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


_Hit = tuple[_TermKey, str, bool, int]  # (term key, term as written, in title, abstract hits)


def _score(title_terms: int, terms: int, abstract_hits: int) -> int:
    # One number (models.Pick.score) that sorts like the tuple: caps keep the tiers apart.
    return min(title_terms, 999) * 1_000_000 + min(terms, 999) * 1_000 + min(abstract_hits, 999)


_Ranked = tuple[int, Pick]  # (an int that sorts like (-score, -upvotes, id), the pick)


_first = itemgetter(0)
_second = itemgetter(1)


class _CompiledTopic:
    """A topic evaluated against the index, as bitmasks over the papers.

    ``mask``: the papers it matches. Most matched papers are hit by exactly one of its
    positive terms: ``exclusive`` holds, per term, the mask of those papers and the shared
    table of their picks (a pick made by one term of a topic depends only on the topic's name,
    the term and the paper, so every topic with that name and term shares it, across
    subscribers). ``multi``: matched papers hit by several of its terms (or by none: a topic of
    metadata filters only), merged on demand and cached here.
    """

    __slots__ = ("name", "mask", "terms", "exclusive", "multi", "_merged")

    def __init__(self, name: str, mask: int, terms: list[tuple[Term, TermHits]],
                 tables: Callable[[str, str], dict[int, _Ranked]]) -> None:
        self.name = name
        self.mask = mask
        self.terms = terms
        once = twice = 0
        for _term, hits in terms:
            anywhere = hits.anywhere & mask
            twice |= once & anywhere
            once |= anywhere
        self.exclusive = [(hits.anywhere & mask & ~twice, term.raw, hits, tables(name, term.raw))
                          for term, hits in terms if hits.anywhere & mask & ~twice]
        self.multi = mask & ~(once & ~twice)
        self._merged: dict[int, _Ranked] = {}

    def hits(self, i: int) -> list[_Hit]:
        out = []
        for term, hits in self.terms:
            hit = hits.papers.get(i)
            if hit is not None:
                out.append((term.key, term.raw, hit[0], hit[1]))
        return out

    def merged(self, i: int, selector: Selector) -> _Ranked:
        found = self._merged.get(i)
        if found is None:
            found = self._merged[i] = selector._merge(i, (self,))
        return found


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
        self._tables: dict[tuple[str, str], dict[int, _Ranked]] = {}
        self._upvotes = [p.upvotes or 0 for p in self.papers]
        self._categories = [tuple(c.casefold() for c in p.categories) for p in self.papers]
        self._authors: list[str] | None = None
        # Ties on score go to more upvotes, then to the smaller id: one precomputed rank.
        order = sorted(range(len(self.papers)),
                       key=lambda i: (-self._upvotes[i], self.papers[i].id))
        self._tie_rank = [0] * len(self.papers)
        for rank, i in enumerate(order):
            self._tie_rank[i] = rank

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
        terms = [(t, self.index.hits(t)) for t in positive.values()]
        compiled = self._topics[topic] = _CompiledTopic(topic.name, mask, terms, self._table)
        return compiled

    # ------------------------------------------------------------------ selection

    def _reason(self, topic: str, term: str, in_title: bool) -> Reason:
        key = (topic, term, "title" if in_title else "abstract")
        reason = self._reasons.get(key)
        if reason is None:
            reason = self._reasons[key] = Reason(topic, term, "title" if in_title else "abstract")
        return reason

    def _ranked(self, i: int, pick: Pick) -> _Ranked:
        return (self._tie_rank[i] - int(pick.score) * len(self.papers), pick)

    def _table(self, topic: str, term: str) -> dict[int, _Ranked]:
        table = self._tables.get((topic, term))
        if table is None:
            table = self._tables[(topic, term)] = {}
        return table

    def _one_term(self, table: dict[int, _Ranked], topic: str, raw: str, hits: TermHits,
                  i: int) -> _Ranked:
        """Paper ``i`` picked by exactly one term of one topic (the common case)."""
        in_title, count = hits.papers[i]
        score = (1_000_000 if in_title else 0) + 1_000 + min(count, 999)  # = _score(t, 1, c)
        found = table[i] = (self._tie_rank[i] - score * len(self.papers), Pick(
            paper=self.papers[i], topics=(topic,), reasons=(self._reason(topic, raw, in_title),),
            score=float(score)))
        return found

    def _merge(self, i: int, topics: Sequence[_CompiledTopic]) -> _Ranked:
        """Paper ``i`` picked by several terms or topics (given in the subscriber's order)."""
        seen: dict[_TermKey, Reason] = {}
        title_terms = abstract_hits = 0
        ranked: list[tuple[int, int, str]] = []
        for order, topic in enumerate(topics):
            entries = topic.hits(i)
            t_title = t_abstract = 0
            for key, raw, in_title, count in entries:
                t_title += in_title
                t_abstract += count
                if key not in seen:
                    seen[key] = self._reason(topic.name, raw, in_title)
                    title_terms += in_title
                    abstract_hits += count
            ranked.append((-_score(t_title, len(entries), t_abstract), order, topic.name))
        names = tuple(dict.fromkeys(name for _s, _o, name in sorted(ranked)))
        reasons = sorted(seen.values(), key=lambda r: r.where != "title")
        return self._ranked(i, Pick(paper=self.papers[i], topics=names, reasons=tuple(reasons),
                                    score=float(_score(title_terms, len(seen), abstract_hits))))

    def select(self, subscriber: Subscriber, history: frozenset[str] = frozenset()
               ) -> Selection:
        """``subscriber``'s picks in rank order, cut at ``max_papers``; never a paper whose id
        is in ``history``; when nothing is new, no picks and the reason why."""
        topics = [self._compile_topic(t) for t in subscriber.topics]
        allowed = self._metadata_mask(subscriber.categories, subscriber.authors,
                                      subscriber.min_upvotes)
        matched = several = 0
        for topic in topics:
            several |= matched & topic.mask
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
        ranked: list[_Ranked] = []
        add = ranked.append
        single = new & ~several
        if single:
            for topic in topics:
                mine = topic.mask & single
                if not mine:
                    continue
                for term_mask, raw, hits, table in topic.exclusive:
                    # The hot loop (~100 papers per subscriber): set bits walked inline.
                    m = mine & term_mask
                    while m:
                        low = m & -m
                        i = low.bit_length() - 1
                        m ^= low
                        found = table.get(i)
                        add(found if found is not None
                            else self._one_term(table, topic.name, raw, hits, i))
                for i in bits(mine & topic.multi):
                    ranked.append(topic.merged(i, self))
        for i in bits(new & several):
            ranked.append(self._merge(i, [t for t in topics if t.mask >> i & 1]))
        ranked.sort(key=_first)
        picks = tuple(map(_second, ranked))
        limit = max(subscriber.max_papers, 0)
        return Selection(subscriber=subscriber, picks=picks[:limit], cut=picks[limit:])


def select(papers: Iterable[Paper], subscriber: Subscriber, *,
           history: frozenset[str] = frozenset()) -> Selection:
    """One subscriber's selection: ranked picks (at most ``max_papers``), the cut, or why not."""
    return Selector(papers).select(subscriber, history)


def plan(papers: Iterable[Paper], subscribers: Iterable[Subscriber],
         history: Mapping[str, frozenset[str]]) -> tuple[Selection, ...]:
    """Every subscriber's selection against one index; ``history`` keys are lower-cased emails."""
    # A big plan allocates ~100 acyclic objects per subscriber; CPython's cyclic collector
    # would rescan the growing result over and over (a third of the run time at 10,000
    # subscribers). Nothing here makes cycles, so pause it and restore its previous state.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        selector = Selector(papers)
        return tuple(selector.select(s, history.get(s.email.lower(), frozenset()))
                     for s in subscribers)
    finally:
        if was_enabled:
            gc.enable()
