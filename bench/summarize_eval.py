"""Summarizer benchmark: one command, prints tables.

    .venv/bin/python bench/summarize_eval.py [--data DIR]    # or DIGEST_DATA=DIR
    .venv/bin/python bench/summarize_eval.py --timing-only --baseline ../old-checkout

DIR (default ``../shared/data`` beside the checkout) must hold ``scitldr_a_dev.jsonl``,
``csabstruct_train.jsonl`` and ``seed_papers.json``. There is no test split here, by design.

"before" is the previous release's method, re-implemented here on the same role model (its
weights are unchanged): the hand-weighted headline formula of issue 3 and its result rule.

1. Headline vs SciTLDR-A dev TLDRs (rouge-score, stemming): per paper the reference with the
   best ROUGE-1 F, then its R2/RL F; averaged. Ours next to baselines (first sentence, a
   cue-phrase pick, sumy LexRank, before, the ranker alone without the headline rules) and the
   single-sentence oracle. Every method sees the same cleaned, split sentences. Shown on all of
   dev and on its two fixed halves: "tune" (sha1(id) even, the half used to choose among
   settings) and "check" (the other half, the honest estimate for unseen abstracts).
2. Claims that carry the key result and stand alone, on SciTLDR dev + the 81 seed papers: the
   share of numeric-result abstracts (a sentence that is not background states a %, a factor
   or "N times faster") whose claims carry no quantity; the share of claims that lean on a
   sentence not shown just before them ("These scores …", "… to address this.").
3. Roles of the claims on CSAbstruct held out (20%, see scripts/train_summarizer.py): the role
   model is retrained here on the other 80% (deterministic), so no claim is judged by a model
   that saw its abstract. CSAbstruct has no titles.
4. Sentence splitting against the gold splits; time per abstract on the seed papers, and with
   ``--baseline DIR`` another checkout's ``summarize()`` timed interleaved with ours (the
   ratio per repeat is what survives a machine shared with other work).
5. With ``--baseline DIR``, first: whether our summaries are the baseline's, field for field,
   on SciTLDR-A dev and the seed papers (with and without titles) and CSAbstruct: a change
   made for speed must change no output.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer
from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
from sumy.nlp.stemmers import Stemmer
from sumy.summarizers.lex_rank import LexRankSummarizer
from sumy.utils import get_stop_words

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import train_summarizer  # noqa: E402

from digest.models import Paper  # noqa: E402
from digest.summarize import summarize  # noqa: E402
from digest.summarize._claims import (  # noqa: E402
    Scored,
    SummarizerModel,
    _opens_on_prior_work,
    paper_name,
    pick,
    result_score,
    scored,
    shipped_model,
)
from digest.summarize._compress import compress, fit, is_dangling  # noqa: E402
from digest.summarize._cues import (  # noqa: E402
    ANAPHORIC,
    CONTRIBUTION,
    STRONG,
    content_words,
    is_authorial,
    number_strength,
)
from digest.summarize._roles import RoleModel  # noqa: E402
from digest.text import clean_text, split_sentences  # noqa: E402

_CUE = re.compile(r"\b(?:we|this (?:paper|work|study)|in this (?:paper|work))\b.{0,60}?\b(?:"
                  r"propose|present|introduce|develop|show|demonstrate|describe|design)", re.I)


class _Words:
    """A sumy tokenizer on our splitter: sumy's own needs NLTK punkt data we cannot download."""

    language = "english"

    def to_sentences(self, text: str) -> tuple[str, ...]:
        return tuple(split_sentences(text))

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(re.findall(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*", sentence))


_TOKENIZER = _Words()
_LEXRANK = LexRankSummarizer(Stemmer("english"))
_LEXRANK.stop_words = get_stop_words("english")


def lexrank(sentences: Sequence[str]) -> str:
    doc = ObjectDocumentModel([Paragraph([Sentence(s, _TOKENIZER) for s in sentences])])
    best = _LEXRANK(doc, 1)
    return str(best[0]) if best else (sentences[0] if sentences else "")


def cue_phrase(sentences: Sequence[str]) -> str:
    return next((s for s in sentences if _CUE.search(s)), sentences[0] if sentences else "")


def is_tune(paper_id: str) -> bool:
    return int(hashlib.sha1(paper_id.encode()).hexdigest(), 16) % 2 == 0


# --------------------------------------------------------------------------- before


@dataclass(frozen=True)
class Claims:
    headline: str
    results: tuple[tuple[int, str], ...]  # (sentence index, text)
    head_index: int | None

    @property
    def texts(self) -> tuple[str, ...]:
        return ((self.headline,) if self.headline else ()) + tuple(t for _, t in self.results)

    @property
    def indices(self) -> tuple[int, ...]:
        return ((self.head_index,) if self.head_index is not None else ()) + tuple(
            i for i, _ in self.results)


def _before_background(c: Scored) -> bool:
    return (c.role == "background" or _opens_on_prior_work(c.sentence)) and not is_authorial(
        c.sentence)


def before(cands: Sequence[Scored], title: str, budget: int = 350) -> Claims:
    """The previous release: headline by the hand-weighted formula (its weights chosen on the
    tune half, as documented then), the best two result sentences that fit whole."""
    claims = [c for c in cands if not _before_background(c)] or list(cands[:1])
    if not claims:
        return Claims("", (), None)
    tw = content_words(title)

    def head_score(c: Scored) -> float:
        overlap = len(tw & content_words(c.text)) / len(tw) if tw else 0.0
        r = c.roles
        return (r["objective"] + 0.2 * r["method"] + 0.25 * bool(CONTRIBUTION.search(
            c.text.lower())) + overlap - 0.5 * bool(ANAPHORIC.search(c.text))
            - 0.005 * max(0, len(c.text.split()) - 20)
            - 0.75 * r["background"] * (1.0 - overlap))

    ranked = sorted(claims, key=lambda c: -head_score(c))
    head = next((c for c in ranked[:3] if len(c.text) <= budget), ranked[0])
    room = budget - min(len(head.text), budget)
    results: list[tuple[int, str]] = []
    for score, c in sorted(((result_score(c), c) for c in claims if c is not head),
                           key=lambda sc: -sc[0]):
        if score <= 0 or len(results) == 2:
            break
        text = compress(c.sentence, result=True)
        if len(text) + 1 <= room:
            results.append((c.index, text))
            room -= len(text) + 1
    return Claims(fit(head.text, budget), tuple(sorted(results)), head.index)


def ours(cands: Sequence[Scored], title: str, name: str, budget: int = 350) -> Claims:
    head, results = pick(cands, budget, title, name)
    if head is None:
        return Claims("", (), None)
    return Claims(fit(head.text, budget), tuple((r.index, r.text) for r in results), head.index)


def ranker_only(cands: Sequence[Scored]) -> str:
    claims = [c for c in cands if not c.background] or list(cands[:1])
    return max(claims, key=lambda c: c.score).text if claims else ""


# --------------------------------------------------------------------------- tables


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def rouge_table(dev: list[dict[str, Any]]) -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    methods: dict[str, Callable[[dict[str, Any], list[str], list[Scored], str, str], str]] = {
        "first sentence": lambda r, s, c, t, n: s[0] if s else "",
        "cue phrase": lambda r, s, c, t, n: cue_phrase(s),
        "sumy LexRank": lambda r, s, c, t, n: lexrank(s),
        "before (rules, issue 3)": lambda r, s, c, t, n: before(c, t).headline,
        "ranker alone (no rules)": lambda r, s, c, t, n: ranker_only(c),
        "ours (summarize headline)": lambda r, s, c, t, n: summarize(
            Paper(id=r["id"], title=r["title"], abstract=r["abstract"])).headline,
        "ours without the title": lambda r, s, c, t, n: summarize(
            Paper(id=r["id"], title="", abstract=r["abstract"])).headline,
    }
    rows: dict[str, list[tuple[bool, float, float, float, int]]] = {m: [] for m in methods}
    rows["oracle (best sentence)"] = []
    for r in dev:
        title = clean_text(r["title"])
        abstract = clean_text(r["abstract"])
        sentences = split_sentences(abstract)
        name = paper_name(title, abstract)
        cands = scored(sentences, title, name)
        tune = is_tune(r["id"])

        def score(text: str) -> tuple[bool, float, float, float, int]:
            results = [scorer.score(ref, text) for ref in r["tldrs"]]
            best = max(results, key=lambda x: x["rouge1"].fmeasure)
            return (tune, best["rouge1"].fmeasure, best["rouge2"].fmeasure,
                    best["rougeL"].fmeasure, len(text.split()))

        for m, fn in methods.items():
            rows[m].append(score(fn(r, sentences, cands, title, name)))
        rows["oracle (best sentence)"].append(
            max((score(s) for s in sentences), key=lambda x: x[1], default=score("")))

    n_tune = sum(is_tune(r["id"]) for r in dev)
    print(f"Headline vs SciTLDR-A dev TLDRs ({len(dev)} papers: tune {n_tune}, check "
          f"{len(dev) - n_tune}), ROUGE F x100")
    header = (f"{'method':27} {'R1':>5} {'R2':>5} {'RL':>5} {'words':>5} | {'R1 tune':>7} "
              f"{'R1 check':>8} {'R2 check':>8} {'RL check':>8}")
    print(header)
    print("-" * len(header))
    for m, vals in rows.items():
        def mean(i: int, part: bool | None = None) -> float:
            return statistics.fmean(v[i] for v in vals if part is None or v[0] == part)
        print(f"{m:27} {100 * mean(1):5.1f} {100 * mean(2):5.1f} {100 * mean(3):5.1f} "
              f"{mean(4):5.1f} | {100 * mean(1, True):7.1f} {100 * mean(1, False):8.1f} "
              f"{100 * mean(2, False):8.1f} {100 * mean(3, False):8.1f}")
    print()


def _leans(claims: Claims, sentences: Sequence[str]) -> int:
    """Claims that lean on a sentence not shown just before them."""
    count = 0
    shown = claims.indices
    for k, text in enumerate(claims.texts):
        if is_dangling(text) and not (k and shown[k] - 1 == shown[k - 1]):
            count += 1
    return count


def claims_table(dev: list[dict[str, Any]], seed: list[dict[str, Any]]) -> None:
    papers = [(r["title"], r["abstract"]) for r in dev] + [
        (p["title"], p["abstract"]) for p in seed]
    stats = {m: Counter[str]() for m in ("before", "ours")}
    for title_raw, abstract_raw in papers:
        title = clean_text(title_raw)
        abstract = clean_text(abstract_raw)
        sentences = split_sentences(abstract)
        name = paper_name(title, abstract)
        cands = scored(sentences, title, name)
        numeric = any(STRONG.search(c.sentence.lower()) and not c.background for c in cands)
        loose = any(STRONG.search(s.lower()) for s in sentences)
        for m, claims in (("before", before(cands, title)), ("ours", ours(cands, title, name))):
            s = stats[m]
            has = any(number_strength(t) >= 2 for t in claims.texts)
            s["numeric"] += numeric
            s["numeric none"] += numeric and not has
            s["any strong"] += loose
            s["any strong none"] += loose and not has
            s["claims"] += len(claims.texts)
            s["leaning"] += _leans(claims, sentences)
            s["results"] += len(claims.results)
            roles = {c.index: c.roles["background"] for c in cands}
            s["est bg"] += sum(roles.get(i, 0.0) for i in claims.indices)
            s["chars"] += sum(len(t) for t in claims.texts)
    print(f"Claims on SciTLDR-A dev + seed papers ({len(papers)} abstracts; budget 350)")
    header = (f"{'method':10} {'numeric-result abstracts':>24} {'no quantity':>12} | "
              f"{'any strong number':>17} {'no quantity':>12} | {'claims':>6} "
              f"{'leaning on unshown':>18} | {'results':>7} {'est. bg':>7}")
    print(header)
    print("-" * len(header))
    for m, s in stats.items():
        print(f"{m:10} {s['numeric']:24} {100 * s['numeric none'] / s['numeric']:11.1f}% | "
              f"{s['any strong']:17} {100 * s['any strong none'] / s['any strong']:11.1f}% | "
              f"{s['claims']:6} {100 * s['leaning'] / s['claims']:17.1f}% | {s['results']:7} "
              f"{100 * s['est bg'] / s['claims']:6.1f}%")
    print("numeric-result: a sentence not background by our rule states a %, a factor or \"N "
          "times faster\"; any strong number: any sentence does (background included).\n"
          "no quantity: no claim has a %, a factor or a decimal score. leaning: opens with "
          "This/These/It/Such/Thus/To address this/... or ends \"to address this\", and the "
          "sentence before it is not the claim shown just before it. est. bg: the role "
          "model's mean background probability of the claims (with titles; CSAbstruct, below, "
          "has none).")
    print()


def role_table(data: Path) -> None:
    train_part, held = train_summarizer.split(train_summarizer.load(data / "csabstruct_train.jsonl"))
    roles = RoleModel.from_json(train_summarizer.train_roles(train_part))
    model = SummarizerModel(roles=roles, ranker=shipped_model().ranker)
    counts = {m: Counter[str]() for m in ("before", "ours")}
    heads = {m: Counter[str]() for m in ("before", "ours")}
    for r in held:
        sentences, labels = r["sentences"], r["labels"]
        cands = scored(sentences, model=model)
        for m, claims in (("before", before(cands, "")), ("ours", ours(cands, "", ""))):
            counts[m].update(labels[i] for i in claims.indices)
            if claims.head_index is not None:
                heads[m][labels[claims.head_index]] += 1
    print(f"Roles of the claims, CSAbstruct held out ({len(held)} abstracts, role model "
          f"trained on the other {len(train_part)}; no titles)")
    names = ("background", "objective", "method", "result", "other")
    header = f"{'claims':22} {'n':>5} " + " ".join(f"{x:>10}" for x in names)
    print(header)
    print("-" * len(header))
    for m in ("before", "ours"):
        for label, c in ((f"{m}: headlines", heads[m]), (f"{m}: all claims", counts[m])):
            total = sum(c.values())
            print(f"{label:22} {total:5} " + " ".join(
                f"{100 * c[x] / total:9.1f}%" for x in names))
    print()


def splitter_table(data: Path, dev: list[dict[str, Any]]) -> None:
    """Exact agreement with the gold sentence splits of both data sets, and CPU time."""
    import pysbd
    import syntok.segmenter as syntok

    segmenter = pysbd.Segmenter(language="en", clean=False)

    def syntok_split(text: str) -> list[str]:
        return ["".join(t.spacing + t.value for t in sentence).strip()
                for paragraph in syntok.process(text) for sentence in paragraph]

    cs = train_summarizer.load(data / "csabstruct_train.jsonl")
    splitters: dict[str, Callable[[str], list[str]]] = {
        "ours (digest.text)": split_sentences,
        "syntok 1.4": syntok_split,
        "pysbd 0.3": lambda t: [x.strip() for x in segmenter.segment(t) if x.strip()],
    }
    print("Sentence splitting: abstracts split exactly as the gold split")
    header = f"{'splitter':28} {'CSAbstruct':>12} {'SciTLDR dev':>12} {'CPU s':>7}"
    print(header)
    print("-" * len(header))
    for m, fn in splitters.items():
        t0 = time.process_time()
        a = sum(fn(" ".join(r["sentences"])) == r["sentences"] for r in cs)
        b = sum(fn(r["abstract"]) == r["sentences"] for r in dev)
        print(f"{m:28} {a:5}/{len(cs):<6} {b:5}/{len(dev):<6} {time.process_time() - t0:7.2f}")
    print()


def _other_summarize(checkout: Path) -> Callable[..., Any]:
    """``summarize`` of another checkout (the previous release, say), imported beside ours
    under the same package name: its modules are loaded with it first on the path, its model
    read, then our modules put back. Ours are already loaded, and keep their own globals."""
    ours_loaded = {k: v for k, v in sys.modules.items() if k == "digest" or k.startswith("digest.")}
    for k in ours_loaded:
        del sys.modules[k]
    sys.path.insert(0, str(checkout))
    try:
        theirs = importlib.import_module("digest.summarize").summarize
        their_paper = importlib.import_module("digest.models").Paper
        theirs(their_paper(id="0", title="T", abstract="We propose T. It works."))  # its model
    finally:
        sys.path.remove(str(checkout))
        for k in [k for k in sys.modules if k == "digest" or k.startswith("digest.")]:
            del sys.modules[k]
        sys.modules.update(ours_loaded)

    def run(paper_id: str, title: str, abstract: str, ai_summary: str | None = None) -> Any:
        return theirs(their_paper(id=paper_id, title=title, abstract=abstract,
                                  ai_summary=ai_summary))

    return run


def identity_table(baseline: Path, dev: list[dict[str, Any]], seed: list[dict[str, Any]],
                   cs: list[dict[str, Any]]) -> bool:
    """Whether our ``summarize()`` gives the baseline checkout's summaries, field for field
    (title, headline, results, ai_summary), on SciTLDR-A dev and the seed papers (with and
    without their titles) and CSAbstruct (its sentences joined, no title): a change made for
    speed must change no output."""
    other = _other_summarize(baseline)
    sets = {
        "SciTLDR-A dev, titled": [(r["title"], r["abstract"]) for r in dev],
        "SciTLDR-A dev, untitled": [("", r["abstract"]) for r in dev],
        "seed papers, titled": [(p["title"], p["abstract"]) for p in seed],
        "seed papers, untitled": [("", p["abstract"]) for p in seed],
        "CSAbstruct train (no titles)": [("", " ".join(r["sentences"])) for r in cs],
    }
    print(f"Same summaries as --baseline {baseline.name} (title, headline, results, "
          "ai_summary)")
    header = f"{'papers':30} {'n':>6} {'identical':>10} {'differ':>7}"
    print(header)
    print("-" * len(header))
    same_all = True
    for label, papers in sets.items():
        differ = []
        for i, (title, abstract) in enumerate(papers):
            ai = abstract[:80]  # any text: it is cleaned and kept, never summarized
            ours_ = summarize(Paper(id=str(i), title=title, abstract=abstract, ai_summary=ai))
            theirs = other(str(i), title, abstract, ai)
            fields = ("title", "headline", "results", "ai_summary")
            if any(getattr(ours_, f) != getattr(theirs, f) for f in fields):
                differ.append(i)
        same_all &= not differ
        print(f"{label:30} {len(papers):6} {len(papers) - len(differ):10} {len(differ):7}"
              + (f"  e.g. #{differ[0]}" if differ else ""))
    print()
    return same_all


def timing(seed: list[dict[str, Any]], repeats: int = 7, baseline: Path | None = None) -> None:
    papers = [Paper(id=str(i), title=p["title"], abstract=p["abstract"])
              for i, p in enumerate(seed)]
    chars = statistics.fmean(len(p.abstract) for p in papers)
    shipped_model.cache_clear()
    t0 = time.process_time()
    summarize(papers[0])  # the first call loads the model (once per process)
    load_ms = 1000 * (time.process_time() - t0)

    cleaned = [(clean_text(p.title), split_sentences(clean_text(p.abstract))) for p in papers]

    def run_text() -> None:
        for p in papers:
            clean_text(p.title)
            split_sentences(clean_text(p.abstract))

    def run_scored() -> None:
        for title, sentences in cleaned:
            scored(sentences, title)

    def run_before() -> None:
        for title, sentences in cleaned:
            before(scored(sentences, title), title)

    def run_ours() -> None:
        for p in papers:
            summarize(p)

    print(f"Time per abstract, {len(papers)} seed papers (mean {chars:.0f} characters), CPU "
          f"ms, {repeats} repeats; model load + first paper {load_ms:.0f} ms")
    header = f"{'method':44} {'min':>6} {'median':>6} {'max':>6}"
    print(header)
    print("-" * len(header))
    rows: dict[str, Callable[[], None]] = {
        "ours: summarize()": run_ours,
        "  of which cleaning and splitting": run_text,
        "  of which candidates: roles, ranker": run_scored,
        "before's rules on the same candidates": run_before,
    }
    if baseline is not None:
        other = _other_summarize(baseline)

        def run_other() -> None:
            for p in papers:
                other(p.id, p.title, p.abstract)

        rows[f"--baseline {baseline.name}: summarize()"] = run_other
    times: dict[str, list[float]] = {m: [] for m in rows}
    for _ in range(repeats):  # interleaved, so a burst of load hits every row alike
        for m, fn in rows.items():
            t = time.process_time()
            fn()
            times[m].append(1000 * (time.process_time() - t) / len(papers))
    for m, ts in times.items():
        print(f"{m:44} {min(ts):6.3f} {statistics.median(ts):6.3f} {max(ts):6.3f}")
    if baseline is not None:
        ratios = [a / b for a, b in zip(times["ours: summarize()"], times[list(times)[-1]])]
        print(f"{'ours / baseline, per repeat':44} {min(ratios):6.3f} "
              f"{statistics.median(ratios):6.3f} {max(ratios):6.3f}")
        print("ratio per repeat (ours / baseline, same repeat): " + " ".join(
            f"{r:.3f}" for r in ratios))
    print("(the last row needs our candidates, ranker included: it is not the previous "
          "release's total; CPU time is inflated when other processes share the cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="directory with scitldr_a_dev.jsonl, "
                        "csabstruct_train.jsonl, seed_papers.json (default: $DIGEST_DATA or "
                        "../shared/data beside the checkout)")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. the previous "
                        "release) whose summarize() is timed interleaved with ours")
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (default 7)")
    parser.add_argument("--timing-only", action="store_true", help="only the time table")
    args = parser.parse_args()
    data = Path(args.data or os.environ.get("DIGEST_DATA") or ROOT.parent / "shared" / "data")
    for needed in ("scitldr_a_dev.jsonl", "csabstruct_train.jsonl", "seed_papers.json"):
        if not (data / needed).is_file():
            raise SystemExit(f"{data / needed}: not found; this needs {needed} "
                             "(--data DIR or DIGEST_DATA)")
    dev = _read_jsonl(data / "scitldr_a_dev.jsonl")
    seed = json.loads((data / "seed_papers.json").read_text("utf-8"))
    if args.baseline is not None:
        cs = train_summarizer.load(data / "csabstruct_train.jsonl")
        if not identity_table(args.baseline, dev, seed, cs):
            print("NOTE: the summaries differ from the baseline's (expected only when the "
                  "method changed, never for a speed change)\n")
    if not args.timing_only:
        rouge_table(dev)
        claims_table(dev, seed)
        role_table(data)
        splitter_table(data, dev)
    timing(seed, args.repeats, args.baseline)


if __name__ == "__main__":
    main()
