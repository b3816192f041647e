"""Forgiving word forms, both ways: compounds open, hyphenated or closed; plurals and
singulars; the Snowball inflections of the last word, kept apart where the meaning moves;
and ``=term`` for exactly the words as written. Small hand-made papers, one spelling each."""

from __future__ import annotations

import pytest

from digest.models import Paper
from digest.selection._forms import is_form, word_kind
from digest.selection._terms import PaperIndex, compile_term, normalize, scan

SPELLINGS = {
    "closed": "We study pretrained models and finetuning recipes.",
    "hyphen": "We study pre-trained models and fine-tuning recipes.",
    "open": "We study pre trained models and fine tuning recipes.",
    "inflected": "We quantize weights; the quantized model is fine-tuned afterwards.",
    "transform": "A transformation that we transform with a general form.",
    "transformer": "A transformer, then two transformers; generalization follows.",
    "llm": "One LLM is enough.",
    "llms": "Several LLMs disagree.",
}
PAPERS = tuple(Paper(id=k, title="", abstract=v) for k, v in SPELLINGS.items())
INDEX = PaperIndex(PAPERS)


def found(raw: str) -> set[str]:
    hits = INDEX.hits(compile_term(raw))
    return {PAPERS[i].id for i in hits.papers}


@pytest.mark.parametrize("raw", ["pretrained", "pre-trained", "pre trained", "Pretrained"])
def test_a_compound_finds_every_spelling(raw: str) -> None:
    assert found(raw) == {"closed", "hyphen", "open"}


@pytest.mark.parametrize("raw", ["finetuning", "fine-tuning", "fine tuning"])
def test_finetuning_finds_its_spellings_and_inflections(raw: str) -> None:
    assert found(raw) == {"closed", "hyphen", "open", "inflected"}  # "fine-tuned" too


def test_the_last_word_finds_its_inflections() -> None:
    assert found("quantization") == {"inflected"}
    assert found("quantized") == {"inflected"}


def test_plurals_both_ways() -> None:
    assert found("LLM") == found("LLMs") == found("llms") == {"llm", "llms"}
    assert found("transformers") == found("transformer") == {"transformer"}


def test_stemmed_forms_keep_agent_nouns_and_adjectives_apart() -> None:
    # The stemmer gives transformer = transformation = transform, general = generalization.
    assert not found("transformer") & {"transform"}
    assert found("transformation") == found("transform") == {"transform"}
    assert found("generalization") == {"transformer"}
    assert found("general") == {"transform"}
    assert not is_form("optimizer", "optimization") and not is_form("optimal", "optimization")
    assert is_form("clustering", "clusters")  # "er" belongs to the stem: not an agent noun
    # a field's name is not its verb: "we interpret", "aligned with" are not the fields
    assert not is_form("interpretability", "interpret") and not is_form("alignment", "aligned")
    assert is_form("alignment", "alignments")
    assert word_kind("transformer", "transform") == "agent"


def test_exact_term_is_only_the_words_as_written() -> None:
    assert found("=pretrained") == {"closed"}
    assert found("=pre-trained") == found("=pre trained") == {"hyphen", "open"}
    assert found("=LLM") == {"llm"}
    assert compile_term("=pretrained").shown == "pretrained"


def test_index_agrees_with_the_scan_on_these_papers() -> None:
    for raw in ("pretrained", "pre-trained", "finetuning", "fine tuning", "quantization",
                "transformers", "LLMs", "=pretrained", "general", "tun*"):
        term = compile_term(raw)
        hits = INDEX.hits(term)
        for i, paper in enumerate(PAPERS):
            assert hits.abstract_counts.get(i, 0) == scan(term, normalize(paper.abstract)), raw
