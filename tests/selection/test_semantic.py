"""The semantic layer with the real embedding model shipped in the wordllama wheel: it loads
with downloads disabled, ``about``/``like`` re-rank only what the terms let through, dislikes
push close papers down, and "you may also like" is small, labelled and above its threshold."""

from __future__ import annotations

from pathlib import Path

import wordllama

from digest.models import Feedback, Paper, Subscriber, Topic
from digest.selection import plan
from digest.selection._semantic import ALSO_MAX, ALSO_MIN, Semantic, embed

SPEECH = Paper(id="speech", title="Learning for streaming speech recognition",
               abstract="We train an end-to-end acoustic model for automatic speech "
                        "recognition that transcribes spoken audio with a lower word error "
                        "rate on noisy recordings.")
IMAGES = Paper(id="images", title="Learning image classifiers",
               abstract="We train convolutional networks that label photographs of animals "
                        "and vehicles, with data augmentation and better accuracy on ImageNet.")
GRAPHS = Paper(id="graphs", title="Learning on molecular graphs",
               abstract="We train message passing networks on molecules to predict chemical "
                        "properties of drug candidates.")
ASR2 = Paper(id="asr2", title="Whisper-style transcription of accented English",
             abstract="An automatic speech recognition model transcribes spoken English "
                      "audio; word error rate falls on noisy accented recordings.")
PAPERS = (IMAGES, GRAPHS, SPEECH, ASR2)


def selection(*topics: Topic, feedback: Feedback | None = None, max_papers: int = 10,
              papers: tuple[Paper, ...] = PAPERS):
    sub = Subscriber(email="a@x.org", name=None, timezone="UTC", schedule="0 7 * * *",
                     max_papers=max_papers, topics=topics)
    found, = plan(papers, [sub], {}, feedback={"a@x.org": feedback} if feedback else None)
    return found


def test_the_model_ships_in_the_wheel_and_loads_offline() -> None:
    package = Path(wordllama.__file__).parent
    assert list((package / "weights").glob("*.safetensors"))
    vectors = embed(["speech recognition", "speech recognition", "graph neural networks"])
    assert vectors.shape == (3, 256)
    assert abs(float(vectors[0] @ vectors[1]) - 1) < 1e-5
    assert float(vectors[0] @ vectors[2]) < 0.9


def test_about_reranks_only_what_the_terms_let_through() -> None:
    plain = selection(Topic(name="t", include=("learning",)))
    assert [p.paper.id for p in plain.picks] == ["graphs", "images", "speech"]  # tie: by id
    about = selection(Topic(name="t", include=("learning",),
                            about="Automatic speech recognition of spoken audio."))
    ids = [p.paper.id for p in about.picks]
    assert ids[0] == "speech" and set(ids) == {"images", "graphs", "speech"}  # asr2: no term
    assert about.picks[0].reasons == plain.picks[[p.paper.id for p in plain.picks].index(
        "speech")].reasons  # the reasons stay the terms'


def test_a_like_adds_a_labelled_close_paper_and_dislikes_push_down() -> None:
    topic = Topic(name="Speech", include=("learning",), like=("speech",))
    got = selection(topic)
    assert [p.paper.id for p in got.also] == ["asr2"]
    assert str(got.also[0].reasons[0]) == ("close to your paper «Learning for streaming "
                                           "speech recognition»")
    assert len(got.also) <= ALSO_MAX
    semantic = Semantic(PAPERS)
    assert float(semantic.vectors[3] @ semantic.vectors[2]) >= ALSO_MIN
    assert "asr2" not in {p.paper.id for p in selection(Topic(name="t", include=("learning",))
                                                        ).also}
    # a liked paper from an earlier day (feedback) works the same way
    assert [p.paper.id for p in selection(Topic(name="t", include=("learning",)),
                                          feedback=Feedback(more=(SPEECH,)),
                                          papers=(IMAGES, GRAPHS, ASR2)).also] == ["asr2"]
    # a disliked paper pushes its neighbours down
    topic = Topic(name="t", include=("learning", "transcription"))
    assert [p.paper.id for p in selection(topic).picks] == ["asr2", "graphs", "images", "speech"]
    down = selection(topic, feedback=Feedback(less=(ASR2,)))
    assert [p.paper.id for p in down.picks][:2] == ["graphs", "images"]
