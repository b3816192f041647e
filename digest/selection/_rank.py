"""The selector: which papers each subscriber gets, in what order, and why.

Owns: topic semantics (include any / require all / exclude none, plus the metadata filters
``categories``, ``authors``, ``min_upvotes`` per topic and per subscriber), ranking, reasons,
history (a paper already sent is never picked again) and the ``max_papers`` cut. Term matching
itself lives in ``_terms``. May import ``digest.models``, ``digest.text`` and ``_terms``;
pure, no I/O.

API: ``plan(papers, subscribers, history)`` for a run; ``Selector(papers).select(subscriber,
history)`` when a caller (the delivery service) selects subscribers one by one against the same
papers.

Ranking, best first: more distinct terms in the title; then more distinct terms anywhere; then
more occurrences in the abstract (so a passing mention, one abstract hit of one term, comes
last among term matches); then upvotes; then paper id, for determinism.

Speed: a ``Selector`` builds one ``PaperIndex`` over the papers in tie-break order (most
upvotes, then smallest id), so bit ``i`` of every mask is the ``i``-th paper in that order.
Each distinct term, metadata filter and topic is evaluated once, shared by every subscriber who
uses it; a topic's papers split by score into "tiers" (bitmasks) are kept by what they depend
on (its terms and filters: not its name, nor the order of its terms), each part with who
builds its picks (mostly a table shared by every topic with the same name and term, found
when a pick is built). A subscriber then costs a few integer ORs: the union of their topics'
tiers, walked from the best score down and, inside a tier, from the lowest bit up, is already
in rank order; only papers that several of their topics match are scored one by one. Picks
are built for the first ``max_papers`` only: ``Selection.more`` counts the rest, whose picks
are built only when asked for (``select(..., with_cut=True)``; ``plan(..., build_cuts=True)``
builds them all up front, for a caller that shows them). bench/bench_select.py measures all
of this.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeAlias

from digest.memo import Generations
from digest.models import Feedback, Paper, Pick, Rank, Reason, Selection, Subscriber, Topic
from digest.selection._terms import PaperIndex, Term, TermHits, TermKey, bits, compile_term
from digest.selection._vocabulary import Vocabulary, shipped_vocabulary
from digest.selection._widen import Widener
from digest.text import fold

if TYPE_CHECKING:  # numpy and the semantic layer load with its first use: a run without
    # ``about`` or feedback never imports them (65 ms of a command's start)
    import numpy as np

    from digest.selection._semantic import Semantic

__all__ = ["NO_MATCH", "Selector", "already_sent", "category_matches", "plan"]

NO_MATCH = "no new papers match your topics"

# A term's identity in a topic: its key, and whether the vocabulary widened it
_TermKey = tuple[TermKey, bool]
# A topic but its name and the order of its terms: include, require, exclude, the positive
# terms as written (of two with one key, the first), categories, authors, min_upvotes, expand,
# passing_mentions. The four term lists go in as sets, each as its sorted distinct terms
# (``_as_set``): the key a frozenset would make (neither order nor repeats count), at a quarter
# of the memory (a small frozenset is 216 bytes, a tuple of three strings 64), ~1 MB of a
# 10,000 send's peak.
_ShapeKey = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...],
                  tuple[str, ...], tuple[str, ...], int | None, bool, bool]


def _as_set(terms: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(terms))) if len(terms) > 1 else tuple(terms)


# (term key, spelling shown, in title, abstract hits, vocabulary note or "")
_Hit = tuple[_TermKey, str, bool, int, str]
_Labels = dict[int, tuple[str, str]]  # paper -> (spelling shown, note) when not the term itself
_Tiers = tuple[tuple[int, int], ...]  # (score, mask of the papers with that score), best first


# What a Selector keeps per distinct topic, term, filter and pick is bounded by this many entries
# per table, the least recently met dropped first (rebuilt if met again), so one Selector serves
# any number of subscribers in bounded memory without rebuilding its index. bench_select /
# bench_memory's file: 1,000 subscribers meet ~1,300 distinct topics; a table that outgrows this
# holds the topics in use (a popular one stays). 2,048 in two generations of 1,024
# (``digest.memo.Generations``), where an LRU of 1,024 was (chosen for the peak of a one-process
# 10,000-subscriber send): bench_send's 10,000 subscribers meet 7,952 distinct topics and 2,507
# distinct shapes, and select in ~15% less CPU; 30,000 of them leave 1.4 MB more in the tables (7.4
# MB; a tracemalloc peak of 10.4 MB against 13.4 and a max RSS of 100 MB against 118, the shapes'
# tiers being untracked by the collector). Generations of 512 held as much as the LRU and saved
# half as much CPU.
TABLE_SIZE = 2048
# The distinct tiers the shapes share (``Selector._shared_tiers``): bench_send's 10,000
# subscribers leave 2,777 in the table, one dict slot each. A tier dropped from it while a shape
# still holds it only means that its next equal is kept as another copy.
TIER_COPIES = 4 * TABLE_SIZE



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


def _score(title_terms: int, terms: int, abstract_hits: int) -> int:
    # One number (models.Pick.score) that sorts like the tuple: caps keep the tiers apart.
    if title_terms > 999 or terms > 999 or abstract_hits > 999:
        title_terms, terms, abstract_hits = (min(title_terms, 999), min(terms, 999),
                                             min(abstract_hits, 999))
    return title_terms * 1_000_000 + terms * 1_000 + abstract_hits


PASSING = 1_001  # the score of one mention of one term in the abstract alone: in passing


def _rank(score: int) -> Rank:
    return Rank(score // 1_000_000, score // 1_000 % 1_000, score % 1_000)


class _CompiledTerm:
    """One distinct term as written, looked up once: its key, its hits and the ``entry``
    (key, term as written, hits per paper) that compiled topics scan."""

    __slots__ = ("anywhere", "entry", "key", "labels", "raw")

    def __init__(self, term: Term, hits: TermHits | None, expanded: bool = False,
                 labels: _Labels | None = None) -> None:
        self.key: _TermKey = (term.key, expanded)
        self.raw = term.shown
        self.anywhere = hits.anywhere if hits is not None else 0
        self.labels: _Labels = labels or {}
        self.entry = (self.key, self.raw, hits.papers if hits is not None else {}, self.labels)


class _OneTerm:
    """The picks of papers that one term (as written) of a topic named ``name`` hits and no
    other term of that topic does: they depend on nothing else (the score says title or
    abstract), so every such topic, across subscribers, shares them."""

    __slots__ = ("labels", "name", "papers", "picks", "reasons", "topics")

    def __init__(self, name: str, raw: str, papers: tuple[Paper, ...],
                 labels: _Labels | None = None) -> None:
        # The tuples every pick of this group holds, built once (fewer objects to allocate
        # and for the cyclic collector to scan).
        self.topics = (name,)
        self.reasons = ((Reason(name, raw, "abstract"),), (Reason(name, raw, "title"),))
        self.papers = papers
        self.name = name
        self.labels: _Labels = labels or {}  # papers found through another spelling
        self.picks: dict[int, Pick] = {}

    def pick(self, i: int, score: int) -> Pick:
        pick = self.picks.get(i)
        if pick is None:
            label = self.labels.get(i)
            reasons = self.reasons[score >= 1_000_000] if label is None else (
                Reason(self.name, label[0], "title" if score >= 1_000_000 else "abstract",
                       label[1]),)
            pick = self.picks[i] = Pick(paper=self.papers[i], topics=self.topics,
                                        reasons=reasons, rank=_rank(score))
        return pick


# Who builds the pick for the papers of one part of a tier, none of them needing the topic's
# name (the paper's one topic gives it when the pick is built): k >= 0, the shape's k-th term
# (papers only it hits, picked by the topic's one-term group); SEVERAL_TERMS (papers several
# terms of the topic hit, picked by the topic); None (papers several topics match). Numbers,
# not objects: tuples of ints and None alone are untracked by the cyclic collector in its
# first passes (young ones), so the tiers of the shapes kept are not rescanned by its full
# passes.
_Group: TypeAlias = "int | None"
SEVERAL_TERMS = -1
_Part: TypeAlias = "tuple[int, _Group]"  # (mask, group)
_Tier: TypeAlias = "tuple[int, int, Sequence[_Part]]"  # (score, mask of all parts, parts)


def _tiers(parts: dict[int, list[_Part]]) -> tuple[_Tier, ...]:
    """Score -> parts, as tiers best score first."""
    out = []
    for score, group in sorted(parts.items(), reverse=True):
        union = 0
        for mask, _g in group:
            union |= mask
        out.append((score, union, tuple(group)))
    return tuple(out)


def _score_of(tier: _Tier) -> int:
    return tier[0]


def _joined(chunks: list[_Tier]) -> Iterator[_Tier]:
    """Tiers sorted best score first, those of one score (from several topics) joined."""
    k, n = 0, len(chunks)
    while k < n:
        score, union, parts = chunks[k]
        k += 1
        if k < n and chunks[k][0] == score:
            joined = list(parts)
            while k < n and chunks[k][0] == score:
                _s, more, more_parts = chunks[k]
                union |= more
                joined.extend(more_parts)
                k += 1
            parts = joined
        yield score, union, parts


class _Shape:
    """What a topic matches (``mask``) and its papers split by the score it alone gives them
    (``tiers``): all of a compiled topic that depends neither on its name nor on the order its
    terms are written in, so the topics that differ only there (the same terms under another
    name or in another order) share it. Parts of a tier are disjoint, so their order (the
    terms' order) changes nothing."""

    __slots__ = ("mask", "terms", "tiers")

    def __init__(self, mask: int, terms: list[_CompiledTerm],
                 term_tiers: Callable[[_CompiledTerm], _Tiers], dropped: int = 0) -> None:
        self.mask = mask
        self.terms = tuple(terms)  # as the first topic of this shape wrote them: k is terms[k]
        self.tiers: tuple[_Tier, ...]
        if len(terms) == 1 and mask == terms[0].anywhere & ~dropped:
            # The common topic: one term, no filter that bites (but the passing mentions,
            # ``dropped``). Its tiers are the term's own.
            self.tiers = tuple((score, tier, ((tier, 0),)) for score, tier in term_tiers(terms[0])
                               if not (dropped and score == PASSING))
            return
        once = twice = 0
        for term in terms:
            anywhere = term.anywhere & mask
            twice |= once & anywhere
            once |= anywhere
        parts: dict[int, list[_Part]] = {}
        for k, term in enumerate(terms):
            # Papers hit by this term only: the term's own score, one AND per tier.
            exclusive = term.anywhere & mask & ~twice
            if exclusive:
                for score, tier in term_tiers(term):
                    if tier & exclusive:
                        parts.setdefault(score, []).append((tier & exclusive, k))
        # Papers hit by several terms (or by none: a topic of metadata filters only).
        several: dict[int, int] = {}
        for i in bits(mask & ~(once & ~twice)):
            title_terms = count = abstract_hits = 0
            for term in terms:
                hit = term.entry[2].get(i)
                if hit is not None:
                    title_terms += hit[0]
                    count += 1
                    abstract_hits += hit[1]
            score = _score(title_terms, count, abstract_hits)
            several[score] = several.get(score, 0) | 1 << i
        for score, tier in several.items():
            parts.setdefault(score, []).append((tier, SEVERAL_TERMS))
        self.tiers = _tiers(parts)


class _CompiledTopic:
    """A topic evaluated against the index: its ``_Shape``'s ``mask`` and ``tiers``, its
    ``name``, and ``terms``, its positive (include and require) terms in the order written,
    one per term key: (key, term as written, its hits per paper). The order decides which of
    two reasons of one kind a pick lists first. ``groups``: its one-term groups met so far,
    by the shape's number for the term (``shape_terms``)."""

    __slots__ = ("groups", "mask", "name", "shape_terms", "terms", "tiers")

    def __init__(self, name: str, shape: _Shape, terms: list[_CompiledTerm]) -> None:
        self.name = name
        self.mask = shape.mask
        self.tiers = shape.tiers
        self.shape_terms = shape.terms
        self.terms = [term.entry for term in terms]
        self.groups: dict[int, _OneTerm] = {}

    def hits(self, i: int) -> list[_Hit]:
        out = []
        for key, raw, papers, labels in self.terms:
            hit = papers.get(i)
            if hit is not None:
                label = labels.get(i)
                if label is None:
                    out.append((key, raw, hit[0], hit[1], ""))
                else:
                    out.append((key, label[0], hit[0], hit[1], label[1]))
        return out


class Selector:
    """Select for many subscribers against one set of papers (build once per run)."""

    def __init__(self, papers: Iterable[Paper], vocabulary: Vocabulary | None = None) -> None:
        unique: dict[str, Paper] = {}
        for paper in papers:
            unique.setdefault(paper.id, paper)  # the first copy of a repeated id wins
        self.papers = tuple(unique.values())
        # Bit i of every mask is the i-th paper in tie-break order (more upvotes, then the
        # smaller id), so walking a mask from its lowest bit up breaks score ties correctly.
        self.index = PaperIndex(sorted(self.papers, key=lambda p: (-(p.upvotes or 0), p.id)))
        ranked = self.index.papers
        self._position = {p.id: i for i, p in enumerate(ranked)}
        self._all = (1 << len(ranked)) - 1
        self._widener = Widener(self.index, vocabulary if vocabulary is not None
                                else shipped_vocabulary())
        # Memos over what subscribers write (bounded: TABLE_SIZE)
        self._terms: Generations[tuple[str, bool], _CompiledTerm] = Generations(TABLE_SIZE)
        self._term_tiers: Generations[_TermKey, _Tiers] = Generations(TABLE_SIZE)
        self._topics: Generations[Topic, _CompiledTopic] = Generations(TABLE_SIZE)
        self._shapes: Generations[_ShapeKey, _Shape] = Generations(TABLE_SIZE)
        self._meta: Generations[tuple[str, tuple[str, ...]], int] = Generations(TABLE_SIZE)
        self._upvote_masks: Generations[int, int] = Generations(TABLE_SIZE)
        self._reasons: Generations[tuple[str, str, str, str], Reason] = Generations(TABLE_SIZE)
        self._groups: Generations[tuple[str, str, bool], _OneTerm] = Generations(TABLE_SIZE)
        self._picks: Generations[tuple[str, tuple[tuple[str, str], ...], int], Pick] = \
            Generations(TABLE_SIZE)
        # One copy of each tier the shapes hold (see ``_shared_tiers``).
        self._tier_copies: Generations[_Tier, _Tier] = Generations(TIER_COPIES)
        self._upvotes = [p.upvotes or 0 for p in ranked]
        self._categories = [tuple(c.casefold() for c in p.categories) for p in ranked]
        self._feeds = [p.feeds for p in ranked]
        self._authors: list[str] | None = None
        self._semantic: Semantic | None = None

    # ------------------------------------------------------------------ filters

    @property
    def vocabulary(self) -> Vocabulary:
        return self._widener.vocabulary

    def term_hits(self, raw: str, expand: bool = True) -> int:
        """The mask of the papers a topic term (as the selection reads it) hits."""
        return self._term(raw, expand).anywhere

    def ambiguous(self, short: str) -> bool:
        """Whether an acronym has other meanings, counting today's papers' definitions."""
        return self._widener.ambiguous(short)

    def _term(self, raw: str, expand: bool = True) -> _CompiledTerm:
        """A term as the topics use it: widened by the vocabulary unless ``expand`` is off
        (exclude terms never are), ambiguous acronyms narrowed (``_widen``)."""
        found = self._terms.get((raw, expand))
        if found is None:
            term = compile_term(raw)
            if not term.words:
                found = _CompiledTerm(term, None)
            else:
                term, hits, labels = self._widener.hits(raw, expand)
                found = _CompiledTerm(term, hits, self._widener.widens(raw, expand), labels)
            self._terms[(raw, expand)] = found
        return found

    def _tiers_of(self, term: _CompiledTerm) -> _Tiers:
        """The papers ``term`` hits, split by the score it alone gives them."""
        found = self._term_tiers.get(term.key)
        if found is None:
            tiers: dict[int, int] = {}
            for i, (in_title, count) in term.entry[2].items():
                score = _score(in_title, 1, count)
                tiers[score] = tiers.get(score, 0) | 1 << i
            found = self._term_tiers[term.key] = tuple(sorted(tiers.items(), reverse=True))
        return found

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
                self._authors = ["\0".join(fold(a) for a in p.authors)
                                 for p in self.index.papers]
            needles = [n for n in (fold(w).strip() for w in wanted) if n]
            mask = 0
            for i, names in enumerate(self._authors):
                if any(n in names for n in needles):
                    mask |= 1 << i
            self._meta[key] = mask
        return mask

    def _feed_mask(self, wanted: tuple[str, ...]) -> int:
        """The papers listed by any of the feeds ``wanted`` (a subscriber's ``feeds:``). A
        paper from a run without named feeds (one ``feed:``, a ``--papers`` file) is in
        every subscriber's: there is nothing to pick between."""
        key = ("feeds", wanted)
        mask = self._meta.get(key)
        if mask is None:
            names = set(wanted)
            mask = 0
            for i, feeds in enumerate(self._feeds):
                if not feeds or names.intersection(feeds):
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
        if topic.about or topic.like:  # they re-rank; what the terms match is the same
            found = self._topics[topic] = self._compile_topic(replace(topic, about=None,
                                                                      like=()))
            return found
        include = [self._term(t, topic.expand) for t in topic.include]
        require = [self._term(t, topic.expand) for t in topic.require]
        positive: dict[_TermKey, _CompiledTerm] = {}
        written = []
        for raw, term in zip((*topic.include, *topic.require), (*include, *require)):
            if term.key[0][0] and term.key not in positive:  # no letters or digits: no match
                positive[term.key] = term
                written.append(raw)
        terms = list(positive.values())
        key: _ShapeKey = (_as_set(topic.include), _as_set(topic.require),
                          _as_set(topic.exclude), _as_set(written), topic.categories,
                          topic.authors, topic.min_upvotes, topic.expand, topic.passing_mentions)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._shape(topic, include, require, terms)
        compiled = self._topics[topic] = _CompiledTopic(topic.name, shape, terms)
        return compiled

    def _shape(self, topic: Topic, include: list[_CompiledTerm], require: list[_CompiledTerm],
               terms: list[_CompiledTerm]) -> _Shape:
        mask = self._metadata_mask(topic.categories, topic.authors, topic.min_upvotes)
        if include:
            any_of = 0
            for term in include:
                any_of |= term.anywhere
            mask &= any_of
        for term in require:
            mask &= term.anywhere
        for raw in topic.exclude:
            mask &= ~self._term(raw, expand=False).anywhere
        dropped = 0
        if not topic.passing_mentions and terms:
            # A passing mention (one mention of one term in the abstract, and no other term
            # of the topic anywhere) is not a pick: a word named once, as an example domain
            # or one task among several, says little about what a paper is about.
            once = twice = 0
            for term in terms:
                anywhere = term.anywhere & mask
                twice |= once & anywhere
                once |= anywhere
            for term in terms:
                dropped |= dict(self._tiers_of(term)).get(PASSING, 0) & ~twice
            mask &= ~dropped
        shape = _Shape(mask, terms, self._tiers_of, dropped)
        shape.tiers = self._shared_tiers(shape.tiers)
        return shape

    def _shared_tiers(self, tiers: tuple[_Tier, ...]) -> tuple[_Tier, ...]:
        """``tiers`` with each tier replaced by an equal one already kept, if there is one.
        Shapes are many and their tiers few (bench_memory's 3,000 subscribers: 1,184 shapes
        holding 8,876 tiers, 1,656 of them distinct), so the shapes table held mostly copies:
        ~2 KB a shape, 1,024-2,048 shapes once it has filled. A tier is a value (ints and
        tuples of them), so an equal copy serves as well."""
        copies = self._tier_copies
        shared = []
        for tier in tiers:
            found = copies.get(tier)
            if found is None:
                copies[tier] = found = tier
            shared.append(found)
        return tuple(shared)

    # ------------------------------------------------------------------ picks

    def _reason(self, topic: str, term: str, in_title: bool, note: str = "") -> Reason:
        key = (topic, term, "title" if in_title else "abstract", note)
        reason = self._reasons.get(key)
        if reason is None:
            reason = self._reasons[key] = Reason(topic, term, "title" if in_title else "abstract",
                                                 note)
        return reason

    def _one_term(self, name: str, term: _CompiledTerm) -> _OneTerm:
        key = (name, term.raw, term.key[1])
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _OneTerm(name, term.raw, self.index.papers, term.labels)
        return group

    def _topic_pick(self, topic: _CompiledTopic, i: int) -> Pick:
        """Paper ``i`` picked by one topic alone, hit by several of its terms (or by none).
        It depends only on the topic's name and those terms, so such topics share it."""
        entries = topic.hits(i)
        key = (topic.name, tuple((e[1], e[4]) for e in entries), i)
        pick = self._picks.get(key)
        if pick is None:
            # _merge for one topic, whose term keys are distinct: reasons title first.
            reasons = _distinct([self._reason(topic.name, raw, in_title, note)
                                 for _k, raw, in_title, _c, note in entries])
            score = _score(sum(e[2] for e in entries), len(entries), sum(e[3] for e in entries))
            pick = self._picks[key] = Pick(paper=self.index.papers[i], topics=(topic.name,),
                                           reasons=tuple(reasons), rank=_rank(score))
        return pick

    def _merged_score(self, i: int, topics: Sequence[_CompiledTopic]) -> int:
        """The score ``_merge`` gives paper ``i``, without building the pick."""
        seen: set[_TermKey] = set()
        title_terms = abstract_hits = 0
        for topic in topics:
            for key, _raw, papers, _labels in topic.terms:
                hit = papers.get(i)
                if hit is not None and key not in seen:
                    seen.add(key)
                    title_terms += hit[0]
                    abstract_hits += hit[1]
        return _score(title_terms, len(seen), abstract_hits)

    def _merge(self, i: int, topics: Sequence[_CompiledTopic]) -> Pick:
        """Paper ``i`` picked by ``topics`` (given in the subscriber's order)."""
        seen: dict[_TermKey, Reason] = {}
        title_terms = abstract_hits = 0
        ranked: list[tuple[int, int, str]] = []
        for order, topic in enumerate(topics):
            entries = topic.hits(i)
            t_title = t_abstract = 0
            for key, raw, in_title, count, note in entries:
                t_title += in_title
                t_abstract += count
                if key not in seen:
                    seen[key] = self._reason(topic.name, raw, in_title, note)
                    title_terms += in_title
                    abstract_hits += count
            ranked.append((-_score(t_title, len(entries), t_abstract), order, topic.name))
        names = tuple(dict.fromkeys(name for _s, _o, name in sorted(ranked)))
        reasons = _distinct(list(seen.values()))
        return Pick(paper=self.index.papers[i], topics=names, reasons=tuple(reasons),
                    rank=_rank(_score(title_terms, len(seen), abstract_hits)))

    # ------------------------------------------------------------------ selection

    def _ranked(self, topics: Sequence[_CompiledTopic], new: int, several: int
                ) -> Iterator[Pick]:
        """The picks for the papers in ``new``, in rank order, built as they are reached."""
        for score, union, tier in self._ranked_tiers(topics, new, several):
            group = tier[0][1]
            while union:
                low = union & -union
                i = low.bit_length() - 1
                union ^= low
                if len(tier) > 1:
                    for mask, group in tier:
                        if mask & low:
                            break
                yield self._pick(topics, i, score, group)

    def _pick(self, topics: Sequence[_CompiledTopic], i: int, score: int, group: _Group
              ) -> Pick:
        if group is None:
            return self._merge(i, [t for t in topics if t.mask >> i & 1])
        for topic in topics:  # the one topic that matches paper i
            if topic.mask >> i & 1:
                break
        if group == SEVERAL_TERMS:
            return self._topic_pick(topic, i)
        one = topic.groups.get(group)
        if one is None:
            one = topic.groups[group] = self._one_term(topic.name, topic.shape_terms[group])
        return one.pick(i, score)

    def _ranked_tiers(self, topics: Sequence[_CompiledTopic], new: int, several: int
                      ) -> Iterable[_Tier]:
        """The papers in ``new`` as tiers, best score first; inside a tier, lowest bit first."""
        single = new & ~several
        order: Iterable[_Tier]
        if len(topics) == 1 and topics[0].mask == single:
            order = topics[0].tiers  # one topic, nothing filtered: already in order
        else:
            chunks: list[_Tier] = []
            for topic in topics:
                mine = topic.mask & single
                if mine == topic.mask:
                    chunks.extend(topic.tiers)
                elif mine:
                    for score, union, tier in topic.tiers:
                        if union & mine:
                            chunks.append((score, union & mine, [
                                (mask & mine, group) for mask, group in tier if mask & mine]))
            for i in bits(several):
                # Scored now, picked (a merge across topics) only if reached.
                score = self._merged_score(i, [t for t in topics if t.mask >> i & 1])
                chunks.append((score, 1 << i, ((1 << i, None),)))
            # One sort in C (stable: a score's chunks stay in the topics' order), then each
            # score's chunks joined into its tier when the walk reaches it.
            chunks.sort(key=_score_of, reverse=True)
            order = _joined(chunks)
        return order

    def _cut(self, topics: Sequence[_CompiledTopic], new: int, several: int, skip: int
             ) -> tuple[Pick, ...]:
        if not gc.isenabled():  # inside plan(build_cuts=True)
            return tuple(islice(self._ranked(topics, new, several), skip, None))
        with _gc_paused():
            return tuple(islice(self._ranked(topics, new, several), skip, None))

    def _sent(self, history: frozenset[str]) -> int:
        sent = 0
        position = self._position
        if len(history) <= len(position):
            for paper_id in history:
                pos = position.get(paper_id)
                if pos is not None:
                    sent |= 1 << pos
        else:  # a long history: walk today's papers instead
            for paper_id, pos in position.items():
                if paper_id in history:
                    sent |= 1 << pos
        return sent

    def select(self, subscriber: Subscriber, history: frozenset[str] = frozenset(),
               feedback: Feedback | None = None, *, with_cut: bool = False) -> Selection:
        """``subscriber``'s picks in rank order, cut at ``max_papers``; never a paper whose id
        is in ``history``; when nothing is new, no picks and the reason why. The matches past
        ``max_papers`` are counted (``more``); ``with_cut`` also builds their picks (``cut``).
        A topic with ``about`` or ``like`` (or ``feedback``) re-ranks what its terms let
        through and may add "you may also like" papers (``_semantic``)."""
        topics = [self._compile_topic(t) for t in subscriber.topics]
        allowed = self._metadata_mask(subscriber.categories, subscriber.authors,
                                      subscriber.min_upvotes)
        if subscriber.feeds:
            allowed &= self._feed_mask(subscriber.feeds)
        matched = several = 0
        for topic in topics:
            several |= matched & topic.mask
            matched |= topic.mask
        matched &= allowed
        new = matched & ~self._sent(history) if history else matched
        if not new:
            reason = already_sent(matched.bit_count()) if matched else NO_MATCH
            return Selection(subscriber=subscriber, picks=(), skipped_reason=reason)
        several &= new
        limit = max(subscriber.max_papers, 0)
        if feedback is not None or any(t.about or t.like for t in subscriber.topics):
            return self._semantic_select(subscriber, topics, new, several, limit, allowed,
                                         history, feedback or Feedback(), with_cut)
        picks = tuple(islice(self._ranked(topics, new, several), limit))
        more = new.bit_count() - len(picks)
        cut = self._cut(topics, new, several, limit) if with_cut and more else ()
        return Selection(subscriber=subscriber, picks=picks, more=more, cut=cut)

    # ------------------------------------------------------------------ semantic layer

    @property
    def semantic(self) -> Semantic:
        """Embeddings and BM25 over the papers, built on first use (once per run)."""
        if self._semantic is None:
            from digest.selection._semantic import Semantic

            self._semantic = Semantic(self.index.papers)
        return self._semantic

    def _liked(self, topic: Topic, feedback: Feedback) -> list[Paper]:
        papers = [self.index.papers[self._position[i]] for i in topic.like
                  if i in self._position]
        known = {p.id for p in papers}
        papers.extend(p for p in feedback.more if p.id not in known)
        return papers

    def _semantic_select(self, subscriber: Subscriber, topics: list[_CompiledTopic], new: int,
                         several: int, limit: int, allowed: int, history: frozenset[str],
                         feedback: Feedback, with_cut: bool) -> Selection:
        import numpy as np

        semantic = self.semantic
        tiers = tuple(self._ranked_tiers(topics, new, several))
        n = len(self.index)
        candidates = _bit_array(new, n)
        # keyword order: by tier, then by position (the tiers' bits, unpacked in one go)
        width = (n + 7) // 8 or 1
        packed = np.frombuffer(b"".join(u.to_bytes(width, "little") for _s, u, _t in tiers),
                               dtype=np.uint8).reshape(len(tiers), width)
        tier_of = np.argmax(np.unpackbits(packed, axis=1, bitorder="little")[:, candidates],
                            axis=0)
        keyword_order = candidates[np.argsort(tier_of, kind="stable")]
        wanted: list[tuple[str | None, list[Any]]] = []
        liked_all: list[Paper] = []
        for topic in subscriber.topics:
            liked = self._liked(topic, feedback)
            liked_all.extend(p for p in liked if p not in liked_all)
            if topic.about or liked:
                wanted.append((topic.about, [semantic.paper_vector(p) for p in liked]))
        disliked = [semantic.paper_vector(p) for p in feedback.less]
        order = (semantic.rerank(candidates, keyword_order, wanted, disliked)
                 if wanted or disliked else keyword_order.tolist())
        picks = tuple(self._pick(topics, i, *_placed(tiers, i)) for i in order[:limit])
        more = len(order) - len(picks)
        cut: tuple[Pick, ...] = ()
        if with_cut and more:
            with _gc_paused():
                cut = tuple(self._pick(topics, i, *_placed(tiers, i)) for i in order[limit:])
        also: tuple[Pick, ...] = ()
        if liked_all:
            taken = new | self._sent(history | {p.id for p in liked_all}) | ~allowed
            name = subscriber.topics[0].name
            also = tuple(
                Pick(paper=self.index.papers[i], topics=(name,),
                     reasons=(Reason(name, liked_all[k].title, "abstract", "like"),),
                     rank=Rank(0, 0, 0))
                for i, k in semantic.also([semantic.paper_vector(p) for p in liked_all],
                                          taken))
        return Selection(subscriber=subscriber, picks=picks, more=more, cut=cut, also=also)


def _bit_array(mask: int, n: int) -> np.ndarray:
    """The set bits of ``mask`` (below ``n``) as an ascending array, without a Python loop."""
    import numpy as np

    raw = np.frombuffer(mask.to_bytes((n + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little"))


def _placed(tiers: Sequence[_Tier], i: int) -> tuple[int, _Group]:
    """Paper ``i``'s score and who builds its pick, from the tiers it is in."""
    low = 1 << i
    for score, union, tier in tiers:
        if union & low:
            for mask, group in tier:
                if mask & low:
                    return score, group
    raise KeyError(i)


def _distinct(reasons: list[Reason]) -> list[Reason]:
    """Reasons title first, one per (topic, spelling): two terms of a topic may find a paper
    through the same spelling ("quantization" itself, and "quantization (same as low-bit)");
    the plain one is kept."""
    reasons.sort(key=lambda r: (r.where != "title", r.via != ""))
    seen: set[tuple[str, str]] = set()
    out = []
    for reason in reasons:
        key = (reason.topic, reason.term.casefold())
        if key not in seen:
            seen.add(key)
            out.append(reason)
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    # CPython's cyclic collector rescans young objects each few hundred allocations; a plan
    # or a cut allocates many picks and no cycles, so pause it and restore its state after.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan(papers: Iterable[Paper], subscribers: Iterable[Subscriber],
         history: Mapping[str, frozenset[str]], *, build_cuts: bool = False,
         vocabulary: Vocabulary | None = None, feedback: Mapping[str, Feedback] | None = None
         ) -> tuple[Selection, ...]:
    """Every subscriber's selection against one index; ``history`` keys are lower-cased emails.

    A send only counts the cuts (``Selection.more``). A caller that shows every cut
    (``digest plan``) passes ``build_cuts=True``: they are built here, with the collector
    paused (its full passes over a big plan cost more than building the picks: 2 s for
    900,000 cut picks on this machine)."""
    with _gc_paused():
        selector = Selector(papers, vocabulary)
        subscribers = tuple(subscribers)
        abouts = [t.about for s in subscribers for t in s.topics if t.about]
        if abouts:
            selector.semantic.prepare(abouts)  # one batch for every sentence of the run
        feedback = feedback or {}
        return tuple(selector.select(s, history.get(s.email.lower(), frozenset()),
                                     feedback.get(s.email.lower()), with_cut=build_cuts)
                     for s in subscribers)
