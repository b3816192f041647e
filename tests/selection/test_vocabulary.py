"""The field's vocabulary: other spellings found and explained, ``expand: false``, kinds one
way only, ambiguous acronyms narrowed; the shipped file and its abbreviation miner."""

from __future__ import annotations

from pathlib import Path

import yaml

from digest.models import Paper, Subscriber, Topic
from digest.selection import plan
from digest.selection._abbreviations import definitions
from digest.selection._vocabulary import (
    Concept,
    Vocabulary,
    same_long_form,
    shipped_vocabulary,
    spelling_key,
    unrelated,
)

ROOT = Path(__file__).resolve().parents[2]

PAPERS = (
    Paper(id="gcn", title="Deeper GCNs for molecules", abstract="We stack many layers."),
    Paper(id="gnn", title="A survey", abstract="Graph neural networks (GNNs) are popular."),
    Paper(id="asr-speech", title="Robust ASR", abstract="We improve ASR on noisy speech."),
    Paper(id="asr-defined", title="Streaming models",
          abstract="Automatic speech recognition (ASR) on device; our ASR is fast."),
    Paper(id="asr-attack", title="Jailbreaks at scale",
          abstract="We raise the attack success rate (ASR) to 90%: ASR, ASR, ASR."),
    Paper(id="asr-bare", title="Prompt attacks", abstract="The ASR of our attack is high."),
)


def picks(*terms: str, papers: tuple[Paper, ...] = PAPERS, vocabulary: Vocabulary | None = None,
          **topic: object) -> dict[str, str]:
    topic.setdefault("passing_mentions", True)  # these papers are one-liners
    sub = Subscriber(email="a@x.org", name=None, timezone="UTC", schedule="0 7 * * *",
                     max_papers=20, topics=(Topic(name="t", include=terms, **topic),))  # type: ignore[arg-type]
    selection, = plan(papers, [sub], {}, vocabulary=vocabulary)
    return {p.paper.id: "; ".join(str(r) for r in p.reasons) for p in selection.picks}


def test_a_kind_is_found_and_says_so() -> None:
    got = picks("GNN")
    assert got["gcn"] == "matched: GCN (a kind of GNN) in title"
    assert got["gnn"] == "matched: GNN in abstract"


def test_kinds_do_not_find_their_parent_and_expand_false_turns_it_off() -> None:
    assert set(picks("GCN")) == {"gcn"}
    assert set(picks("GNN", expand=False)) == {"gnn"}
    assert picks("graph neural network")["gnn"] == "matched: graph neural network in abstract"


def test_an_ambiguous_acronym_needs_its_sense_in_the_paper() -> None:
    got = picks("ASR")
    # "speech" names the sense; a paper defining ASR as speech recognition counts; one that
    # defines it as attack success rate does not, nor one that never says which.
    assert set(got) == {"asr-speech", "asr-defined"}
    assert "asr-attack" in picks("=ASR")  # exact: as written, no narrowing
    assert set(picks("attack success rate")) == {"asr-attack"}


def test_repeated_acronyms_do_not_outrank_a_title_hit() -> None:
    papers = (Paper(id="title", title="GAN training", abstract="We train."),
              Paper(id="repeats", title="Images", abstract="GAN GAN GAN GAN GAN GAN."))
    sub = Subscriber(email="a@x.org", name=None, timezone="UTC", schedule="0 7 * * *",
                     max_papers=5, topics=(Topic(name="t", include=("GAN",)),))
    selection, = plan(papers, [sub], {})
    assert [p.paper.id for p in selection.picks] == ["title", "repeats"]
    assert selection.picks[1].rank == (0, 1, 2)  # six mentions count as two


def test_a_custom_vocabulary_same_spellings_both_ways() -> None:
    vocab = Vocabulary([Concept(("interpretability", "explainability"), ("saliency map",))])
    papers = (Paper(id="x", title="Explainability of models", abstract=""),
              Paper(id="s", title="", abstract="Saliency maps lie."))
    assert picks("interpretability", papers=papers, vocabulary=vocab) == {
        "x": "matched: explainability (same as interpretability) in title",
        "s": "matched: saliency map (a kind of interpretability) in abstract"}
    assert set(picks("explainability", papers=papers, vocabulary=vocab)) == {"x", "s"}


def test_spelling_keys_and_long_forms() -> None:
    assert spelling_key("Graph-Neural-Networks") == spelling_key("graph neural network")
    assert spelling_key("GANs") == spelling_key("GAN") != spelling_key("NAS")[:-1]
    assert same_long_form("generative adversarial nets", "generative adversarial networks")
    assert not same_long_form("attack success rate", "automatic speech recognition")
    assert same_long_form("rein forcement learning", "reinforcement learning")  # run together
    # another meaning shares no meaningful word; a near-spelling is not another meaning
    assert unrelated("attack success rate", "automatic speech recognition")
    assert unrelated("cost of transport", "chain of thought")  # "of" says nothing
    assert not unrelated("convolutional nns", "convolutional neural network")


def test_schwartz_hearst_finds_long_forms() -> None:
    text = ("We use graph convolutional networks (GCNs) and reinforcement learning from "
            "human feedback (RLHF); results (Table 2) and (ours) are not abbreviations.")
    assert list(definitions(text)) == [
        ("GCNs", "graph convolutional networks"),
        ("RLHF", "reinforcement learning from human feedback")]


def test_the_shipped_vocabulary_holds_every_reviewed_concept() -> None:
    vocab = shipped_vocabulary()
    reviewed = yaml.safe_load((ROOT / "scripts" / "vocabulary_reviewed.yaml").read_text())
    for entry in reviewed:
        for spelling in entry["same"]:
            one_spelling = len({spelling_key(s) for s in entry["same"]}) == 1
            assert vocab.variants(spelling) or one_spelling and not entry.get("kinds"), spelling
    assert {"ASR", "MT"} <= {s for s in ("ASR", "MT", "GAN") if vocab.ambiguous(s)}
    assert not vocab.ambiguous("GAN")
