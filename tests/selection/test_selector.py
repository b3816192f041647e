"""The selector's rules, each checked on the real seed papers (ids seed-00..seed-80 are their
positions in tests/fixtures/seed_papers.json), plus the index against its regex oracle."""

from __future__ import annotations

import functools
import gc
import json
from dataclasses import replace
from typing import Any

import paths
import pytest

from digest.models import Paper, Rank, Subscriber, Topic
from digest.selection import Selector, plan
from digest.selection._forms import plural_forms
from digest.selection._rank import category_matches
from digest.selection._terms import PaperIndex, compile_term, scan
from digest.selection._vocabulary import Vocabulary
from digest.selection._widen import ACRONYM_REPEATS
from digest.text import normalize, term_problem

SEED = paths.SEED
HF_FIXTURE = paths.FIXTURES / "hf_daily_papers.json"


def select(papers: Any, subscriber: Subscriber, *, history: frozenset[str] = frozenset()) -> Any:
    """One subscriber's selection over its own index (the tests' shorthand)."""
    return Selector(papers).select(subscriber, history)


def _load_seed() -> tuple[Paper, ...]:
    raw = json.loads(SEED.read_text(encoding="utf-8"))
    return tuple(Paper(id=f"seed-{i:02d}", title=p["title"], abstract=p["abstract"])
                 for i, p in enumerate(raw))


PAPERS = _load_seed()
BY_ID = {p.id: p for p in PAPERS}


def sub(*topics: Topic, max_papers: int = 100, email: str = "ada@example.org",
        **filters: object) -> Subscriber:
    return Subscriber(email=email, name="Ada", timezone="UTC", schedule="0 7 * * *",
                      max_papers=max_papers, topics=topics, **filters)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4)
def selector_for(papers: tuple[Paper, ...]) -> Selector:
    # One index per paper set keeps the file fast; select() itself is checked against it below.
    return Selector(papers)


def ids(*terms: str, papers: tuple[Paper, ...] = PAPERS, **topic: Any) -> list[str]:
    """Ids picked (rank order) for one topic including ``terms`` (passing mentions count:
    these tests are about what a term finds)."""
    topic.setdefault("passing_mentions", True)
    topic_ = Topic(name="t", include=terms, **topic)
    selection = selector_for(papers).select(sub(topic_))
    return [p.paper.id for p in selection.picks]


def idset(*terms: str, **topic: Any) -> set[str]:
    return set(ids(*terms, **topic))


# --------------------------------------------------------------------------- term language


def test_hyphen_in_term_finds_hyphen_space_and_nothing() -> None:
    # Mixture-of-Experts (22 title), Mixture of Experts (40 title), Mixture-of-experts (59),
    # and QMoE's abstract (9).
    assert idset("mixture of experts") == {"seed-09", "seed-22", "seed-40", "seed-59"}
    assert idset("mixture-of-experts") == idset("mixture of experts")
    # "pre-trained" finds "Pretrained" (2: title), "Pre-trained" (15) and "Pre-Trained" (65).
    found = idset("pre-trained")
    assert {"seed-02", "seed-15", "seed-65"} <= found
    assert "pre-trained" not in PAPERS[2].title.lower() and "pretrained" in PAPERS[2].title.lower()
    # "fine-tuning" finds "Finetuning" written as one word (25's title).
    assert "seed-25" in idset("fine-tuning")
    # "zero shot" with a space finds "Zero-Shot" and "Zero Shot" (3's title).
    assert {"seed-03", "seed-08", "seed-11"} <= idset("zero shot")


def test_zeroth_order_never_finds_zero_shot() -> None:
    assert idset("zeroth-order") == {"seed-16", "seed-18", "seed-20"}
    assert idset("zeroth order") == {"seed-16", "seed-18", "seed-20"}
    zero_shot = idset("zero-shot")
    assert not zero_shot & {"seed-16", "seed-18"}
    assert "seed-00" in zero_shot and "seed-00" not in idset("zeroth-order")


def test_plain_term_finds_its_simple_plural() -> None:
    # seed-07 says "LLMs" (never "LLM"); seed-59's title says "LLMS".
    assert "llm " not in normalize(PAPERS[7].abstract) and "llms" in normalize(PAPERS[7].abstract)
    assert {"seed-07", "seed-59"} <= idset("LLM")
    # consonant + y -> ies: seed-14 only says "strategies".
    assert "strategy" not in normalize(PAPERS[14].abstract)
    assert "seed-14" in idset("strategy")
    assert plural_forms("strategy") == ("strategy", "strategys", "strategyes", "strategies")
    assert plural_forms("day")[-1] == "dayes"  # vowel + y: no "ies" form


def test_plural_finds_singular_and_words_are_whole() -> None:
    # Plurals both ways: a plural term finds the singular; "unlearn" without * is a whole
    # word, though its inflections count (74 says "Unlearn", 68 "unlearned").
    assert "diffusion models" not in normalize(PAPERS[23].title + " " + PAPERS[23].abstract)
    assert "seed-23" in idset("diffusion model") and "seed-23" in idset("diffusion models")
    assert idset("=unlearn") == {"seed-74"}  # 74's abstract has the bare word "Unlearn"
    assert "unlearndiffatk" not in " ".join(compile_term("unlearn").words)
    assert not idset("unlearn") & {"seed-45"} or "unlearn" in normalize(PAPERS[45].abstract)
    # "GAN" must not fire inside "began", "organ" or "Gaussian".
    gan = idset("GAN")
    assert "seed-11" in gan
    for paper in PAPERS:
        text = normalize(paper.title + " " + paper.abstract)
        if "gan" in text and not any(w in text for w in (" gan", "gan ", "-gan", "gans", "(gan")):
            assert paper.id not in gan


def test_trailing_star_is_a_prefix_wildcard() -> None:
    found = idset("unlearn*")
    # Unlearning (45, 59, 74, 78), Unlearned (68)
    assert {"seed-45", "seed-59", "seed-68", "seed-74", "seed-78"} == found
    # The wildcard works after a glued or hyphenated phrase too.
    assert {"seed-16", "seed-18", "seed-20"} == idset("zeroth-ord*")


def test_matching_is_on_folded_text_never_raw_markup() -> None:
    # seed-02 writes Fr\'echet in LaTeX, seed-48 plain "Frechet": both match either spelling.
    assert "Fr\\'echet" in PAPERS[2].abstract
    assert idset("Fréchet") == {"seed-02", "seed-48"}
    assert idset("frechet") == {"seed-02", "seed-48"}
    assert idset("Fr\\'echet") == {"seed-02", "seed-48"}
    assert idset("Nyström") == {"seed-07"}  # Nystr\"om in the abstract
    assert idset("textbf") == set()  # seed-53's \textbf{...} is markup, not a word


def test_unusable_terms() -> None:
    assert term_problem("quantization") is None
    assert term_problem("  ") == "empty term"
    assert term_problem("++") is not None and "never match" in (term_problem("++") or "")
    assert "only a wildcard at the end" in (term_problem("zero*shot") or "")
    assert "do not combine" in (term_problem("=zero*") or "")
    assert term_problem("=") == "empty term"
    assert compile_term("++").words == ()
    assert idset("++") == set()


# --------------------------------------------------------------------------- topic semantics


def test_include_any_require_all_exclude_none() -> None:
    quant = idset("quantization")
    assert {"seed-01", "seed-03", "seed-46", "seed-52", "seed-57"} <= quant
    with_llm = idset("quantization", require=("LLM",))
    assert with_llm == {p for p in quant if p in idset("LLM")}
    assert "seed-46" in with_llm and "seed-01" not in with_llm
    # require every term: quantization AND LLM AND zero-shot.
    assert idset("quantization", require=("LLM", "zero-shot")) == \
        quant & idset("LLM") & idset("zero-shot")
    # exclude: video diffusion papers are gone, the rest stays.
    diffusion = idset("diffusion model")
    no_video = idset("diffusion model", exclude=("video",))
    assert {"seed-51", "seed-76"} <= diffusion - no_video
    assert no_video == diffusion - idset("video")
    # A topic of only require terms needs no include.
    only_require = selector_for(PAPERS).select(sub(Topic(name="r", require=("LLM", "quantization"))))
    assert {p.paper.id for p in only_require.picks} == idset("LLM") & quant


def test_any_topic_is_enough() -> None:
    s = sub(Topic(name="quant", include=("quantization",), passing_mentions=True),
            Topic(name="unlearning", include=("unlearn*",), passing_mentions=True))
    got = {p.paper.id for p in selector_for(PAPERS).select(s).picks}
    assert got == idset("quantization") | idset("unlearn*")


def _with_metadata() -> tuple[Paper, ...]:
    meta = {
        "seed-01": dict(categories=("cs.LG", "cs.CV"), authors=("Yongkweon Jeon",), upvotes=3),
        "seed-03": dict(categories=("cs.CV",), authors=("Yaohui Cai", "Zhewei Yao"), upvotes=40),
        "seed-46": dict(categories=("cs.CL", "cs.LG"), authors=("Eldar Kurtić",), upvotes=12),
        "seed-57": dict(categories=("stat.ML",), authors=("Xiaoxia Wu", "José Müller"),
                        upvotes=None),
        "seed-52": dict(categories=("astro-ph.GA",), authors=("Yuzhang Shang",), upvotes=0),
    }
    return tuple(replace(p, **meta[p.id]) if p.id in meta else p  # type: ignore[arg-type]
                 for p in PAPERS)


def test_categories_have_arxiv_semantics() -> None:
    papers = _with_metadata()
    assert idset("quantization", papers=papers, categories=("cs.LG",)) == {"seed-01", "seed-46"}
    assert idset("quantization", papers=papers, categories=("cs",)) == \
        {"seed-01", "seed-03", "seed-46"}
    assert idset("quantization", papers=papers, categories=("cs.*",)) == \
        {"seed-01", "seed-03", "seed-46"}
    assert idset("quantization", papers=papers, categories=("CS.lg", "stat")) == \
        {"seed-01", "seed-46", "seed-57"}
    assert idset("quantization", papers=papers, categories=("astro-ph",)) == {"seed-52"}
    # A paper without categories cannot pass a categories filter.
    assert "seed-27" in idset("quantization", papers=papers)
    assert "seed-27" not in idset("quantization", papers=papers, categories=("cs",))
    assert not category_matches("cs.L", "cs.LG")
    assert not category_matches("cs", "csx.LG")
    assert category_matches("hep-th", "hep-th") and not category_matches("hep", "hep-th")


def test_authors_and_min_upvotes() -> None:
    papers = _with_metadata()
    # case- and accent-insensitive substring of an author's name
    assert idset("quantization", papers=papers, authors=("muller",)) == {"seed-57"}
    assert idset("quantization", papers=papers, authors=("KURTIC", "yao")) == \
        {"seed-46", "seed-03"}
    # the needle may not span two names ("Cai" + "Zhewei")
    assert idset("quantization", papers=papers, authors=("cai zhe",)) == set()
    # missing upvotes count as 0
    assert idset("quantization", papers=papers, min_upvotes=10) == {"seed-03", "seed-46"}
    assert "seed-57" in idset("quantization", papers=papers, min_upvotes=0)


def test_subscriber_filters_apply_on_top_of_every_topic() -> None:
    papers = _with_metadata()
    s = sub(Topic(name="quant", include=("quantization",)),
            Topic(name="zero", include=("zero-shot",)), categories=("cs.CV",), min_upvotes=1)
    assert {p.paper.id for p in selector_for(papers).select(s).picks} == {"seed-01", "seed-03"}


def test_topic_with_only_metadata_matches_by_metadata() -> None:
    papers = _with_metadata()
    picks = selector_for(papers).select(sub(Topic(name="CL", categories=("cs.CL",)))).picks
    assert [p.paper.id for p in picks] == ["seed-46"]
    assert picks[0].reasons == () and picks[0].topics == ("CL",)


# --------------------------------------------------------------------------- ranking


def test_a_passing_mention_is_no_pick_unless_asked_for() -> None:
    # TinySAM (47) mentions quantization once, in its abstract only: in passing.
    assert normalize(PAPERS[47].abstract).count("quantization") == 1
    assert ids("quantization")[-1] == "seed-47"  # passing_mentions: true, it ranks last
    strict = ids("quantization", passing_mentions=False)
    assert "seed-47" not in strict and strict == ids("quantization")[:-1]
    # with another term of the topic in the same paper it is no passing mention
    assert "seed-47" in ids("quantization", "segment anything", passing_mentions=False)


def test_title_hit_outranks_abstract_hits() -> None:
    ranked = ids("quantization")
    # 52 has it in the title once; 27 only in its abstract but several times.
    assert normalize(PAPERS[27].abstract).count("quantization") > 1
    assert "quantization" not in normalize(PAPERS[27].title)
    assert ranked.index("seed-52") < ranked.index("seed-27")
    title_hits = [i for i in ranked if "quantization" in normalize(BY_ID[i].title)]
    assert ranked[:len(title_hits)] == title_hits


def test_more_distinct_terms_outrank_one() -> None:
    ranked = ids("quantization", "LLM")
    # 57 ("Redefining LLMs Quantization") and 46 have both in the title; 01 only one.
    assert ranked.index("seed-57") < ranked.index("seed-01")
    assert ranked.index("seed-46") < ranked.index("seed-01")


def test_upvotes_then_id_break_ties() -> None:
    twin = replace(PAPERS[1], id="seed-01-copy", upvotes=7)
    other = replace(PAPERS[1], id="seed-01-again")
    ranked = ids("Genie", papers=(PAPERS[1], other, twin))
    assert ranked == ["seed-01-copy", "seed-01", "seed-01-again"]


def test_reasons_explain_topic_term_and_where() -> None:
    s = sub(Topic(name="MoE", include=("Mixture of Experts", "unlearn*")),
            Topic(name="Unlearning", include=("unlearn*",)))
    picks = {p.paper.id: p for p in selector_for(PAPERS).select(s).picks}
    uoe = picks["seed-59"]  # both terms in the title
    assert [str(r) for r in uoe.reasons] == ["matched: Mixture of Experts in title",
                                             "matched: unlearn* in title"]
    assert uoe.reasons[0].topic == "MoE"
    assert uoe.topics == ("MoE", "Unlearning")  # MoE matched two terms there: best first
    qmoe = picks["seed-09"]
    assert [(r.topic, r.term, r.where) for r in qmoe.reasons] == \
        [("MoE", "Mixture of Experts", "abstract")]
    unl = picks["seed-78"]  # the same term in two topics is one reason
    assert [str(r) for r in unl.reasons] == ["matched: unlearn* in title"]
    assert set(unl.topics) == {"MoE", "Unlearning"}


# --------------------------------------------------------------------------- history and cut


def test_history_is_never_picked_again() -> None:
    s = sub(Topic(name="zo", include=("zeroth-order",)))
    selection = selector_for(PAPERS).select(s, history=frozenset({"seed-16", "seed-99"}))
    assert {p.paper.id for p in selection.picks} == {"seed-18", "seed-20"}
    assert selection.skipped_reason is None


def test_skipped_reason_says_which() -> None:
    s = sub(Topic(name="zo", include=("zeroth-order",)))
    done = selector_for(PAPERS).select(s, history=frozenset({"seed-16", "seed-18", "seed-20"}))
    assert done.picks == () and done.cut == ()
    assert done.skipped_reason == "3 matching papers were already sent"
    one = selector_for(PAPERS[16:17]).select(s, history=frozenset({"seed-16"}))
    assert one.skipped_reason == "1 matching paper was already sent"
    none = selector_for(PAPERS).select(sub(Topic(name="x", include=("homomorphic encryption",))))
    assert none.picks == () and none.skipped_reason == "no new papers match your topics"


def test_max_papers_cuts_in_rank_order() -> None:
    full = selector_for(PAPERS).select(sub(Topic(name="q", include=("quantization",))))
    cut = selector_for(PAPERS).select(sub(Topic(name="q", include=("quantization",)), max_papers=3),
                                      with_cut=True)
    assert cut.picks == full.picks[:3]
    assert cut.cut == full.picks[3:] and len(cut.cut) == cut.more > 0


def test_plan_matches_select_and_keys_history_by_lowercase_email() -> None:
    a = sub(Topic(name="q", include=("quantization",)), email="Ada@Example.org", max_papers=2)
    b = sub(Topic(name="zo", include=("zeroth-order",)), email="bob@example.org")
    history = {"ada@example.org": frozenset({"seed-01"})}
    selections = plan(PAPERS, [a, b], history)
    assert selections[0] == select(PAPERS, a, history=frozenset({"seed-01"}))
    assert selections[1] == select(PAPERS, b)
    assert "seed-01" not in {p.paper.id for p in selections[0].picks + selections[0].cut}


def test_repeated_paper_ids_are_picked_once() -> None:
    papers = PAPERS + (replace(PAPERS[16], title="Other"),)
    picks = selector_for(papers).select(sub(Topic(name="zo", include=("zeroth-order",)))).picks
    assert [p.paper.id for p in picks].count("seed-16") == 1
    assert len(Selector(papers).papers) == len(PAPERS)


# --------------------------------------------------------------------------- index vs regex


def _oracle_terms() -> list[str]:
    terms = ["mixture of experts", "zeroth-order", "zero-shot", "LLM", "unlearn*", "pre-trained",
             "fine-tuning", "strategy", "diffusion model", "zero*", "mo*", "a", "sub-1-bit",
             "large-language-model", "frechet", "x", "zero shot quant*", "of the", "image-to-video"]
    for item in json.loads(HF_FIXTURE.read_text(encoding="utf-8")):
        terms.extend(item["paper"].get("ai_keywords") or [])
    for paper in PAPERS[::7]:
        words = paper.title.split()
        terms.extend(" ".join(words[i:i + 2]) for i in range(0, len(words) - 1, 3))
    return terms


def test_index_agrees_with_the_regex_oracle() -> None:
    """The inverted index must find exactly what one regex per term finds, and count the
    same abstract occurrences: the regex is the term language written the naive way."""
    index = PaperIndex(PAPERS)
    fields = [(normalize(p.title), normalize(p.abstract)) for p in PAPERS]
    checked = 0
    for raw in _oracle_terms():
        term = compile_term(raw)
        assert term.words, raw
        hits = index.hits(term)
        for i, (title, abstract) in enumerate(fields):
            assert bool(hits.title >> i & 1) == bool(scan(term, title)), (raw, i, "title")
            assert hits.abstract_counts.get(i, 0) == scan(term, abstract), (raw, i, "abstract")
            checked += 1
    assert checked > 81 * 100


@pytest.mark.parametrize("raw, other", [("zeroth-order", "Zeroth-Order"), ("LLM", "llm"),
                                        ("unlearn*", "UNLEARN*"), ("=GAN", "=gan")])
def test_index_lookups_are_cached_per_term_key(raw: str, other: str) -> None:
    index = PaperIndex(PAPERS)
    assert index.hits(compile_term(raw)) is index.hits(compile_term(other))


def test_dashes_glued_between_words_join_like_hyphens() -> None:
    # LaTeX "--" becomes an en dash in clean text: "Zeroth--Order" is still zeroth-order, but
    # seed-07's spaced "algorithms -- Nystr\"om" does not glue "algorithms" to "nystrom".
    latex = replace(PAPERS[1], id="latex-dash", title="A Zeroth--Order View of Fokker–Planck")
    papers = (latex, PAPERS[7])
    assert ids("zeroth-order", papers=papers) == ["latex-dash"]
    assert ids("fokker planck", papers=papers) == ["latex-dash"]
    assert " -- Nystr" in PAPERS[7].abstract
    assert ids("algorithms nystrom", papers=papers) == []
    assert ids("nystrom", papers=papers) == ["seed-07"]


def test_plan_restores_the_garbage_collector_state() -> None:
    subscriber = sub(Topic(name="q", include=("quantization",)))
    assert gc.isenabled()
    plan(PAPERS[:5], [subscriber], {})
    assert gc.isenabled()
    gc.disable()
    try:
        plan(PAPERS[:5], [subscriber], {})
        assert not gc.isenabled()
    finally:
        gc.enable()


# --------------------------------------------------------------------------- whole selection vs a reference


@functools.lru_cache(maxsize=None)
def _normalized(paper: Paper) -> tuple[str, str]:
    return normalize(paper.title), normalize(paper.abstract)


@functools.lru_cache(maxsize=None)
def _regex_hit(raw: str, paper: Paper) -> tuple[bool, int]:
    term = compile_term(raw)
    title, abstract = _normalized(paper)
    count = scan(term, abstract)
    if term.mode == "acronym" and len(term.words) == 1:
        count = min(count, ACRONYM_REPEATS)  # an acronym's repeats count twice at most
    return bool(scan(term, title)), count


def _reference(papers: tuple[Paper, ...], s: Subscriber, history: frozenset[str]
               ) -> list[tuple[str, float, tuple[str, ...]]]:
    """The rules written the obvious way (a regex per term per paper): (id, score, reasons)."""
    def meta(p: Paper, cats: tuple[str, ...], authors: tuple[str, ...], up: int | None) -> bool:
        return ((not cats or any(category_matches(w, c) for w in cats for c in p.categories))
                and (not authors or any(normalize(w) in normalize(a)
                                        for w in authors for a in p.authors))
                and (up is None or (p.upvotes or 0) >= up))

    out = []
    for p in papers:
        if p.id in history or not meta(p, s.categories, s.authors, s.min_upvotes):
            continue
        found: dict[object, tuple[str, bool, int]] = {}
        matched = False
        for topic in s.topics:
            def hit(raw: str) -> tuple[bool, int]:
                return _regex_hit(raw, p)
            if not meta(p, topic.categories, topic.authors, topic.min_upvotes):
                continue
            if topic.include and not any(any(hit(t)) for t in topic.include):
                continue
            if not all(any(hit(t)) for t in topic.require) or any(any(hit(t))
                                                                   for t in topic.exclude):
                continue
            own = {compile_term(raw).key: hit(raw) for raw in topic.include + topic.require
                   if any(hit(raw))}
            if not topic.passing_mentions and list(own.values()) == [(False, 1)]:
                continue  # one mention of one term in the abstract: in passing
            matched = True
            for raw in topic.include + topic.require:
                in_title, count = hit(raw)
                if in_title or count:
                    found.setdefault(compile_term(raw).key, (raw, in_title, count))
        if matched:
            t = sum(1 for _r, a, _c in found.values() if a)
            score = t * 1e6 + len(found) * 1e3 + min(sum(c for _r, _a, c in found.values()), 999)
            reasons = tuple(sorted(r for r, _a, _c in found.values()))
            out.append((p, score, reasons))
    out.sort(key=lambda e: (-e[1], -(e[0].upvotes or 0), e[0].id))
    return [(p.id, score, reasons) for p, score, reasons in out]


def test_selection_agrees_with_a_reference_on_random_subscribers() -> None:
    """Random topics over real terms (multi-topic, multi-term, require, exclude, metadata):
    the bitmask/shared-pick machinery must give what the plain rules give, pick by pick."""
    import random

    rng = random.Random(3)
    papers = _with_metadata()
    terms = _oracle_terms()[:120] + ["quantization", "LLM", "diffusion model", "zero-shot",
                                     "unlearn*", "mixture of experts", "video", "GAN"]
    subscribers = []
    for n in range(150):
        topics = tuple(
            Topic(name=f"t{rng.randrange(4)}",
                  include=tuple(rng.sample(terms, rng.choice((1, 1, 2, 3)))),
                  require=tuple(rng.sample(terms, 1)) if rng.random() < 0.15 else (),
                  exclude=tuple(rng.sample(terms, 1)) if rng.random() < 0.3 else (),
                  categories=("cs",) if rng.random() < 0.05 else (),
                  min_upvotes=rng.choice((None, None, None, 5)),
                  passing_mentions=rng.random() < 0.3)
            for _ in range(rng.choice((1, 2, 3))))
        subscribers.append(sub(*topics, max_papers=rng.randrange(1, 8), email=f"u{n}@x.org",
                               authors=("yao",) if rng.random() < 0.05 else ()))
    history = {f"u{n}@x.org": frozenset(rng.sample([p.id for p in papers], 10))
               for n in range(0, 150, 2)}
    # No vocabulary: the reference knows the term language, not the field's synonyms.
    selections = plan(papers, subscribers, history, vocabulary=Vocabulary([]))
    compared = 0
    for s, got in zip(subscribers, selections, strict=True):
        want = _reference(papers, s, history.get(s.email, frozenset()))
        mine = [(p.paper.id, _packed(p.rank), tuple(sorted(r.term for r in p.reasons)))
                for p in got.picks + selector_cut(papers, s, history)]
        assert mine == want, s
        assert len(got.picks) == min(len(want), s.max_papers)
        compared += len(want)
    assert compared > 500


# --------------------------------------------------------------------------- the cut


def _packed(rank: Rank) -> float:
    # the reference scores as one number that sorts like the rank tuple
    return float(rank.title_terms * 1_000_000 + rank.terms * 1_000 + rank.abstract_hits)


def selector_cut(papers: Any, s: Subscriber, history: dict[str, frozenset[str]]) -> Any:
    return Selector(papers, Vocabulary([])).select(s, history.get(s.email, frozenset()),
                                                   with_cut=True).cut


def _quantization(max_papers: int, *, with_cut: bool = False) -> Any:
    return Selector(PAPERS).select(sub(Topic(name="q", include=("quantization", "LLM")),
                                       Topic(name="z", include=("zero-shot",)),
                                       max_papers=max_papers), with_cut=with_cut)


def test_the_cut_is_counted_and_its_picks_built_only_on_request() -> None:
    full = _quantization(1000)
    assert full.more == 0 and full.cut == () and len(full.picks) > 20
    counted = _quantization(3)
    assert counted.more == len(full.picks) - 3 and counted.cut == ()
    built = _quantization(3, with_cut=True)
    assert built.more == counted.more and built.cut == full.picks[3:]
    assert built.picks == counted.picks == full.picks[:3]
    assert all(isinstance(p.rank, Rank) for p in full.picks)
    assert [p.rank for p in full.picks] == sorted((p.rank for p in full.picks), reverse=True)


def test_plan_can_build_every_cut_up_front() -> None:
    subscribers = [sub(Topic(name="q", include=("quantization", "LLM")), max_papers=2),
                   sub(Topic(name="d", include=("diffusion model",)), max_papers=1,
                       email="bob@example.org")]
    lazy = plan(PAPERS, subscribers, {})
    built = plan(PAPERS, subscribers, {}, build_cuts=True)
    assert all(s.cut == () and s.more > 0 for s in lazy)
    assert all(len(s.cut) == s.more > 0 for s in built)
    assert [s.picks for s in built] == [s.picks for s in lazy]
    assert gc.isenabled()


def test_a_history_longer_than_the_papers_gives_the_same_selection() -> None:
    s = sub(Topic(name="zo", include=("zeroth-order", "quantization")), max_papers=3)
    short = frozenset({"seed-16", "seed-01"})
    long = short | {f"old-{n}" for n in range(500)}  # more ids than papers: walked the other way
    assert len(long) > len(PAPERS)
    assert selector_for(PAPERS).select(s, long) == selector_for(PAPERS).select(s, short)
    assert {"seed-16", "seed-01"}.isdisjoint(
        p.paper.id for p in selector_for(PAPERS).select(s, long).picks)


def test_one_selector_for_many_subscribers_stays_bounded_and_selects_as_a_fresh_one() -> None:
    """Its memo tables hold at most TABLE_SIZE entries each (the least recently met go), and
    a topic compiled again after it was dropped selects exactly as before."""
    import random

    from digest.selection._rank import TABLE_SIZE

    terms = ["diffusion", "language model", "transformer", "reinforcement learning", "video",
             "attention", "benchmark", "agent", "reasoning", "quantization", "robot", "graph"]
    rnd = random.Random(16)
    subscribers = [sub(*(Topic(name=f"topic {i} {k}", include=tuple(rnd.sample(terms, 2)))
                         for k in range(2)), max_papers=5, email=f"r{i}@example.org")
                   for i in range(TABLE_SIZE + 300)]
    shared = Selector(PAPERS)
    first = [shared.select(s) for s in subscribers[:50]]
    tables = [v for k, v in vars(shared).items()
              if type(v).__name__ == "Generations" and k != "_tier_copies"]  # (its own bound)
    largest = 0
    for s in subscribers:
        shared.select(s)
        largest = max(largest, *map(len, tables))
    assert tables and largest == TABLE_SIZE  # the bound was reached, and held
    assert [shared.select(s) for s in subscribers[:50]] == first  # dropped, rebuilt, the same
    fresh = Selector(PAPERS)
    assert [fresh.select(s) for s in subscribers[-50:]] == [
        shared.select(s) for s in subscribers[-50:]]


def _kept_tiers(selector: Selector) -> list[Any]:
    shapes = selector._shapes  # noqa: SLF001
    return [t for shape in (*shapes._young.values(), *shapes._old.values())  # noqa: SLF001
            for t in shape.tiers]


def _many_subscribers(n: int) -> list[Subscriber]:
    import random

    terms = ["diffusion", "language model", "transformer", "reinforcement learning", "video",
             "attention", "benchmark", "agent", "reasoning", "quantization", "robot", "graph"]
    rnd = random.Random(17)
    return [sub(*(Topic(name=f"t{i}{k}", include=tuple(rnd.sample(terms, rnd.randint(1, 3))),
                        exclude=tuple(rnd.sample(terms, rnd.randint(0, 1))),
                        passing_mentions=rnd.random() < 0.3) for k in range(2)),
                max_papers=5, email=f"r{i}@example.org") for i in range(n)]


def test_the_shapes_keep_one_copy_of_each_tier() -> None:
    """Shapes are many and their tiers few: equal tiers of different shapes are one object,
    so the shapes table holds each distinct tier once."""
    shared = Selector(PAPERS)
    for s in _many_subscribers(400):
        shared.select(s)
    tiers = _kept_tiers(shared)
    distinct = {t: t for t in tiers}
    assert len(distinct) < len(tiers) / 2  # copies there were
    assert all(t is distinct[t] for t in tiers)


def test_the_tier_copies_are_bounded_and_a_dropped_one_changes_no_pick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The table of tier copies holds at most TIER_COPIES entries; a tier dropped from it while
    a shape still holds it is only kept as another copy next time: the picks stay those of a
    selector whose table never dropped one."""
    from digest.selection import _rank

    subscribers = _many_subscribers(600)
    roomy = Selector(PAPERS)
    expected = [roomy.select(s, with_cut=True) for s in subscribers]
    assert len(roomy._tier_copies) < _rank.TIER_COPIES // 2  # noqa: SLF001 (never dropped)
    monkeypatch.setattr(_rank, "TIER_COPIES", 8)
    tight = Selector(PAPERS)
    largest = 0
    got = []
    for s in subscribers:
        got.append(tight.select(s, with_cut=True))
        largest = max(largest, len(tight._tier_copies))  # noqa: SLF001
    assert largest == 8
    assert got == expected


def test_topics_that_differ_in_name_or_term_order_share_a_selector_and_keep_their_reasons(
        ) -> None:
    """What a topic matches and how it ranks is kept by its terms and filters alone, so the
    topics below share it in one Selector; each still selects as it does on its own: its
    name in the picks, its reasons in its own order of terms, and of two spellings of one
    term the one written first."""
    moe = ("Mixture of Experts", "unlearn*")
    topics = [Topic(name=name, include=include, exclude=exclude, passing_mentions=passing)
              for name in ("MoE", "other")
              for include in (moe, moe[::-1], ("LLM", "llm"), ("llm", "LLM"), ("LLM",), ("llm",))
              for exclude, passing in (((), False), (("video",), True))]
    shared = Selector(PAPERS)
    for topic in topics:
        alone = Selector(PAPERS)
        for s in (sub(topic), sub(topic, Topic(name="z", include=("zero-shot", "LLM"))),
                  sub(topic, max_papers=2)):
            assert shared.select(s, with_cut=True) == alone.select(s, with_cut=True)

    def reasons(topic: Topic, paper_id: str) -> list[tuple[str, str]]:
        picks = {p.paper.id: p for p in shared.select(sub(topic)).picks}
        return [(r.topic, r.term) for r in picks[paper_id].reasons]

    assert reasons(Topic(name="MoE", include=moe), "seed-59") == [
        ("MoE", "Mixture of Experts"), ("MoE", "unlearn*")]  # both in the title
    assert reasons(Topic(name="other", include=moe[::-1]), "seed-59") == [
        ("other", "unlearn*"), ("other", "Mixture of Experts")]
    assert reasons(Topic(name="MoE", include=("llm", "LLM")), "seed-27") == [("MoE", "llm")]
    assert reasons(Topic(name="MoE", include=("LLM", "llm")), "seed-27") == [("MoE", "LLM")]


def test_the_tiers_a_selector_keeps_are_left_alone_by_the_collector() -> None:
    """The shapes' tiers hold numbers only (who picks a part's papers is a number), so the
    cyclic collector untracks them in its first passes: what a long send keeps in its tables
    is not rescanned by every full pass."""
    shared = Selector(PAPERS)
    shared.select(sub(Topic(name="q", include=("quantization", "LLM", "zero-shot")),
                      Topic(name="u", include=("unlearn*",))))
    for _ in range(3):  # a pass untracks a tuple whose items are: at worst one level a pass
        gc.collect()  # (a part, a tier's parts, the tier)
    tiers = [t for table in (shared._topics, shared._shapes)  # noqa: SLF001
             for compiled in (*table._young.values(), *table._old.values())  # noqa: SLF001
             for t in compiled.tiers]
    assert tiers and not any(gc.is_tracked(t) for t in tiers)
