"""Term matching: how a topic term written by a user finds papers, exactly and fast.

Owns: the term language (compiled once per distinct term), the tokenizer that turns a paper's
title and abstract into matchable tokens (once per paper), and ``PaperIndex``, an inverted
index token -> positions that answers "which papers does this term hit, where, how often"
with dictionary look-ups instead of a regex per (term, paper). ``term_regex`` spells the same
language as one regular expression: the naive baseline the benchmark compares against, and
the oracle the tests check the index against. May import ``digest.models`` and
``digest.textclean`` only; pure, no I/O.

The term language (see docs/plan-json.md and the selector's docstring for topics):
- matching is case-insensitive and on ``textclean.fold`` text, so ``Fr\\'echet`` = Fréchet;
- a term is a whole phrase on word boundaries; words are runs of letters and digits;
- between two words of a term, any separator (space, hyphen, other punctuation) matches a
  single space, a single hyphen (or en/figure dash glued between the words) or nothing in the
  text ("mixture of experts" finds "Mixture-of-Experts" and "mixtureofexperts");
- the last word also finds its simple plural (+s, +es, consonant+y -> ies): "LLM" finds "LLMs";
- a trailing ``*`` makes the last word a prefix: "unlearn*" finds unlearning, unlearned.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from digest.models import Paper
from digest.textclean import fold

TITLE, ABSTRACT = 0, 1
_TOKEN = re.compile(r"[^\W_]+")
_SPLIT = re.compile(r"([^\W_]+)")
_SHIFT = 20  # a posting is slot << 20 | position: a field's first ~1M tokens are indexed
_POSITION = (1 << _SHIFT) - 1
_MAX_TOKENS = 1 << _SHIFT
# fold() keeps Unicode hyphens (U+2010; NFKD maps the non-breaking U+2011 to it) and dashes
# as they are. A hyphen, figure dash or en dash glued between two words joins them like "-"
# ("Fokker–Planck", and LaTeX "Fokker--Planck" which clean_text turns into an en dash); a
# spaced dash (" – ") stays a gap no term crosses, and the em dash is punctuation.
_HYPHENS = str.maketrans({"\u2010": "-", "\u2012": "-", "\u2013": "-"})
_VOWELS = frozenset("aeiou")


def normalize(text: str) -> str:
    """The exact text terms are matched against: folded, with Unicode hyphens made ASCII."""
    return fold(text).translate(_HYPHENS)


@dataclass(frozen=True)
class Term:
    """One compiled term. ``key`` identifies it across subscribers ("LLM" and "llm" share it)."""

    raw: str  # as the user wrote it, for reasons
    words: tuple[str, ...]  # folded words; empty when the term has no letters or digits
    wildcard: bool

    @property
    def key(self) -> tuple[tuple[str, ...], bool]:
        return (self.words, self.wildcard)


def compile_term(raw: str) -> Term:
    text = raw.strip()
    wildcard = text.endswith("*")
    words = tuple(_TOKEN.findall(normalize(text.rstrip("*"))))
    return Term(raw=text, words=words, wildcard=wildcard)


def term_problem(raw: str) -> str | None:
    """Why a term can never match (for config validation), or None when it is usable."""
    text = raw.strip()
    if not text:
        return "empty term"
    if not compile_term(text).words:
        return f"term {text!r} has no letters or digits, so it can never match"
    if "*" in text.rstrip("*"):
        return f"term {text!r}: '*' is only a wildcard at the end of a term"
    return None


def plural_forms(word: str) -> tuple[str, ...]:
    """The word and its simple plurals, the forms a plain last word of a term finds."""
    forms = [word, word + "s", word + "es"]
    if len(word) > 1 and word.endswith("y") and word[-2] not in _VOWELS:
        forms.append(word[:-1] + "ies")
    return tuple(forms)


def term_regex(term: Term) -> re.Pattern[str] | None:
    """The same language as one regex over ``normalize``d text: the naive baseline."""
    if not term.words:
        return None
    *heads, last = term.words
    if term.wildcard:
        tail = re.escape(last) + r"[^\W_]*"
    else:
        tail = "(?:" + "|".join(re.escape(f) for f in sorted(plural_forms(last), key=len,
                                                            reverse=True)) + ")"
    body = "".join(re.escape(w) + "[- ]?" for w in heads) + tail
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])")


@dataclass
class TermHits:
    """Where one term hit: bit i of a mask is paper i of the index; ``papers`` maps each paper
    hit to (hit in its title, number of hits in its abstract)."""

    title: int = 0
    abstract: int = 0
    papers: dict[int, tuple[bool, int]] = field(default_factory=dict)

    @property
    def anywhere(self) -> int:
        return self.title | self.abstract

    @property
    def abstract_counts(self) -> dict[int, int]:
        return {i: n for i, (_t, n) in self.papers.items() if n}


class PaperIndex:
    """Papers tokenized once, with an inverted index; ``hits(term)`` is cached per term key.

    A "slot" is ``paper_index * 2 + field`` (field TITLE or ABSTRACT). For each slot we keep
    its tokens and, for each gap between token i and i+1, whether the gap is exactly one space
    or one hyphen (the only gaps a term's word separator may cross).
    """

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.papers = tuple(papers)
        self._tokens: list[list[str]] = []
        self._joinable: list[list[bool]] = []
        # token -> postings, each ``slot << _SHIFT | position`` (a plain int: no tuple each)
        self._postings: defaultdict[str, list[int]] = defaultdict(list)
        for paper in self.papers:
            for text in (paper.title, paper.abstract):
                self._add_slot(normalize(text))
        self._vocabulary: list[str] | None = None
        self._cache: dict[tuple[tuple[str, ...], bool], TermHits] = {}

    def _add_slot(self, text: str) -> None:
        base = len(self._tokens) << _SHIFT
        # re.split with a group alternates gap, token, gap, ..., token, gap (all in C).
        parts = _SPLIT.split(text)
        tokens = parts[1:-1:2][:_MAX_TOKENS]
        self._tokens.append(tokens)
        self._joinable.append([g == " " or g == "-" for g in parts[2:-1:2]])
        postings = self._postings
        for pos, token in enumerate(tokens, base):
            postings[token].append(pos)

    def __len__(self) -> int:
        return len(self.papers)

    @property
    def vocabulary_size(self) -> int:
        return len(self._postings)

    def hits(self, term: Term) -> TermHits:
        key = term.key
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._lookup(term)
        return found

    # ------------------------------------------------------------------ lookup

    def _last_forms(self, word: str, wildcard: bool) -> list[str]:
        if not wildcard:
            return [f for f in plural_forms(word) if f in self._postings]
        if self._vocabulary is None:
            self._vocabulary = sorted(self._postings)
        vocab = self._vocabulary
        out = []
        i = bisect_left(vocab, word)
        while i < len(vocab) and vocab[i].startswith(word):
            out.append(vocab[i])
            i += 1
        return out

    def _groupings(self, words: tuple[str, ...], wildcard: bool
                   ) -> Iterator[tuple[list[str], list[str]]]:
        """Every way to glue adjacent term words into text tokens ("nothing" between them),
        as (leading tokens, allowed forms of the last token); pruned by the vocabulary."""
        n = len(words)

        def walk(i: int, heads: list[str]) -> Iterator[tuple[list[str], list[str]]]:
            for j in range(i + 1, n + 1):
                glued = "".join(words[i:j])
                if j == n:
                    forms = self._last_forms(glued, wildcard)
                    if forms:
                        yield heads, forms
                elif glued in self._postings:  # (`in` never adds to the defaultdict)
                    yield from walk(j, heads + [glued])

        yield from walk(0, [])

    def _lookup(self, term: Term) -> TermHits:
        starts: set[int] = set()  # postings codes of each match's first token
        postings = self._postings
        for heads, forms in self._groupings(term.words, term.wildcard):
            k = len(heads)
            last_ok = set(forms)
            if k == 0:
                for form in forms:
                    starts.update(postings[form])
                continue
            # Start from the rarest token of the phrase, then verify the rest in place.
            offset, rarest = min(enumerate(heads), key=lambda e: len(postings[e[1]]))
            for code in postings[rarest]:
                slot, pos = code >> _SHIFT, code & _POSITION
                s = pos - offset
                if s < 0:
                    continue
                tokens = self._tokens[slot]
                if s + k >= len(tokens) or tokens[s + k] not in last_ok:
                    continue
                joinable = self._joinable[slot]
                if all(tokens[s + i] == heads[i] and joinable[s + i] for i in range(k)):
                    starts.add(code - offset)
        in_title: set[int] = set()
        counts: dict[int, int] = {}
        for code in starts:
            paper, where = divmod(code >> _SHIFT, 2)
            if where == TITLE:
                in_title.add(paper)
            else:
                counts[paper] = counts.get(paper, 0) + 1
        hits = TermHits()
        for paper in in_title:
            hits.title |= 1 << paper
        for paper in counts:
            hits.abstract |= 1 << paper
        hits.papers = {paper: (paper in in_title, counts.get(paper, 0))
                       for paper in in_title | counts.keys()}
        return hits


def bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
