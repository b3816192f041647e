"""A topic term's hits, widened by the vocabulary and narrowed where an acronym is ambiguous.

Owns ``Widener``: for one ``PaperIndex`` and one ``Vocabulary``, the hits of a term as the
selector uses them: the term's own hits plus those of every other spelling the vocabulary
gives it (``Vocabulary.variants``, unless the topic says ``expand: false`` or the term is
``=exact`` or a ``*`` prefix), where a paper hit only through another spelling carries that
spelling and why ("GCN", "a kind of GNN") for its reason. A spelling that is an ambiguous short
acronym (``Vocabulary.ambiguous``, counting the long forms today's papers define it as) counts
only in papers that define it as the intended long form, or (defining it as nothing else)
name that long form or one of its cue words; and an acronym's repeats in one abstract count
at most ``ACRONYM_REPEATS`` times, so a paper that keeps saying "ASR" does not outrank one
that names the subject in its title (title hits rank first anyway) or says it twice in words.
May import ``_terms``, ``_vocabulary`` and ``_abbreviations``; pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from digest.selection._abbreviations import definitions
from digest.selection._terms import PaperIndex, Term, TermHits, compile_term
from digest.selection._vocabulary import Vocabulary, same_long_form, spelling_key

ACRONYM_REPEATS = 2

Labels = dict[int, tuple[str, str]]


class Widener:
    def __init__(self, index: PaperIndex, vocabulary: Vocabulary) -> None:
        self.index = index
        self.vocabulary = vocabulary
        self._definitions: dict[int, dict[str, list[str]]] = {}
        self._gated: dict[str, TermHits] = {}
        self._cache: dict[tuple[str, bool], tuple[Term, TermHits, Labels]] = {}

    def hits(self, raw: str, expand: bool = True) -> tuple[Term, TermHits, Labels]:
        """The term, its widened hits, and the papers found only through another spelling."""
        key = (raw, expand)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._widen(raw, expand)
        return found

    def widens(self, raw: str, expand: bool = True) -> bool:
        term = compile_term(raw)
        return expand and term.mode in ("forms", "acronym") and bool(
            self.vocabulary.variants(term.shown))

    # ------------------------------------------------------------------ inside

    def _widen(self, raw: str, expand: bool) -> tuple[Term, TermHits, Labels]:
        term = compile_term(raw)
        own = self._spelling(term)
        if not expand or term.mode not in ("forms", "acronym"):
            return term, own, {}
        variants = self.vocabulary.variants(term.shown)
        if not variants:
            return term, own, {}
        papers = dict(own.papers)
        title, abstract = own.title, own.abstract
        labels: Labels = {}
        for variant in variants:
            hits = self._spelling(compile_term(variant.raw))
            for i, (in_title, count) in hits.papers.items():
                known = papers.get(i)
                if known is None:
                    papers[i] = (in_title, count)
                    labels[i] = (variant.raw, variant.note)
                    continue
                better = (known[0] or in_title, max(known[1], count))
                if i in labels and (in_title, count) > known:
                    labels[i] = (variant.raw, variant.note)  # the best of the other spellings
                papers[i] = better
            title |= hits.title
            abstract |= hits.abstract
        return term, TermHits(title, abstract, papers), labels

    def _spelling(self, term: Term) -> TermHits:
        """One spelling's hits, narrowed when it is an ambiguous acronym."""
        hits = self.index.hits(term)
        if term.mode != "acronym" or len(term.words) != 1 or not hits.papers:
            return hits
        short = term.shown
        key = spelling_key(short)
        gated = self._gated.get(key)
        if gated is not None:
            return gated
        if not self.ambiguous(short):
            gated = self._capped(hits, hits.papers.keys())
        else:
            intended = self.vocabulary.intended(short)
            cues = [compile_term(s) for s in (*intended, *self.vocabulary.cue_words(short))]
            cue_mask = 0
            for cue in cues:
                cue_mask |= self.index.hits(cue).anywhere
            keep = []
            for i in hits.papers:
                defined = self._defined(i).get(key)
                if defined:
                    if any(same_long_form(d, lf) for d in defined for lf in intended):
                        keep.append(i)
                elif cue_mask >> i & 1:
                    keep.append(i)
            gated = self._capped(hits, keep)
        self._gated[key] = gated
        return gated

    @staticmethod
    def _capped(hits: TermHits, keep: Iterable[int]) -> TermHits:
        papers = {}
        title = abstract = 0
        for i in keep:
            in_title, count = hits.papers[i]
            papers[i] = (in_title, min(count, ACRONYM_REPEATS))
            if in_title:
                title |= 1 << i
            if count:
                abstract |= 1 << i
        return TermHits(title, abstract, papers)

    def ambiguous(self, short: str) -> bool:
        """``Vocabulary.ambiguous``, with the long forms today's papers define it as."""
        term = compile_term(short)
        key = spelling_key(short)
        seen_today = [lf for i in self.index.hits(term).papers
                      for lf in self._defined(i).get(key, ())]
        return self.vocabulary.ambiguous(short, seen_today)

    def _defined(self, i: int) -> dict[str, list[str]]:
        """The abbreviations paper ``i`` defines: short form key -> long forms."""
        found = self._definitions.get(i)
        if found is None:
            paper = self.index.papers[i]
            found = {}
            for short, long_form in definitions(f"{paper.title}. {paper.abstract}"):
                found.setdefault(spelling_key(short), []).append(long_form)
            self._definitions[i] = found
        return found
