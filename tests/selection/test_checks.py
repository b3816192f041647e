"""Term warnings measured on papers: broad, never found, a near form finds more, ambiguous."""

from __future__ import annotations

from digest.models import Paper, Subscriber, Topic
from digest.selection import Selector, term_warnings

PAPERS = tuple(
    [Paper(id=f"p{i}", title=f"Pre-trained model {i}", abstract="We study alignment.")
     for i in range(12)]
    + [Paper(id="closed", title="A pretrained model", abstract="Graph neural networks."),
       Paper(id="gnn", title="GNN", abstract="Graph neural networks (GNNs)."),
       Paper(id="asr", title="Jailbreaks", abstract="Attack success rate (ASR) is 90%."),
       Paper(id="asr2", title="Speech", abstract="ASR on speech: automatic speech "
                                                 "recognition (ASR).")]
    + [Paper(id=f"x{i}", title="Other", abstract="Alignment again." if i < 10 else "Nothing.")
       for i in range(44)])


def warnings(*topics: Topic) -> dict[str, list[str]]:
    sub = Subscriber(email="a@x.org", name=None, timezone="UTC", schedule="0 7 * * *",
                     max_papers=5, topics=topics, line=7)
    out: dict[str, list[str]] = {}
    for w in term_warnings(Selector(PAPERS), [sub]):
        assert w.line == 7 and w.subscriber == 0
        out.setdefault(w.key, []).append(w.message)
    return out


def test_broad_include_terms_are_flagged_not_require_terms() -> None:
    got = warnings(Topic(name="t", include=("alignment",), require=("alignment",)))
    assert got == {"subscribers[0].topics[0].include[0]": [
        "warning: 'alignment' is in 36% of today's papers (22 of 60): a broad word finds "
        "passing mentions; prefer a phrase, or add a require term"]}


def test_exact_term_hears_of_its_other_spellings() -> None:
    assert warnings(Topic(name="t", include=("=pretrained",))) == {
        "subscribers[0].topics[0].include[0]": [
            "warning: '=pretrained' found 1 paper, 'pretrained' 13"]}
    assert warnings(Topic(name="t", include=("pretrained",))) == {}


def test_expand_false_hears_of_the_vocabulary_and_never_found_terms() -> None:
    got = warnings(Topic(name="t", include=("GNN", "zebra crossing"), expand=False))
    assert got == {
        "subscribers[0].topics[0].include[0]": ["warning: 'GNN' found 1 paper, "
                                                "'graph neural network' 2"],
        "subscribers[0].topics[0].include[1]": ["warning: 'zebra crossing' is in none of "
                                                "today's 60 papers"]}


def test_an_acronym_with_other_meanings_today_is_explained() -> None:
    message, = warnings(Topic(name="t", include=("ASR",)))["subscribers[0].topics[0].include[0]"]
    assert message.startswith("warning: 'ASR' has other meanings in today's papers; it counts "
                              "only where a paper means automatic speech recognition")
