"""Claims that carry the key result and stand alone: a long result sentence shortened to the
clause with its number (not dropped), the strongest number first, dangling openers mended or
skipped, hedges and asides never the headline."""

from __future__ import annotations

import json
import re

import paths
import pytest

from digest.models import Paper
from digest.summarize import summarize
from digest.summarize._compress import is_dangling, number_clause, standalone
from digest.summarize._cues import number_strength

SEED: list[dict[str, str]] = json.loads(paths.SEED.read_text("utf-8"))


def seed(title_start: str) -> Paper:
    raw = next(p for p in SEED if p["title"].startswith(title_start))
    return Paper(id=title_start, title=raw["title"], abstract=raw["abstract"])


GF_DIT = ("Extensive experiments on three serving traces show that GF-DiT improves throughput "
          "by up to 6.01×, reduces mean latency by up to 95%, and keeps the image quality of "
          "the original pipeline while requiring no retraining of the diffusion transformer.")


# ----------------------------------------------------------------- the clause with the number

def test_a_result_that_fits_is_only_lightly_compressed() -> None:
    assert number_clause(GF_DIT, 350) == (
        "GF-DiT improves throughput by up to 6.01×, reduces mean latency by up to 95%, and "
        "keeps the image quality of the original pipeline while requiring no retraining of "
        "the diffusion transformer.")


def test_a_long_result_keeps_its_numbers_and_drops_the_trailing_clauses() -> None:
    assert number_clause(GF_DIT, 120) == (
        "GF-DiT improves throughput by up to 6.01×, reduces mean latency by up to 95%.")
    # Tighter: the clauses after the strongest number go, the subject stays.
    assert number_clause(GF_DIT, 60) == "GF-DiT improves throughput by up to 6.01×."


def test_leading_context_and_bare_parentheticals_go_first() -> None:
    sentence = ("On the challenging ImageNet benchmark (a large collection of natural "
                "images), with only a single GPU, our sampler reaches an FID of 2.1 in 4 steps.")
    assert number_clause(sentence, 60) == "Our sampler reaches an FID of 2.1 in 4 steps."
    assert number_clause(sentence, 90) == (
        "With only a single GPU, our sampler reaches an FID of 2.1 in 4 steps.")
    assert number_clause(sentence, 130) == (
        "On the challenging ImageNet benchmark, with only a single GPU, our sampler reaches an "
        "FID of 2.1 in 4 steps.")


def test_the_subject_clause_is_never_dropped() -> None:
    # Dropping "Our method achieves ..." would leave the fragment "With an FID score of 3.56".
    sentence = ("Our method achieves state-of-the-art generation quality, with an FID score of "
                "3.56 without classifier-free guidance on ImageNet 256×256.")
    assert number_clause(sentence, 60) == ""
    # A whole clause before a semicolon may go.
    assert number_clause("Applying it improves all three matchers; with 50 hours of video, the "
                         "relative zero-shot performance improves by 8.4%-18.1%.", 80) == (
        "The relative zero-shot performance improves by 8.4%-18.1%.")


def test_no_number_no_clause() -> None:
    assert number_clause("Our method works well on every benchmark we tried so far.", 20) == ""
    # A digit inside a name ("W4A16") is not a quantity to cut around.
    assert number_clause("We find that W4A16 offers the best cost-efficiency for synchronous "
                         "deployments on mid-tier GPUs.", 30) == ""


def test_no_stub_claims() -> None:
    # A digit in a name is not a number to shorten around: "FP6." alone is not a claim.
    assert number_clause("Our results show that FP6, even with a coarse-grain quantization "
                         "scheme, performs robustly across various algorithms and tasks.",
                         40) == ""
    # A "sentence" that is all aside compresses to nothing and is never a candidate.
    abstract = ("This paper surveys our progress in understanding online feedback mechanisms. "
                "It discusses how they differ from word-of-mouth networks. "
                "(Reputation Mechanisms; Online Feedback; Electronic Markets; Trust)")
    for budget in (350, 60):
        s = summarize(Paper(id="k", title="", abstract=abstract), budget=budget)
        assert s.headline.startswith("This paper surveys"), s.claims
        assert all(len(c.split()) >= 4 for c in s.claims)


def test_number_strength() -> None:
    assert number_strength("improves by 3.5×") == 3
    assert number_strength("reduces latency by 95%") == 3
    assert number_strength("is 3 times faster") == 3
    assert number_strength("an FID of 2.51") == 2
    assert number_strength("on 11 datasets") == 1
    assert number_strength("no numbers here") == 0


# ----------------------------------------------------------------- claims that stand alone

@pytest.mark.parametrize(("claim", "name", "alone"), [
    ("We propose ZeroQ, a novel zero-shot quantization framework to address this.", "",
     "We propose ZeroQ, a novel zero-shot quantization framework."),
    ("By optimizing these expressions, we show that the bound is tight.", "",
     "We show that the bound is tight."),
    ("Thus we propose a cheaper estimator of the gradient.", "",
     "We propose a cheaper estimator of the gradient."),
    ("This method reaches 80% accuracy.", "ZeroQ", "ZeroQ reaches 80% accuracy."),
    ("It can finish quantization in less than 30s.", "ZeroQ",
     "ZeroQ can finish quantization in less than 30s."),
    ("This simple approach is more effective than pixel-based modeling.", "",
     "Our simple approach is more effective than pixel-based modeling."),
    ("These scores mark a 3.5× and 4× improvement.", "ZeroQ", None),
    ("It can finish quantization in less than 30s.", "", None),
    ("This paper presents the ballistic graph neural network.", "",
     "This paper presents the ballistic graph neural network."),
    ("We present X, a model for Y.", "", "We present X, a model for Y."),
])
def test_standalone(claim: str, name: str, alone: str | None) -> None:
    assert standalone(claim, name) == alone
    assert is_dangling(claim) == (claim != alone)


def test_a_dangling_result_is_shown_only_right_after_what_it_points_at() -> None:
    paper = seed("Improved Techniques for Training Consistency Models")
    claims = summarize(paper).claims
    assert claims
    sentences = re.split(r"(?<=\.)\s+", paper.abstract)
    for before, claim in zip(claims, claims[1:]):
        if is_dangling(claim):
            i = next(k for k, s in enumerate(sentences) if s.startswith(claim[:30]))
            assert sentences[i - 1].startswith(before[:30]), (before, claim)
    assert not any(c.startswith("These scores") for c in claims[:1])


def test_a_dangling_number_is_joined_to_what_it_points_at() -> None:
    abstract = (
        "Segmentation networks are large and slow on edge devices. "
        "We study the use of knowledge distillation to compress the U-net architecture. "
        "We show that standard distillation alone is not sufficient and combine it with a "
        "regularization of the feature maps. "
        "This allows us to compress a U-net by over 1000x, at a negligible decrease in "
        "performance.")
    s = summarize(Paper(id="u", title="Distilling U-Nets", abstract=abstract))
    assert s.headline == "We study the use of knowledge distillation to compress the U-net " \
        "architecture."
    assert s.results == (
        "We show that standard distillation alone is not sufficient and combine it with a "
        "regularization of the feature maps. This allows us to compress a U-net by over 1000x, "
        "at a negligible decrease in performance.",)
    # With no room for both, it is skipped rather than shown leaning on nothing.
    tight = summarize(Paper(id="u", title="Distilling U-Nets", abstract=abstract), budget=200)
    assert not any(c.startswith("This allows") for c in tight.claims), tight.claims


def test_no_seed_claim_opens_by_pointing_back() -> None:
    for raw in SEED:
        s = summarize(Paper(id="x", title=raw["title"], abstract=raw["abstract"]))
        assert not is_dangling(s.headline), s.headline
        assert sum(is_dangling(c) for c in s.results) <= 1, s.results


# ----------------------------------------------------------------- numbers first

def test_the_strongest_number_beats_a_second_method_claim() -> None:
    abstract = (
        "Serving diffusion transformers is expensive. "
        "We present GF-DiT, a serving system that batches denoising steps across requests. "
        "GF-DiT schedules steps with a new earliest-deadline policy that is aware of the "
        "remaining denoising budget of each request. "
        "We further describe a memory planner that shares activations between batched steps. "
        f"{GF_DIT}")
    paper = Paper(id="g", title="GF-DiT: Fast Serving of Diffusion Transformers",
                  abstract=abstract)
    s = summarize(paper)
    assert s.headline.startswith("We present GF-DiT")
    assert s.results and "6.01×" in s.results[0] and "95%" in s.results[0]
    assert sum(len(c) for c in s.claims) <= 350
    # Under a tight budget the number is shortened into the room, not dropped.
    tight = summarize(paper, budget=140)
    assert tight.results and "6.01×" in tight.results[0], tight.claims
    assert sum(len(c) for c in tight.claims) <= 140


def test_numeric_seed_abstracts_keep_a_number() -> None:
    strong = re.compile(r"\d\s?%|\d(?:\.\d+)?\s?[x×](?![\w-])")
    numeric = kept = 0
    for raw in SEED:
        s = summarize(Paper(id="x", title=raw["title"], abstract=raw["abstract"]))
        if strong.search(raw["abstract"]):
            numeric += 1
            kept += any(number_strength(c) >= 2 for c in s.claims)
    assert numeric >= 20
    assert kept >= 0.9 * numeric, (kept, numeric)


# ----------------------------------------------------------------- hedges and asides

def test_asides_and_hedges_never_win_the_headline() -> None:
    bf16 = summarize(seed("\"Give Me BF16 or Give Me Death\""))
    assert not bf16.headline.startswith(("Beyond", "We also"))
    abstract = (
        "We study what midtraining on constitutional documents does to a language model. "
        "We also release a benchmark of 2,000 value-laden prompts. "
        "Beyond accuracy, we also measure calibration on held-out tasks. "
        "A modest amount of constitutional content at midtraining could therefore yield broad "
        "improvements in value alignment across model families.")
    s = summarize(Paper(id="c", title="Constitutional Content at Midtraining", abstract=abstract))
    assert s.headline.startswith("We study what midtraining")


BALLISTIC = (  # SciTLDR-A dev (Apache 2.0, see tests/fixtures/datasets/README.md), LaTeX dropped
    "This paper presents the ballistic graph neural network. Ballistic graph neural network "
    "tackles the weight distribution from a transportation perspective and has many different "
    "properties comparing to the traditional graph neural network pipeline. The ballistic graph "
    "neural network does not require to calculate any eigenvalue. We use a perturbed coin "
    "operator to perturb and optimize the diffusion rate. Our results show that by selecting "
    "the diffusion speed, the network can reach a similar accuracy with fewer parameters. We "
    "also show the perturbed filters act as better representations comparing to pure ballistic "
    "ones. We provide a new perspective of training graph neural network, by adjusting the "
    "diffusion rate, the neural network's performance can be improved.")


def test_a_bare_restatement_of_the_title_is_not_the_headline() -> None:
    s = summarize(Paper(id="b", title="Beyond Classical Diffusion: Ballistic Graph Neural "
                        "Network", abstract=BALLISTIC))
    assert s.headline and not s.headline.startswith("This paper presents"), s.headline
