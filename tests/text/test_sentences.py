"""sentences: the splitting traps from issue 4, and real seed abstracts."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from digest.text import clean_text, split_sentences

SEED: list[dict[str, str]] = json.loads(
    resources.files("digest").joinpath("data", "sample_papers.json").read_text("utf-8"))


@pytest.mark.parametrize("text", [
    "We use priors, e.g. CLIP and BLIP, and i.e. no labels at all.",
    "We compare with Smith et al. on three benchmarks.",
    "As shown in Fig. 2 and Eq. 3, the loss is convex.",
    "The error drops from 3.25 to 2.51 on CIFAR-10.",
    "It speeds up Stable Diffusion v1.5 and GPT-3.5 by 2.3x.",
    "Ours vs. the baseline: 41.2 vs. 38.1 ROUGE-1.",
    "This holds w.r.t. Theorem 1 and cf. Sec. 4 for U.S. data.",
    "GIM generalizes to images of projected 3D point clouds (Fig. 1(c)).",
    "The video is at https://www.youtube.com/watch?v=FU_MJLD8LeY.",
])
def test_traps_stay_one_sentence(text: str) -> None:
    assert split_sentences(text) == [text]


@pytest.mark.parametrize(("text", "parts"), [
    ("We propose XNet. It is fast! Is it? Yes.",
     ["We propose XNet.", "It is fast!", "Is it?", "Yes."]),
    # A single capital after a name is an initial; after anything else it ends a sentence.
    ("Work by John F. Kennedy shows it. We agree.",
     ["Work by John F. Kennedy shows it.", "We agree."]),
    ("We call it X. It is fast.", ["We call it X.", "It is fast."]),
    # syntok keeps these together: an acronym or a version number before the period.
    ("a framework called QMoE. Specifically, QMoE compresses.",
     ["a framework called QMoE.", "Specifically, QMoE compresses."]),
    ("0.394 MSE on Stable-Diffusion-2.1. Code is available.",
     ["0.394 MSE on Stable-Diffusion-2.1.", "Code is available."]),
    # A feed that lost the space between two sentences.
    ("in zero-shot methods.Our evaluations show gains.",
     ["in zero-shot methods.", "Our evaluations show gains."]),
    ('He said "it works." Then we left. (See Sec. 3.) We test it.',
     ['He said "it works."', "Then we left.", "(See Sec. 3.)", "We test it."]),
    ("Results hold for 12 tasks. 2015 Elsevier Ltd. All rights reserved.",
     ["Results hold for 12 tasks.", "2015 Elsevier Ltd. All rights reserved."]),
])
def test_boundaries(text: str, parts: list[str]) -> None:
    assert split_sentences(text) == parts


def test_empty_and_no_final_period() -> None:
    assert split_sentences("") == []
    assert split_sentences("   ") == []
    assert split_sentences("One sentence without a period") == ["One sentence without a period"]


def test_seed_abstracts_split_without_fragments() -> None:
    for paper in SEED:
        sentences = split_sentences(clean_text(paper["abstract"]))
        assert sentences, paper["title"]
        # nothing lost or added (a glued "methods.Our" gains a space, hence no spaces compared)
        assert "".join("".join(sentences).split()) == "".join(clean_text(paper["abstract"]).split())
        for s in sentences[:-1]:
            assert s[-1] in ".!?\"”)", s  # every sentence but the last ends like one
        assert not any(s.endswith((" et al.", " Fig.", " e.g.", " vs.")) for s in sentences)


def test_seed_gim_abstract_keeps_figure_and_url() -> None:
    abstract = next(p["abstract"] for p in SEED if p["title"].startswith("GIM:"))
    sentences = split_sentences(clean_text(abstract))
    assert any(s.endswith("projected 3D point clouds (Fig. 1(c)).") for s in sentences)
    assert any(s.endswith("https://www.youtube.com/watch?v=FU_MJLD8LeY.") for s in sentences)
