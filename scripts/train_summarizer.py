"""Train the model the summarizer ships (digest/data/summarizer_model.json): the sentence-role
model and the headline ranker, in one file.

1. Roles: a multinomial logistic regression over ``role_features`` on CSAbstruct train (1,668
   CS abstracts, every sentence labelled background/objective/method/result/other).
2. Ranker: a linear scorer over ``rank_features`` on SciTLDR-A train (1,992 papers with their
   authors' TLDRs), fitted listwise: per abstract, the softmax of the scores over its candidate
   sentences against the softmax of each candidate's ROUGE-1 F with the TLDR (temperature
   ``TAU``). The role probabilities it sees come from the model of step 1.
Training and inference share the feature functions, so they can never disagree on what a
feature means.

Deterministic: fixed data order, full-batch Adam with a fixed number of steps, no randomness;
the same input gives byte-identical JSON. Needs numpy and rouge-score (the `bench` extra: dev
tools, not package dependencies; inference in digest/summarize/ is pure Python).

    .venv/bin/python scripts/train_summarizer.py              # train on all, write the model
    .venv/bin/python scripts/train_summarizer.py --holdout    # role accuracy on held-out 20%
    .venv/bin/python scripts/train_summarizer.py --data DIR   # or DIGEST_DATA=DIR

The data directory (default ``../shared/data`` beside the checkout) must hold
``csabstruct_train.jsonl`` and ``scitldr_a_train.jsonl``. Held-out CSAbstruct split: an
abstract is held out when ``int(sha1(id).hexdigest(), 16) % 5 == 0`` (307 of 1,668);
bench/summarize_eval.py uses the same split for the role table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digest.summarize._claims import MODEL_FILE, SummarizerModel, scored
from digest.summarize._ranker import LEXICAL_PREFIXES, Ranker, rank_features
from digest.summarize._roles import ROLES, RoleModel, role_features, sentence_roles
from digest.text import clean_text, split_sentences

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "digest" / "data" / MODEL_FILE
CSABSTRUCT = "csabstruct_train.jsonl"
SCITLDR_TRAIN = "scitldr_a_train.jsonl"

# Roles
MIN_COUNT = 5  # a feature seen in fewer training sentences has no reliable weight
L2 = 2e-3  # per-sentence L2 strength
STEPS = 400
LEARNING_RATE = 0.05
# Ranker (chosen on the tune half of SciTLDR-A dev, see docs/summarizer.md)
RANK_MIN_COUNT = 10  # a feature seen in fewer training candidates gets no weight
RANK_L2 = 1e-3  # per-abstract L2 strength on the dense features
RANK_LEXICAL_L2 = 3e-2  # on word features: they may break ties, not carry the ranking
RANK_STEPS = 300
TAU = 0.1  # softmax temperature of the ROUGE-1 targets


def data_dir(option: str | None = None) -> Path:
    """``--data``, else ``$DIGEST_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(option or os.environ.get("DIGEST_DATA") or ROOT.parent / "shared" / "data")


def load(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"{path}: not found; this needs {path.name} (see --help: --data DIR "
                         "or DIGEST_DATA)")
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def is_heldout(record_id: str) -> bool:
    return int(hashlib.sha1(record_id.encode()).hexdigest(), 16) % 5 == 0


def split(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [r for r in records if not is_heldout(r["id"])]
    held = [r for r in records if is_heldout(r["id"])]
    return train, held


def _adam(grad_of: Any, size: tuple[int, ...], steps: int) -> Any:
    w = np.zeros(size)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for step in range(1, steps + 1):
        grad = grad_of(w)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= LEARNING_RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w


def train_roles(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The role model JSON (labels, weights) trained on CSAbstruct ``records``."""
    rows: list[list[str]] = []
    labels: list[int] = []
    for r in records:
        rows.extend(role_features(r["sentences"]))
        labels.extend(ROLES.index(label) for label in r["labels"])
    counts = Counter(f for row in rows for f in set(row))
    vocab = sorted(f for f, c in counts.items() if c >= MIN_COUNT)
    index = {f: i for i, f in enumerate(vocab)}
    cols_per_row = [[index[f] for f in row if f in index] for row in rows]
    lengths = np.array([len(c) for c in cols_per_row])
    cols = np.array([c for row in cols_per_row for c in row], dtype=np.int64)
    row_of = np.repeat(np.arange(len(rows)), lengths)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # every row has "bias": none empty
    y = np.zeros((len(rows), len(ROLES)))
    y[np.arange(len(rows)), labels] = 1.0
    n = len(rows)
    bias = index["bias"]

    def grad_of(w: Any) -> Any:
        logits = np.add.reduceat(w[cols], starts, axis=0)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - y)[row_of]
        by_label = np.stack([np.bincount(cols, weights=err[:, j], minlength=len(vocab))
                             for j in range(len(ROLES))], axis=1)
        grad = by_label / n + L2 * w
        grad[bias] -= L2 * w[bias]  # the bias is not regularized
        return grad

    w = _adam(grad_of, (len(vocab), len(ROLES)), STEPS)
    weights = {f: [round(float(x), 3) for x in w[i]] for f, i in index.items()
               if np.abs(w[i]).max() >= 0.05}
    return {"labels": list(ROLES), "trained_on": f"CSAbstruct train, {len(records)} abstracts",
            "features": "digest.summarize._roles.role_features", "weights": weights}


def ranker_rows(records: Sequence[dict[str, Any]], roles: RoleModel) -> list[
        tuple[list[dict[str, float]], list[float]]]:
    """Per SciTLDR paper with candidates: their features and ROUGE-1 F against the TLDR(s)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    unranked = SummarizerModel(roles=roles, ranker=Ranker(weights={}))
    out = []
    for r in records:
        title = clean_text(r["title"])
        sentences = split_sentences(clean_text(r["abstract"]))
        cands = scored(sentences, title, model=unranked)
        if not cands:
            continue
        feats = rank_features([c.cues for c in cands], [c.text for c in cands],
                              [c.roles for c in cands], title)
        gains = [max(scorer.score(ref, c.text)["rouge1"].fmeasure for ref in r["tldrs"])
                 for c in cands]
        out.append((feats, gains))
    return out


def train_ranker(rows: Sequence[tuple[list[dict[str, float]], list[float]]],
                 n_papers: int) -> dict[str, Any]:
    """The ranker JSON (weights) fitted listwise to ``rows`` (see the module docstring)."""
    counts = Counter(k for feats, _ in rows for f in feats for k in f)
    vocab = sorted(k for k, c in counts.items() if c >= RANK_MIN_COUNT)
    index = {k: i for i, k in enumerate(vocab)}
    cols: list[int] = []
    vals: list[float] = []
    row_of: list[int] = []
    group: list[int] = []
    target: list[float] = []
    row = 0
    for g, (feats, gains) in enumerate(rows):
        z = np.array(gains) / TAU
        q = np.exp(z - z.max())
        target.extend(q / q.sum())
        for f in feats:
            for k in sorted(f):
                if k in index:
                    cols.append(index[k])
                    vals.append(f[k])
                    row_of.append(row)
            group.append(g)
            row += 1
    c = np.array(cols, dtype=np.int64)
    x = np.array(vals)
    r = np.array(row_of, dtype=np.int64)
    grp = np.array(group, dtype=np.int64)
    q_all = np.array(target)
    n_groups = len(rows)
    l2 = np.array([RANK_LEXICAL_L2 if k.startswith(LEXICAL_PREFIXES) else RANK_L2
                   for k in vocab])

    def grad_of(w: Any) -> Any:
        s = np.bincount(r, weights=w[c] * x, minlength=row)
        top = np.full(n_groups, -np.inf)
        np.maximum.at(top, grp, s)
        e = np.exp(s - top[grp])
        p = e / np.bincount(grp, weights=e, minlength=n_groups)[grp]
        return np.bincount(c, weights=(p - q_all)[r] * x, minlength=len(vocab)) / n_groups \
            + l2 * w

    w = _adam(grad_of, (len(vocab),), RANK_STEPS)
    weights = {k: round(float(w[i]), 4) for k, i in index.items() if abs(w[i]) >= 0.005}
    return {"trained_on": f"SciTLDR-A train, {n_papers} papers", "tau": TAU,
            "features": "digest.summarize._ranker.rank_features", "weights": weights}


def train(csabstruct: Sequence[dict[str, Any]], scitldr: Sequence[dict[str, Any]]) -> dict[
        str, Any]:
    """The whole model JSON: roles on ``csabstruct``, then the ranker on ``scitldr``."""
    roles = train_roles(csabstruct)
    rows = ranker_rows(scitldr, RoleModel.from_json(roles))
    return {"roles": roles, "ranker": train_ranker(rows, len(scitldr))}


def dumps(model: dict[str, Any]) -> str:
    return json.dumps(model, sort_keys=True, separators=(",", ":")) + "\n"


def accuracy(model_json: dict[str, Any], records: Sequence[dict[str, Any]]) -> float:
    model = RoleModel.from_json(model_json)
    right = total = 0
    for r in records:
        for probs, label in zip(sentence_roles(r["sentences"], model), r["labels"]):
            right += max(probs, key=probs.__getitem__) == label
            total += 1
    return right / total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout", action="store_true",
                        help="train roles on 80%%, print sentence-role accuracy on the other 20%%")
    parser.add_argument("--data", help="directory with csabstruct_train.jsonl and "
                        "scitldr_a_train.jsonl (default: $DIGEST_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = data_dir(args.data)
    csabstruct = load(data / CSABSTRUCT)
    if args.holdout:
        train_part, held = split(csabstruct)
        print(f"held-out sentence-role accuracy: {accuracy(train_roles(train_part), held):.3f} "
              f"({len(held)} abstracts; trained on {len(train_part)})")
        return
    model = train(csabstruct, load(data / SCITLDR_TRAIN))
    args.out.write_text(dumps(model), "utf-8")
    print(f"wrote {args.out} ({len(model['roles']['weights'])} role features, "
          f"{len(model['ranker']['weights'])} ranker features, {args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
