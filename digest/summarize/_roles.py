"""Sentence roles: each sentence's probability of being background / objective / method /
result / other, from a multinomial logistic regression trained on CSAbstruct.

Owns: ``ROLES``, ``role_features`` (shared by training and inference, so the shipped weights
always mean what this computes), ``RoleModel`` and ``sentence_roles``. Pure; imports only the
stage's cue patterns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from digest.summarize._cues import COMPARISON, FACTOR, NUMBER, Cues, words

ROLES = ("background", "objective", "method", "result", "other")


def _bucket(value: int, edges: Sequence[int]) -> int:
    return next((i for i, edge in enumerate(edges) if value < edge), len(edges))


# The constant feature names, made once: the per-sentence f-strings were a fifth of the time.
_POS = tuple(f"pos={k}" for k in range(5))
_POS_WE = tuple(f"pos={k}&we" for k in range(5))
_POS_O1 = tuple(f"pos={k}&o1=" for k in range(5))
# PERCENT's two branches (tests/summarize/test_summarize_fast_forms.py: they are all of it).
_DIGIT_PERCENT = re.compile(r"\d\s?%")
_PER_CENT = re.compile(r"per ?cent")
_LEN = tuple(f"len={_bucket(k, (8, 15, 25, 40))}" for k in range(41))


def _parts(sentences: Sequence[str], found: Sequence[Cues] | None = None) -> list[
        tuple[list[str], list[str], list[str]]]:
    """Per sentence: its context features, its distinct words (sorted) and the words right
    after "we" (``role_features`` prefixes the last two with "w=" and "we="). ``found``: the
    sentences' ``cues`` when the caller has them (their digit and comparison searches are
    the ones made here, on the same lower-cased text; and they hold its words)."""
    n = len(sentences)
    if found is not None:
        lowered = [c.low for c in found]
        tokens: list[Sequence[str]] = [c.words for c in found]
    else:
        lowered = [s.lower() for s in sentences]
        tokens = [words(s) for s in lowered]
    openers = [w[0] if w else "" for w in tokens]
    o1 = ["o1=" + o for o in openers]
    before = ["prev_o1=<s>", *["prev_o1=" + o for o in openers[:-1]]]
    after = [*["next_o1=" + o for o in openers[1:]], "next_o1=</s>"]
    out: list[tuple[list[str], list[str], list[str]]] = []
    for i, (text, toks) in enumerate(zip(lowered, tokens)):
        rel = i / (n - 1) if n > 1 else 0.0
        pos = min(int(rel * 5), 4)
        feats = ["bias", _POS[pos], _LEN[min(len(toks), 40)]]
        if i == 0:
            feats.append("first")
        if i == n - 1:
            feats.append("last")
        if i == 1:
            feats.append("second")
        if n == 1:
            feats.append("only")
        # Position alone says "first sentence = background"; an abstract that opens with
        # "We propose ..." is the exception the conjunctions let the model learn.
        feats += (o1[i], _POS_O1[pos] + openers[i])
        we = "we" in toks
        if we or "our" in toks:
            feats.append(_POS_WE[pos])
        feats += ("o2=" + " ".join(toks[:2]), "o3=" + " ".join(toks[:3]), before[i], after[i])
        cue = found[i] if found is not None else None
        number = cue.strength > 0 if cue is not None else NUMBER.search(text) is not None
        if number:
            feats.append("has_number")
        # PERCENT ("5%", "per cent"), one branch at a time: each opens with what it needs (a
        # digit, "per"), so the engine skips to it, where the two together are tried everywhere.
        if number and _DIGIT_PERCENT.search(text) or "cent" in text and _PER_CENT.search(text):
            feats.append("has_percent")
        if number and FACTOR.search(text):
            feats.append("has_factor")
        if cue.comparison if cue is not None else COMPARISON.search(text):
            feats.append("has_comparison")
        # Words right after "we" name what the authors do: propose / show / find / use.
        after_we = [toks[j + 1] for j in range(len(toks) - 1) if toks[j] == "we"] if we else []
        out.append((feats, sorted(set(toks)), after_we))
    return out


def role_features(sentences: Sequence[str]) -> list[list[str]]:
    """Binary features of each sentence in its abstract."""
    return [feats + ["w=" + w for w in vocabulary] + ["we=" + w for w in after_we]
            for feats, vocabulary, after_we in _parts(sentences)]


@dataclass(frozen=True)
class RoleModel:
    """Softmax weights: feature -> one weight per label (the JSON the training script writes)."""

    labels: tuple[str, ...]
    weights: dict[str, tuple[float, ...]]
    # The "w=<word>" rows of ``weights`` keyed by the bare word: the sentences' vocabulary is
    # most of their features, and looking words up needs no "w=" strings built.
    words: dict[str, tuple[float, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", {k[2:]: v for k, v in self.weights.items()
                                           if k.startswith("w=")})

    @classmethod
    def from_json(cls, raw: object) -> RoleModel:
        if not isinstance(raw, dict):
            raise ValueError("summarizer model: 'roles' must be an object")
        labels = raw.get("labels")
        weights = raw.get("weights")
        if not isinstance(labels, list) or not isinstance(weights, dict):
            raise ValueError("summarizer model: expected 'labels' list and 'weights' object")
        return cls(labels=tuple(str(x) for x in labels),
                   weights={str(k): tuple(float(x) for x in v) for k, v in weights.items()})


def sentence_roles(sentences: Sequence[str], model: RoleModel,
                   found: Sequence[Cues] | None = None) -> list[dict[str, float]]:
    """Each sentence's probability of each role in ``model.labels``: the softmax over the
    weights of its ``role_features``, summed in their order. ``found``: the sentences'
    ``cues``, if the caller has them (saves searching twice)."""
    get = model.weights.get
    word = model.words.get
    labels = model.labels
    out: list[dict[str, float]] = []
    for feats, vocabulary, after_we in _parts(sentences, found):
        # filter(None, …) drops the misses (a row is a non-empty tuple), in the same order.
        rows = [*filter(None, map(get, feats)), *filter(None, map(word, vocabulary))]
        if after_we:
            rows.extend(filter(None, map(get, ["we=" + x for x in after_we])))
        logits = list(map(sum, zip(*rows))) if rows else [0.0] * len(labels)
        top = max(logits)
        exps = [math.exp(x - top) for x in logits]
        total = sum(exps)
        out.append(dict(zip(labels, [e / total for e in exps])))
    return out
