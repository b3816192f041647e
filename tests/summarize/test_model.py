"""The shipped summarizer model: it loads from the package and means what the feature functions
compute; the training script is deterministic (tested on a tiny slice of its real inputs)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import paths
import pytest

from digest.summarize._claims import MODEL_FILE, SummarizerModel, scored, shipped_model
from digest.summarize._cues import content_words, cues
from digest.summarize._ranker import rank_features
from digest.summarize._roles import RoleModel, role_features, sentence_roles
from digest.text import clean_text, split_sentences

SLICES = paths.DATASETS


def _train_script() -> ModuleType:
    pytest.importorskip("numpy")  # the `bench` extra: a dev tool, not a package dependency
    pytest.importorskip("rouge_score")
    spec = importlib.util.spec_from_file_location(
        "train_summarizer", paths.REPO / "scripts" / "train_summarizer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_summarizer"] = module
    spec.loader.exec_module(module)
    return module


def test_model_loads_from_the_package() -> None:
    shipped_model.cache_clear()
    model = shipped_model()
    assert isinstance(model, SummarizerModel)
    assert len(model.roles.weights) > 1000 and len(model.ranker.weights) > 100
    # The ranker's weights are keyed by what rank_features computes.
    title = "ZeroQ: A Novel Zero Shot Quantization Framework"
    sentences = ["Quantization is a promising approach for reducing inference time.",
                 "We propose ZeroQ, a novel zero-shot quantization framework.",
                 "ZeroQ achieves 1.71% higher accuracy on MobileNetV2 than DFQ."]
    cands = scored(sentences, title)
    features = rank_features([c.cues for c in cands], [c.text for c in cands],
                             [c.roles for c in cands], title)
    names = {k for f in features for k in f}
    dense = {k for k in model.ranker.weights if "=" not in k}
    assert {"title_ov", "p_objective", "central", "contribution"} <= dense
    assert len(names & model.ranker.weights.keys()) >= 30
    # The contribution statement outranks the background sentence.
    assert cands[1].score > cands[0].score


def test_a_broken_model_file_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="'roles' and 'ranker'"):
        SummarizerModel.from_json([])
    with pytest.raises(ValueError, match="'ranker' object with 'weights'"):
        SummarizerModel.from_json({"roles": {"labels": [], "weights": {}}, "ranker": {}})


def test_training_is_deterministic_on_a_tiny_slice(tmp_path: Path) -> None:
    train = _train_script()
    csabstruct = train.load(SLICES / "csabstruct_train.jsonl")
    scitldr = train.load(SLICES / "scitldr_a_train.jsonl")
    first = train.dumps(train.train(csabstruct, scitldr))
    second = train.dumps(train.train(csabstruct, scitldr))
    assert first == second
    model = SummarizerModel.from_json(json.loads(first))
    assert model.ranker.weights and model.roles.weights
    # What it learned is usable: it scores a real abstract's candidates.
    record = scitldr[0]
    cands = scored(split_sentences(clean_text(record["abstract"])), record["title"],
                   model=model)
    assert cands and len({c.score for c in cands}) > 1
    # The command line writes the same bytes.
    out = tmp_path / MODEL_FILE
    train.main(["--data", str(SLICES), "--out", str(out)])
    assert out.read_text("utf-8") == first


def test_training_names_the_missing_data_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    train = _train_script()
    monkeypatch.setenv("DIGEST_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="nowhere/csabstruct_train.jsonl: not found"):
        train.main([])
    with pytest.raises(SystemExit, match="csabstruct_train.jsonl: not found; this needs "
                                         "csabstruct_train.jsonl"):
        train.main(["--data", str(tmp_path)])
    (tmp_path / "csabstruct_train.jsonl").write_text(
        (SLICES / "csabstruct_train.jsonl").read_text("utf-8"), "utf-8")
    with pytest.raises(SystemExit, match="scitldr_a_train.jsonl: not found"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "m.json")])


def _reference_roles(sentences: list[str], model: RoleModel) -> list[dict[str, float]]:
    """The role model's definition: the softmax over the weights of ``role_features``."""
    out = []
    for feats in role_features(sentences):
        logits = [0.0] * len(model.labels)
        for f in feats:
            for k, w in enumerate(model.weights.get(f, ())):
                logits[k] += w
        exps = [math.exp(x - max(logits)) for x in logits]
        out.append({label: e / sum(exps) for label, e in zip(model.labels, exps)})
    return out


def test_sentence_roles_are_the_softmax_of_role_features() -> None:
    # sentence_roles looks words up by the bare word and may reuse the caller's cues: the
    # probabilities must still be what role_features and the weights say.
    model = shipped_model().roles
    records = [json.loads(line) for line in (SLICES / "csabstruct_train.jsonl").read_text(
        "utf-8").splitlines() if line.strip()]
    checked = 0
    for record in records:
        sentences = record["sentences"]
        expected = _reference_roles(sentences, model)
        for got in (sentence_roles(sentences, model),
                    sentence_roles(sentences, model, [cues(s) for s in sentences])):
            for g, e in zip(got, expected, strict=True):
                assert g.keys() == e.keys()
                assert all(abs(g[k] - e[k]) < 1e-9 for k in g)
                checked += 1
    assert checked > 100


def test_content_words_drop_stop_words_and_stem() -> None:
    assert content_words("The improved Models improve on THIS task, for 3 tasks") == {
        "improv", "model", "task", "3"}
    assert content_words("") == frozenset()
    assert content_words("of the and") == frozenset()
