"""Train the sentence-role model the summarizer ships (digest/data/summarizer_model.json).

A multinomial logistic regression over ``digest.summarizer.features`` (so training and inference
can never disagree on what a feature means), trained on CSAbstruct (train split, 1,668 CS
abstracts, every sentence labelled background/objective/method/result/other).

Deterministic: fixed data order, full-batch Adam with a fixed number of steps, no randomness;
the same input gives byte-identical JSON. Needs numpy (a dev tool, not a package dependency:
inference in digest/summarizer.py is pure Python).

    .venv/bin/python scripts/train_summarizer.py            # train on all, write the model
    .venv/bin/python scripts/train_summarizer.py --holdout  # train on 80%, accuracy on 20%

Held-out split: an abstract is held out when ``int(sha1(id).hexdigest(), 16) % 5 == 0``
(307 of 1,668 abstracts). bench/summarize_eval.py uses the same split for the role table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digest.summarize._claims import MODEL_FILE, ROLES, features

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "csabstruct_train.jsonl"
OUT = ROOT / "digest" / "data" / MODEL_FILE

MIN_COUNT = 5  # a feature seen in fewer training sentences has no reliable weight
L2 = 2e-3  # per-sentence L2 strength
STEPS = 400
LEARNING_RATE = 0.05


def load(path: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def is_heldout(record_id: str) -> bool:
    return int(hashlib.sha1(record_id.encode()).hexdigest(), 16) % 5 == 0


def split(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [r for r in records if not is_heldout(r["id"])]
    held = [r for r in records if is_heldout(r["id"])]
    return train, held


def _rows(records: Sequence[dict[str, Any]]) -> tuple[list[list[str]], list[int]]:
    rows: list[list[str]] = []
    labels: list[int] = []
    for r in records:
        rows.extend(features(r["sentences"]))
        labels.extend(ROLES.index(label) for label in r["labels"])
    return rows, labels


def train(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The model JSON (labels, weights) trained on ``records``."""
    rows, labels = _rows(records)
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

    w = np.zeros((len(vocab), len(ROLES)))
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    n = len(rows)
    for step in range(1, STEPS + 1):
        logits = np.add.reduceat(w[cols], starts, axis=0)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - y)[row_of]
        counts_by_label = np.stack([np.bincount(cols, weights=err[:, j], minlength=len(vocab))
                                    for j in range(len(ROLES))], axis=1)
        grad = counts_by_label / n + L2 * w
        grad[index["bias"]] -= L2 * w[index["bias"]]  # the bias is not regularized
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= LEARNING_RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)

    weights = {f: [round(float(x), 3) for x in w[i]] for f, i in index.items()
               if np.abs(w[i]).max() >= 0.05}
    return {"labels": list(ROLES), "trained_on": f"CSAbstruct train, {len(records)} abstracts",
            "features": "digest.summarizer.features", "weights": weights}


def accuracy(model_json: dict[str, Any], records: Sequence[dict[str, Any]]) -> float:
    from digest.summarize._claims import RoleModel, sentence_roles

    model = RoleModel.from_json(model_json)
    right = total = 0
    for r in records:
        for probs, label in zip(sentence_roles(r["sentences"], model), r["labels"]):
            right += max(probs, key=probs.__getitem__) == label
            total += 1
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout", action="store_true",
                        help="train on 80%%, print sentence-role accuracy on the other 20%%")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    records = load(args.data)
    if args.holdout:
        train_part, held = split(records)
        model = train(train_part)
        print(f"held-out sentence-role accuracy: {accuracy(model, held):.3f} "
              f"({len(held)} abstracts; trained on {len(train_part)})")
        return
    model = train(records)
    args.out.write_text(json.dumps(model, sort_keys=True, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {args.out} ({len(model['weights'])} features, {args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
