"""Term matching: how a topic term written by a user finds papers, exactly and fast.

Owns: the term language (compiled once per distinct term), the tokenizer that turns a paper's
title and abstract into matchable tokens (once per paper), and ``PaperIndex``, an inverted
index token -> positions that answers "which papers does this term hit, where, how often"
with dictionary look-ups instead of a regex per (term, paper). ``term_regex`` spells the same
language as one regular expression: the naive baseline the benchmark compares against, and
the oracle the tests check the index against. May import ``digest.models`` and
``digest.text`` only; pure, no I/O.

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
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from digest.models import Paper
from digest.text import normalize, term_words

TITLE, ABSTRACT = 0, 1
_TOKEN = re.compile(r"[^\W_]+")
_SPLIT = re.compile(r"([^\W_]+)")
_SHIFT = 20  # a posting is slot << 20 | position: a field's first ~1M tokens are indexed
_POSITION = (1 << _SHIFT) - 1
_MAX_TOKENS = 1 << _SHIFT
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class Term:
    """One compiled term. ``key`` identifies it across subscribers ("LLM" and "llm" share it)."""

    raw: str  # as the user wrote it, for reasons
    words: tuple[str, ...]  # folded words; empty when the term has no letters or digits
    wildcard: bool
    # Stored, not a property: the selector reads it for every (topic, term) it compiles.
    key: tuple[tuple[str, ...], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.words, self.wildcard))


def compile_term(raw: str) -> Term:
    words, wildcard = term_words(raw)
    return Term(raw=raw.strip(), words=words, wildcard=wildcard)


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


@dataclass(frozen=True)
class TermHits:
    """Where one term hit: bit i of a mask is paper i of the index; ``papers`` maps each paper
    hit to (hit in its title, number of hits in its abstract)."""

    title: int = 0
    abstract: int = 0
    papers: dict[int, tuple[bool, int]] = field(default_factory=dict)
    anywhere: int = field(init=False)  # title | abstract, read for every topic using the term

    def __post_init__(self) -> None:
        object.__setattr__(self, "anywhere", self.title | self.abstract)


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
        # Feeds repeat text (the same abstract under two ids, cross-lists, a title twice):
        # fold (LaTeX cleaning: most of the index's cost) and split each distinct text once.
        seen: dict[str, tuple[list[str], list[bool]]] = {}
        for paper in self.papers:
            for text in (paper.title, paper.abstract):
                split = seen.get(text)
                if split is None:
                    split = seen[text] = _split(normalize(text))
                self._add_slot(*split)
        self._vocabulary: list[str] | None = None
        self._cache: dict[tuple[tuple[str, ...], bool], TermHits] = {}
        self._shapes: dict[tuple[bool, int], tuple[bool, int]] = {(True, 0): (True, 0)}

    def _add_slot(self, tokens: list[str], joinable: list[bool]) -> None:
        base = len(self._tokens) << _SHIFT
        self._tokens.append(tokens)  # shared between slots with the same text: read only
        self._joinable.append(joinable)
        postings = self._postings
        for pos, token in enumerate(tokens, base):
            postings[token].append(pos)

    def __len__(self) -> int:
        return len(self.papers)

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
            if k == 0:
                for form in forms:
                    starts.update(postings[form])
                continue
            # Start from the rarest token of the phrase (its last token counts all its
            # forms), then verify the rest in place with C-level slice comparisons.
            offset, rarest = min(enumerate(heads), key=lambda e: len(postings[e[1]]))
            candidates: list[int] = postings[rarest]
            if sum(len(postings[f]) for f in forms) < len(candidates):
                offset = k
                candidates = [code for f in forms for code in postings[f]]
            last_ok = set(forms)
            all_tokens, all_joinable = self._tokens, self._joinable
            for code in candidates:
                s = (code & _POSITION) - offset
                if s < 0:
                    continue
                slot = code >> _SHIFT
                tokens = all_tokens[slot]
                if (s + k < len(tokens) and tokens[s + k] in last_ok
                        and tokens[s:s + k] == heads and all(all_joinable[slot][s:s + k])):
                    starts.add(code - offset)
        title = abstract = 0
        papers: dict[int, tuple[bool, int]] = {}
        shapes = self._shapes
        # One entry per field hit, not per hit: the counts come from C.
        for slot, count in sorted(Counter([code >> _SHIFT for code in starts]).items()):
            paper = slot >> 1
            if slot & 1 == TITLE:
                title |= 1 << paper
                papers[paper] = shapes[True, 0]
            else:
                abstract |= 1 << paper
                # its title slot came just before; one shared tuple per distinct hit
                hit = (paper in papers, count)
                papers[paper] = shapes.setdefault(hit, hit)
        return TermHits(title, abstract, papers)


def _split(text: str) -> tuple[list[str], list[bool]]:
    """A field's tokens and, for each gap between two of them, whether a term may cross it."""
    # re.split with a group alternates gap, token, gap, ..., token, gap (all in C).
    parts = _SPLIT.split(text)
    tokens = parts[1:-1:2][:_MAX_TOKENS]
    return tokens, [g == " " or g == "-" for g in parts[2:-1:2]]


def bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
