"""Term matching: how a topic term written by a user finds papers, forgivingly and fast.

Owns: the term language (compiled once per distinct term), the tokenizer that turns a paper's
title and abstract into matchable tokens (once per paper), and ``PaperIndex``, an inverted
index token -> positions that answers "which papers does this term hit, where, how often"
with dictionary look-ups instead of a scan per (term, paper). ``scan`` spells the same
language as a plain walk over one text's tokens: the naive baseline the benchmark compares
against, and the oracle the tests check the index against. Which word is a form of which is
``_forms``; a term's syntax and its one usability check are ``digest.text``'s. May import
``digest.models``, ``digest.text`` and ``_forms``; pure, no I/O.

The term language (docs/selection.md has it for users):
- matching is case-insensitive and on ``text.fold`` text, so ``Fr\\'echet`` = Fréchet;
- a term is a whole phrase on word boundaries; words are runs of letters and digits;
- compounds are open, hyphenated or closed, both ways: between two words of a term, any
  separator matches a single space, a single hyphen (or en/figure dash glued between the
  words) or nothing ("mixture of experts" finds "Mixture-of-Experts"), and one word of a
  term also finds itself split in two by a space or hyphen ("pretrained" finds
  "pre-trained" and "pre trained");
- the last word finds its forms (``_forms.is_form``): plural and singular, and the
  inflections the English Snowball stemmer gives ("quantization" finds quantized,
  quantizing; "transformers" finds transformer but not transformation); a word written with
  two or more capitals is an acronym and takes plural and singular only ("LLMs" = "LLM");
- ``=term`` is exact: only the words as written (separators still space or hyphen);
- a trailing ``*`` makes the last word a prefix: "unlearn*" finds unlearning, unlearned.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
import re
from typing import Literal

from digest.models import Paper
from digest.selection._forms import (
    is_form,
    plural_forms,
    singular_forms,
    stem_prefix,
    stemmable,
)
from digest.text import normalize

TITLE, ABSTRACT = 0, 1
_TOKEN = re.compile(r"[^\W_]+")
_SPLIT = re.compile(r"([^\W_]+)")
MIN_PART = 2  # a closed compound splits into parts of 2+ letters: pre + trained
_SHIFT = 20  # a posting is slot << 20 | position: a field's first ~1M tokens are indexed
_POSITION = (1 << _SHIFT) - 1
_MAX_TOKENS = 1 << _SHIFT
Mode = Literal["forms", "acronym", "exact", "prefix"]
TermKey = tuple[tuple[str, ...], Mode]


@dataclass(frozen=True)
class Term:
    """One compiled term. ``key`` identifies it across subscribers ("LLM" and "llm" share it).

    ``mode`` says which forms its last word takes: "forms" (plurals and Snowball
    inflections), "acronym" (plural and singular only: written with capitals, as GAN or
    LLMs), "exact" (written ``=term``: the words as written, no compound spellings), "prefix"
    (a trailing ``*``)."""

    raw: str  # as the user wrote it, for reasons
    words: tuple[str, ...]  # folded words; empty when the term has no letters or digits
    mode: Mode = "forms"
    # Stored, not a property: the selector reads it for every (topic, term) it compiles.
    key: TermKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.words, self.mode))

    @property
    def wildcard(self) -> bool:
        return self.mode == "prefix"

    @property
    def shown(self) -> str:
        """The term as a reason shows it: without the ``=`` of an exact term."""
        return self.raw[1:].strip() if self.mode == "exact" else self.raw


def is_acronym(word: str) -> bool:
    """GAN, LLMs, MoE, NeRF, 3DGS: a short word written with two or more capitals."""
    return len(word) <= 6 and sum(c.isupper() for c in word) >= 2


def compile_term(raw: str) -> Term:
    text = raw.strip()
    exact = text.startswith("=")
    body = text[1:].strip() if exact else text
    wildcard = body.endswith("*")
    written = _TOKEN.findall(body.rstrip("*"))
    words = tuple(_TOKEN.findall(normalize(body.rstrip("*"))))
    # A short word (llm, gan) has no inflections to find: it shares the acronym's key.
    mode: Mode = ("prefix" if wildcard else "exact" if exact
                  else "acronym" if written and (is_acronym(written[-1])
                                                 or not stemmable(words[-1])) else "forms")
    return Term(raw=text, words=words, mode=mode)


def word_matches(word: str, token: str, mode: Mode) -> bool:
    """Whether a paper's ``token`` is a form of a term's last ``word`` in ``mode``."""
    if mode == "prefix":
        return token.startswith(word)
    if mode == "exact":
        return token == word
    return is_form(word, token, acronym=mode == "acronym")


def _splits(word: str) -> Iterator[tuple[str, str]]:
    """The ways one word of a term may be written as two: pretrained -> pre + trained."""
    for k in range(MIN_PART, len(word) - MIN_PART + 1):
        yield word[:k], word[k:]


def scan(term: Term, text: str) -> int:
    """How many times ``term`` occurs in ``text`` (``normalize``d), found by trying every
    token position in turn: the plain reading of the term language."""
    if not term.words:
        return 0
    tokens, joinable = _split_once(text)
    words, mode = term.words, term.mode
    first = words[0][:2]  # every spelling of the term starts with these letters
    n = len(words)

    def joins(p: int) -> bool:  # may a term cross the gap after token p?
        return p < len(joinable) and joinable[p]

    def match(i: int, p: int) -> bool:
        # words[i:] from token p on (p is reached by a crossable gap, or is the start)
        if p >= len(tokens):
            return False
        for j in range(i + 1, n + 1 if mode != "exact" else i + 2):
            unit = "".join(words[i:j])
            last = j == n
            if (word_matches(unit, tokens[p], mode) if last else tokens[p] == unit) and (
                    last or (joins(p) and match(j, p + 1))):
                return True
            if mode == "exact" or j != i + 1 or not joins(p) or p + 1 >= len(tokens):
                continue
            for a, b in _splits(unit):
                if tokens[p] != a:
                    continue
                if last and word_matches(b, tokens[p + 1], mode):
                    return True
                if not last and tokens[p + 1] == b and joins(p + 1) and match(j, p + 2):
                    return True
        return False

    return sum(1 for p, token in enumerate(tokens) if token.startswith(first) and match(0, p))


@lru_cache(maxsize=4096)
def _split_once(text: str) -> tuple[list[str], list[bool]]:
    return _split(text)  # scan is called per (term, text): split each text once


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
        self._cache: dict[TermKey, TermHits] = {}
        self._forms: dict[tuple[str, Mode], list[str]] = {}
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

    def _sorted_vocabulary(self) -> list[str]:
        if self._vocabulary is None:
            self._vocabulary = sorted(self._postings)
        return self._vocabulary

    def _with_prefix(self, prefix: str) -> Iterator[str]:
        vocab = self._sorted_vocabulary()
        i = bisect_left(vocab, prefix)
        while i < len(vocab) and vocab[i].startswith(prefix):
            yield vocab[i]
            i += 1

    def _last_forms(self, word: str, mode: Mode) -> list[str]:
        """The tokens of these papers that are forms of a term's last ``word``."""
        key = (word, mode)
        found = self._forms.get(key)
        if found is not None:
            return found
        postings = self._postings
        if mode == "prefix":
            found = list(self._with_prefix(word))
        elif mode == "exact":
            found = [word] if word in postings else []
        else:
            found = [f for f in (*plural_forms(word), *singular_forms(word)) if f in postings]
            if mode == "forms" and stemmable(word):
                seen = set(found)
                found.extend(t for t in self._with_prefix(stem_prefix(word))
                             if t not in seen and is_form(word, t))
        self._forms[key] = found
        return found

    def _groupings(self, words: tuple[str, ...], mode: Mode
                   ) -> Iterator[tuple[list[str], list[str]]]:
        """Every way to write the term's words as text tokens: adjacent words glued into one
        token ("nothing" between them), one word split into two ("pre" "trained"); as
        (leading tokens, allowed forms of the last token), pruned by the vocabulary."""
        n = len(words)
        postings = self._postings  # (`in` never adds to the defaultdict)
        exact = mode == "exact"

        def walk(i: int, heads: list[str]) -> Iterator[tuple[list[str], list[str]]]:
            for j in range(i + 1, n + 1 if not exact else i + 2):
                glued = "".join(words[i:j])
                if j == n:
                    forms = self._last_forms(glued, mode)
                    if forms:
                        yield heads, forms
                elif glued in postings:
                    yield from walk(j, heads + [glued])
                if exact or j != i + 1:
                    continue
                for a, b in _splits(glued):
                    if a not in postings:
                        continue
                    if j == n:
                        forms = self._last_forms(b, mode)
                        if forms:
                            yield heads + [a], forms
                    elif b in postings:
                        yield from walk(j, heads + [a, b])

        yield from walk(0, [])

    def _lookup(self, term: Term) -> TermHits:
        starts: set[int] = set()  # postings codes of each match's first token
        postings = self._postings
        for heads, forms in self._groupings(term.words, term.mode):
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
