"""The field's vocabulary: which other spellings a topic term also finds, and why.

Owns the shipped vocabulary (``digest/data/vocabulary.json``, built by
scripts/build_vocabulary.py from a reviewed list plus abbreviations mined from abstracts) and
the rules that read it:

- a *concept* has spellings that are the same thing (``same``: GNN, graph neural network)
  and narrower ones (``kinds``: GCN, graph attention network). A term that is a spelling of
  a concept also finds its other spellings ("same as GNN") and its kinds, with their own
  spellings ("a kind of GNN"); a kind never finds its parent;
- spellings are compared by ``spelling_key``: the term's words run together, the last one
  stemmed (acronyms: singular), so "graph neural networks" and "Graph-Neural-Network" are one;
- a short acronym is *ambiguous* when the abbreviations seen in abstracts (shipped, plus the
  day's papers) give it a long form sharing no meaningful word with the one it stands for
  here (ASR: automatic speech recognition, but also attack success rate). The selector then counts it only in a
  paper that defines it as the intended long form, or names that long form or one of its
  distinctive words ("speech").

May import ``_terms``, ``_forms`` and ``_abbreviations``; reads package data once; pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from digest.selection._forms import stem, stemmable
from digest.selection._terms import compile_term

VOCABULARY_FILE = "vocabulary.json"
MAX_ACRONYM = 5  # letters: longer abbreviations (SimCLR, StyleGAN) are names, not ambiguous
# Words of a long form too common to say which long form a paper means.
_GENERIC = frozenset(
    "a an and for from in of on or the to with via by based deep neural network networks "
    "learning model models method methods system systems automatic automated data large "
    "small new general generalized function functions process processing analysis set "
    "rate rates task tasks training train efficient approach framework".split())


def spelling_key(raw: str) -> str:
    """Two spellings with one key are one spelling: words run together, last one stemmed."""
    term = compile_term(raw)
    if not term.words:
        return ""
    *heads, last = term.words
    written = raw.strip().rstrip("*")
    if term.mode == "acronym":
        # GANs, LLMs: a lower-case s after a capital is a plural; NAS, MoCo stay as they are
        if len(written) > 2 and written[-1] == "s" and written[-2].isupper():
            last = last[:-1]
    elif stemmable(last):
        last = stem(last)
    return "".join((*heads, last))


def _words(long_form: str) -> set[str]:
    return {stem(w) for w in compile_term(long_form).words}


def same_long_form(a: str, b: str) -> bool:
    """Whether two long forms of one abbreviation name one thing: the same spelling once run
    together, or more than half of the words of the shorter one (stemmed) in the other
    ("generative adversarial nets" and "... networks"; not "attack success rate" and
    "automatic speech recognition")."""
    if spelling_key(a) == spelling_key(b):  # "rein forcement learning", "auto encoders"
        return True
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return False
    shared = len(wa & wb)
    return shared * 2 > min(len(wa), len(wb))


def unrelated(a: str, b: str) -> bool:
    """Whether two long forms share no meaningful word at all (attack success rate,
    automatic speech recognition): a near-spelling ("convolutional nns") is not another
    meaning."""
    if same_long_form(a, b):
        return False
    wa = {stem(w) for w in compile_term(a).words if w not in _GENERIC}
    wb = {stem(w) for w in compile_term(b).words if w not in _GENERIC}
    return not wa & wb


@dataclass(frozen=True)
class Variant:
    """Another spelling a term finds: ``raw`` as the vocabulary writes it, ``note`` for the
    reason ("same as GNN", "a kind of GNN")."""

    raw: str
    note: str


@dataclass(frozen=True)
class Concept:
    same: tuple[str, ...]
    kinds: tuple[str, ...] = ()


class Vocabulary:
    """Concepts and known abbreviations, indexed by spelling key."""

    def __init__(self, concepts: Sequence[Concept],
                 abbreviations: Mapping[str, Sequence[tuple[str, int]]] = {}) -> None:
        self.concepts = tuple(concepts)
        self._by_key: dict[str, list[int]] = {}
        for n, concept in enumerate(self.concepts):
            for spelling in concept.same:
                self._by_key.setdefault(spelling_key(spelling), []).append(n)
        # short form key -> long forms seen in abstracts, with how often
        self.abbreviations = {k: tuple(v) for k, v in abbreviations.items()}

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        concepts = [Concept(tuple(c["same"]), tuple(c.get("kinds", ())))
                    for c in data["concepts"]]
        abbreviations = {k: [(lf, int(n)) for lf, n in v]
                         for k, v in data.get("abbreviations", {}).items()}
        return cls(concepts, abbreviations)

    def __len__(self) -> int:
        return len(self.concepts)

    def _concepts(self, raw: str) -> list[Concept]:
        return [self.concepts[n] for n in self._by_key.get(spelling_key(raw), ())]

    def variants(self, raw: str) -> tuple[Variant, ...]:
        """The other spellings ``raw`` finds, same ones first, each once."""
        own = spelling_key(raw)
        seen = {own}
        same: list[Variant] = []
        kinds: list[Variant] = []
        shown = raw.strip()
        for concept in self._concepts(raw):
            for spelling in concept.same:
                key = spelling_key(spelling)
                if key not in seen:
                    seen.add(key)
                    same.append(Variant(spelling, f"same as {shown}"))
            for kind in concept.kinds:
                for spelling in (kind, *(s for c in self._concepts(kind) for s in c.same)):
                    key = spelling_key(spelling)
                    if key not in seen:
                        seen.add(key)
                        kinds.append(Variant(spelling, f"a kind of {shown}"))
        return tuple(same + kinds)

    def intended(self, short: str) -> tuple[str, ...]:
        """The long forms an acronym stands for here: its concepts' spellings that are not
        acronyms; else the one most often seen in abstracts."""
        out = [s for c in self._concepts(short) for s in c.same
               if compile_term(s).mode != "acronym"]
        if out:
            return tuple(dict.fromkeys(out))
        seen = self.abbreviations.get(spelling_key(short), ())
        return (max(seen, key=lambda e: e[1])[0],) if seen else ()

    def ambiguous(self, short: str, also_seen: Iterable[str] = ()) -> bool:
        """Whether a short acronym has a known long form unrelated to the intended ones
        (``also_seen``: long forms the day's papers define it as)."""
        term = compile_term(short)
        if len(term.words) != 1 or term.mode != "acronym" or len(term.words[0]) > MAX_ACRONYM:
            return False
        intended = self.intended(short)
        seen = [lf for lf, _n in self.abbreviations.get(spelling_key(short), ())]
        seen.extend(also_seen)
        if not intended:
            return any(unrelated(seen[0], lf) for lf in seen[1:])
        return any(all(unrelated(lf, i) for i in intended) for lf in seen)

    def cue_words(self, short: str) -> tuple[str, ...]:
        """Distinctive words of the intended long forms ("speech" for ASR): a paper that
        names one of them means the intended sense."""
        out: dict[str, None] = {}
        for lf in self.intended(short):
            for word in compile_term(lf).words:
                if len(word) >= 4 and word not in _GENERIC:
                    out[word] = None
        return tuple(out)


@lru_cache(maxsize=1)
def shipped_vocabulary() -> Vocabulary:
    """The vocabulary in the package (``digest/data/vocabulary.json``), read once."""
    text = resources.files("digest").joinpath("data", VOCABULARY_FILE).read_text("utf-8")
    return Vocabulary.from_json(text)
