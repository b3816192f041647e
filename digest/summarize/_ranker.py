"""The headline ranker: how close each candidate sentence is to what the paper's authors would
write as its one-sentence TLDR.

Owns: ``rank_features`` (shared by training and inference) and ``Ranker``. A linear scorer
trained listwise on SciTLDR-A train (scripts/train_summarizer.py): per abstract, a softmax over
its candidate sentences fitted to a softmax of each sentence's ROUGE-1 F against the TLDR.
Features that generalise (sentence roles from the role model, position, title overlap,
contribution cues, numbers, hedges and asides, length, overlap with the rest of the abstract)
and, more strongly regularised, lexical ones (the first one and two words, the words right
after "we"). A bag of the sentence's words was tried and left out: same ROUGE, 8x the weights.
Pure; imports only the stage's cue patterns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from digest.summarize._cues import ANAPHORIC, Cues, content_words
from digest.summarize._cues import words as word_list

_LENGTHS = (10, 15, 20, 25, 30, 40)
LEXICAL_PREFIXES = ("o1=", "o2=", "we=")  # the features training regularises harder
# The constant feature names, made once rather than per candidate.
_POS = tuple(f"pos={k}" for k in range(5))
_REL = tuple(f"rel={k}" for k in range(5))
_LEN = tuple(f"len={next((k for k, e in enumerate(_LENGTHS) if n < e), len(_LENGTHS))}"
             for n in range(_LENGTHS[-1] + 1))
_FROM = {d: f"from_contribution={d}" for d in range(-2, 3)}
_NUMBER = ("", "number=1", "number=2", "number=3")
_LOG = tuple(math.log(n + 1) for n in range(200))


class _Prefixed(dict[str, str]):
    """Role -> its feature name ("p_result"), made once per role rather than per candidate."""

    def __missing__(self, role: str) -> str:
        self[role] = name = "p_" + role
        return name


_P = _Prefixed()


def rank_features(cues: Sequence[Cues], texts: Sequence[str],
                  roles: Sequence[dict[str, float]], title: str) -> list[dict[str, float]]:
    """Features of each candidate: the ``cues`` of the sentence as the authors wrote it, its
    text as it would be shown (compressed), its ``roles``; ``title`` cleaned."""
    n = len(texts)
    if not n:
        return []
    title_words = content_words(title)
    words = [content_words(t) for t in texts]
    n_title = len(title_words)
    overlap = [len(title_words & w) / n_title if n_title else 0.0 for w in words]
    best_overlap = max(overlap)
    mean_overlap = sum(overlap) / n
    # Centrality: the share of a sentence's words the rest of the abstract repeats.
    seen: set[str] = set()
    repeated: set[str] = set()
    for w in words:  # the words of more than one sentence (set algebra: no Counter)
        repeated |= seen & w
        seen |= w
    central = [len(w & repeated) / (len(w) or 1) for w in words]
    best_central = max(central)
    contribution = [c.contribution for c in cues]
    first_contribution = next((i for i, c in enumerate(contribution) if c), None)
    best_objective = max(r["objective"] for r in roles)
    lowered = [t.lower() for t in texts]
    # The words of the text as shown: the sentence's (in its cues) unless compression changed it.
    toks = [c.words if low == c.low else word_list(low)
            for c, low in zip(cues, lowered)]
    first_we = next((i for i, t in enumerate(toks) if "we" in t or "our" in t), None)
    head = title.split(":")[0].strip().lower() if ":" in title else ""
    name = head if head and len(head.split()) <= 3 else ""
    out: list[dict[str, float]] = []
    for i, (cue, text, low, tk, r) in enumerate(zip(cues, texts, lowered, toks, roles)):
        rel = i / (n - 1) if n > 1 else 0.0
        f: dict[str, float] = {_POS[min(i, 4)]: 1.0, _REL[min(int(rel * 5), 4)]: 1.0}
        if i == n - 1:
            f["last"] = 1.0
        for role, p in r.items():
            f[_P[role]] = p
        f["title_ov"] = overlap[i]
        f["title_ov_gap"] = best_overlap - overlap[i]
        f["title_ov_rel"] = overlap[i] - mean_overlap
        if best_overlap > 0 and overlap[i] == best_overlap:
            f["title_ov_max"] = 1.0
        f["central"] = central[i]
        f["central_gap"] = best_central - central[i]
        if r["objective"] == best_objective:
            f["objective_max"] = 1.0
        if contribution[i]:
            f["contribution"] = 1.0
        if first_contribution is None:
            f["no_contribution"] = 1.0
        else:
            f[_FROM[max(-2, min(i - first_contribution, 2))]] = 1.0
        if first_we == i:
            f["first_we"] = 1.0
        if tk and tk[0] == "we":
            f["opens_we"] = 1.0
        if ANAPHORIC.search(text):
            f["anaphoric"] = 1.0
        if cue.hedge_opener:
            f["hedge_opener"] = 1.0
        if cue.modal:
            f["modal"] = 1.0
        if cue.aside:
            f["aside"] = 1.0
        if cue.strength:
            f[_NUMBER[cue.strength]] = 1.0
        if cue.quant:
            f["quant"] = 1.0
        if cue.comparison:
            f["comparison"] = 1.0
        if cue.authorial:
            f["authorial"] = 1.0
        if name and name in low:
            f["names_title"] = 1.0
        if text.rstrip().endswith("?"):
            f["question"] = 1.0
        length = len(text.split())
        f[_LEN[min(length, _LENGTHS[-1])]] = 1.0
        f["len_log"] = _LOG[length] if length < len(_LOG) else math.log(length + 1)
        if tk:
            f["o1=" + tk[0]] = 1.0
            f["o2=" + " ".join(tk[:2])] = 1.0
        if "we" in tk:
            f.update(dict.fromkeys(["we=" + tk[j + 1] for j in range(len(tk) - 1)
                                    if tk[j] == "we"], 1.0))
        out.append(f)
    return out


@dataclass(frozen=True)
class Ranker:
    """Feature -> weight (the JSON the training script writes); a candidate's score is the
    sum of its features' values times their weights."""

    weights: dict[str, float]

    @classmethod
    def from_json(cls, raw: object) -> Ranker:
        weights = raw.get("weights") if isinstance(raw, dict) else None
        if not isinstance(weights, dict):
            raise ValueError("summarizer model: expected a 'ranker' object with 'weights'")
        return cls(weights={str(k): float(v) for k, v in weights.items()})

    def scores(self, features: Sequence[dict[str, float]]) -> list[float]:
        weights = self.weights
        return [sum([v * weights[k] for k, v in f.items() if k in weights]) for f in features]
