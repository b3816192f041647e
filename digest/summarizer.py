"""Key claims of a paper: a headline sentence and up to two result sentences with the evidence.

Owns: ``summarize(paper, budget) -> Summary`` and the sentence-role model it uses
(``sentence_roles``, ``features``). Pure; may import models, textclean and sentences, and reads
its shipped weights ``digest/data/summarizer_model.json`` once (package data, not user I/O).

How (details and numbers in docs/summarizer.md):
1. Clean title, abstract and ai_summary (``textclean.clean_text``), split the abstract
   (``sentences.split_sentences``).
2. A multinomial logistic regression trained on CSAbstruct (``scripts/train_summarizer.py``)
   gives each sentence a probability of being background / objective / method / result / other,
   from position, opener words, vocabulary and evidence cues (numbers, %, 2.3x, "outperforms").
3. Headline: the sentence most likely to state the contribution (objective, then method);
   results: sentences whose most likely role is ``result`` and that carry evidence, best two,
   shown in abstract order. A sentence whose most likely role is background is never a claim
   (the only exception: an abstract with no other sentence at all).
4. Light compression that keeps meaning: "In this paper, we" openers dropped (re-capitalized),
   parenthetical asides without numbers dropped, then everything fits ``budget`` characters
   (the headline alone is cut at a word with "…" only if it cannot fit otherwise).
Extractive: every word shown is the authors' (no generated text).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from digest.models import Paper, Summary
from digest.sentences import split_sentences
from digest.textclean import clean_text

__all__ = ["ROLES", "RoleModel", "Scored", "compress", "content_words", "features",
           "headline_score", "is_authorial", "pick",
           "scored", "sentence_roles", "shipped_model", "summarize"]

ROLES = ("background", "objective", "method", "result", "other")
MODEL_FILE = "summarizer_model.json"

_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"\d")
_PERCENT = re.compile(r"\d\s?%|per ?cent")
_FACTOR = re.compile(r"\d(?:\.\d+)?\s?[x×]\b|\d×")
_COMPARISON = re.compile(
    r"\b(?:outperform\w*|improv\w*|better|superior|surpass\w*|beat\w*|exceed\w*|faster|"
    r"state[- ]of[- ]the[- ]art|sota|speed-?ups?|reduc\w*|than|gains?|higher|lower|fewer|"
    r"achiev\w*|competitive|comparabl\w*|matches|rivals?)\b")
_URL = re.compile(r"https?://|www\.|github\.com|\bavailable at\b|\bcode (?:is|and)\b", re.I)


# --------------------------------------------------------------------------- features


def _bucket(value: int, edges: Sequence[int]) -> int:
    return next((i for i, edge in enumerate(edges) if value < edge), len(edges))


def features(sentences: Sequence[str]) -> list[list[str]]:
    """Binary features of each sentence in its abstract (shared by training and inference, so
    the shipped weights always mean what this function computes)."""
    n = len(sentences)
    lowered = [s.lower() for s in sentences]
    words = [_WORD.findall(s) for s in lowered]
    openers = [w[0] if w else "" for w in words]
    out: list[list[str]] = []
    for i, (text, toks) in enumerate(zip(lowered, words)):
        rel = i / (n - 1) if n > 1 else 0.0
        feats = ["bias", f"pos={min(int(rel * 5), 4)}", f"len={_bucket(len(toks), (8, 15, 25, 40))}"]
        if i == 0:
            feats.append("first")
        if i == n - 1:
            feats.append("last")
        if i == 1:
            feats.append("second")
        if n == 1:
            feats.append("only")
        feats.append(f"o1={openers[i]}")
        # Position alone says "first sentence = background"; an abstract that opens with
        # "We propose ..." is the exception the conjunctions let the model learn.
        feats.append(f"pos={min(int(rel * 5), 4)}&o1={openers[i]}")
        if "we" in toks or "our" in toks:
            feats.append(f"pos={min(int(rel * 5), 4)}&we")
        feats.append("o2=" + " ".join(toks[:2]))
        feats.append("o3=" + " ".join(toks[:3]))
        feats.append(f"prev_o1={openers[i - 1] if i else '<s>'}")
        feats.append(f"next_o1={openers[i + 1] if i + 1 < n else '</s>'}")
        if _NUMBER.search(text):
            feats.append("has_number")
        if _PERCENT.search(text):
            feats.append("has_percent")
        if _FACTOR.search(text):
            feats.append("has_factor")
        if _COMPARISON.search(text):
            feats.append("has_comparison")
        feats.extend(f"w={w}" for w in sorted(set(toks)))
        # Words right after "we" name what the authors do: propose / show / find / use.
        feats.extend(f"we={toks[j + 1]}" for j in range(len(toks) - 1) if toks[j] == "we")
        out.append(feats)
    return out


@dataclass(frozen=True)
class RoleModel:
    """Softmax weights: feature -> one weight per label (the JSON the training script writes)."""

    labels: tuple[str, ...]
    weights: dict[str, tuple[float, ...]]

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> RoleModel:
        labels = raw["labels"]
        weights = raw["weights"]
        if not isinstance(labels, list) or not isinstance(weights, dict):
            raise ValueError("summarizer model: expected 'labels' list and 'weights' object")
        return cls(labels=tuple(str(x) for x in labels),
                   weights={str(k): tuple(float(x) for x in v) for k, v in weights.items()})


@lru_cache(maxsize=1)
def shipped_model() -> RoleModel:
    """The model in the package, read once per process."""
    text = resources.files("digest").joinpath("data", MODEL_FILE).read_text("utf-8")
    return RoleModel.from_json(json.loads(text))


def sentence_roles(sentences: Sequence[str],
                   model: RoleModel | None = None) -> list[dict[str, float]]:
    """Each sentence's probability of each role in ``ROLES``."""
    model = model or shipped_model()
    k = len(model.labels)
    out: list[dict[str, float]] = []
    for feats in features(sentences):
        logits = [0.0] * k
        for f in feats:
            w = model.weights.get(f)
            if w is not None:
                for j in range(k):
                    logits[j] += w[j]
        top = max(logits)
        exps = [math.exp(x - top) for x in logits]
        total = sum(exps)
        out.append({label: e / total for label, e in zip(model.labels, exps)})
    return out


# "We propose / this paper presents ...": the authors stating their contribution.
_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|study)|in this (?:paper|work))\b.{0,60}?\b(?:propose|present|"
    r"introduce|develop|show|demonstrate|describe|design)", re.I)
# Sentences about the authors' own work: not background whatever the role model says (it
# learned "first sentence = background" and misreads abstracts that open with "We propose").
_AUTHORIAL = re.compile(r"\b(?:we|our|us|this (?:paper|work|study|article|thesis|letter)|"
                        r"here)\b", re.I)
_STOPWORDS = frozenset(
    "a an the of for and or in on to with by from via is are we our this that at as its it be "
    "can using based towards toward into".split())


def is_authorial(text: str) -> bool:
    """About the authors' own work ("we", "our", "this paper")."""
    return bool(_AUTHORIAL.search(text))


def content_words(text: str) -> frozenset[str]:
    """Lower-cased words minus stop words, plural "s" stripped (a crude, fast stemmer)."""
    return frozenset(w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower())
                     if w not in _STOPWORDS)


def headline_score(text: str, roles: dict[str, float], title: frozenset[str]) -> float:
    """How much a sentence reads as "what this paper proposes or finds": its objective role,
    a little of its method role, an explicit contribution phrase, and how much of the title
    it covers (Edmundson's title feature: the title names the contribution). The weights were
    chosen on the tuning half of SciTLDR dev from a small grid fixed in advance
    (docs/summarizer.md); the grid's optimum is flat, these are in its middle."""
    overlap = len(title & content_words(text)) / len(title) if title else 0.0
    return (roles["objective"] + 0.2 * roles["method"]
            + 0.25 * bool(_CONTRIBUTION.search(text)) + 1.0 * overlap)


# --------------------------------------------------------------------------- compression

_OPENER = re.compile(
    r"^(?:(?:in|within) (?:this|the present|our) (?:paper|work|study|article|letter|note|"
    r"report|manuscript)|here|in this regard|to this end|to (?:address|tackle|solve|overcome|"
    r"fill|bridge|close|mitigate|alleviate) (?:this|these|the above|such) [\w\s-]{0,30}?|"
    r"to (?:this|that) end|specifically|concretely|in particular|therefore|thus|hence|"
    r"consequently|motivated by (?:this|these)[\w\s-]{0,20}?|in summary|overall|finally|"
    r"moreover|furthermore|additionally|in addition|notably|importantly)\s*,?\s+",
    re.I)
_ASIDE = re.compile(r"\s*\((?:[^()]|\([^()]*\))*\)")
_ASIDE_START = re.compile(r"^\((?:e\.g\.|i\.e\.|see|cf\.|such as|for example|namely)", re.I)


def _drop_aside(match: re.Match[str]) -> str:
    inner = match.group(0).strip()
    # Numbers are evidence ("(42.5% vs 38.9%)"), short ones are names ("(DEIS)", "(NFE=5)").
    if _ASIDE_START.match(inner):
        return ""
    if _NUMBER.search(inner) or len(inner.split()) <= 3:
        return match.group(0)
    return ""


def compress(sentence: str) -> str:
    """Drop what a reader on a phone does not need; keep every claim and number."""
    text = sentence
    for _ in range(2):  # "In this paper, to address this, we ..." has two openers
        text = _OPENER.sub("", text, count=1)
    text = _ASIDE.sub(_drop_aside, text)
    text = re.sub(r"\s+([,.;:])", r"\1", text).strip()
    return text[:1].upper() + text[1:] if text else text


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0].rstrip(",;:")
    return f"{cut}…" if cut else ""


# --------------------------------------------------------------------------- summarize


@dataclass(frozen=True)
class Scored:
    index: int
    text: str  # compressed
    roles: dict[str, float]

    @property
    def role(self) -> str:
        return max(self.roles, key=self.roles.__getitem__)

    @property
    def background(self) -> bool:
        """Context or motivation, not a claim of this paper."""
        return self.role == "background" and not is_authorial(self.text)


def _evidence(text: str) -> bool:
    return bool(_NUMBER.search(text) or _COMPARISON.search(text.lower()))


def scored(sentences: Sequence[str], model: RoleModel | None = None) -> list[Scored]:
    """Candidate claims from an abstract's sentences (cleaned, split), with their roles; junk
    (links, "code is available", fragments) removed. ``index`` points into ``sentences``."""
    roles = sentence_roles(sentences, model) if sentences else []
    return [Scored(i, compress(s), r) for i, (s, r) in enumerate(zip(sentences, roles))
            if len(s.split()) >= 4 and not _URL.search(s)]


def pick(candidates: Sequence[Scored], budget: int,
         title: str = "") -> tuple[Scored | None, list[Scored]]:
    """The headline and the result claims (in abstract order), within ``budget`` characters."""
    claims = [c for c in candidates if not c.background] or list(candidates[:1])
    if not claims:
        return None, []
    title_words = content_words(title)
    headline = max(claims, key=lambda c: headline_score(c.text, c.roles, title_words))
    room = budget - min(len(headline.text), budget)
    evidence = sorted((c for c in claims
                       if c is not headline and c.role == "result" and _evidence(c.text)),
                      key=lambda c: -(c.roles["result"] + 0.2 * bool(_NUMBER.search(c.text))))
    results: list[Scored] = []
    for c in evidence:
        if len(results) == 2:
            break
        if len(c.text) + 1 <= room:  # +1: claims are shown apart, keep a separator's worth
            results.append(c)
            room -= len(c.text) + 1
    return headline, sorted(results, key=lambda c: c.index)


def summarize(paper: Paper, budget: int = 350) -> Summary:
    """The paper's key claims: ``headline`` then up to two ``results``, at most ``budget``
    characters in all; title and ai_summary cleaned."""
    title = clean_text(paper.title)
    headline, results = pick(scored(split_sentences(clean_text(paper.abstract))), budget, title)
    return Summary(
        paper_id=paper.id,
        title=title,
        headline=_fit(headline.text, budget) if headline else "",
        results=tuple(c.text for c in results),
        ai_summary=clean_text(paper.ai_summary) or None if paper.ai_summary else None,
    )
