"""Summarizer benchmark: one command, prints tables.

    .venv/bin/python bench/summarize_eval.py

1. Headline vs SciTLDR-A dev TLDRs (rouge-score, stemming): per paper the reference with the best
   ROUGE-1 F, then its R2/RL F and R1 recall; averaged. Ours next to baselines (first sentence, a
   cue-phrase pick, sumy LexRank, our role model without compression) and the single-sentence
   oracle. Every method sees the same cleaned, split sentences. Shown on all of dev and on its
   two fixed halves: "tune" (sha1(id) even, the half used to choose among headline rules) and
   "check" (the other half, never looked at while choosing).
2. Roles of the picks on CSAbstruct held out (20%, see scripts/train_summarizer.py): the model is
   retrained here on the other 80% (a few seconds, deterministic), so no pick is scored by a
   model that saw its abstract.
3. The trade-off curve: the headline's background penalty on a grid fixed in advance, with
   dev ROUGE-1 (all, tune, check) and held-out CSAbstruct background shares per value.
4. Sentence splitting against the gold splits, and the time to summarize the 81 seed papers.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
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
from digest.summarize import summarize
from digest.summarize._claims import (
    BACKGROUND_PENALTY,
    LENGTH_PENALTY,
    RoleModel,
    is_authorial,
    pick,
    scored,
    shipped_model,
)
from digest.text import clean_text, split_sentences

DATA = ROOT.parent / "shared" / "data"
SCITLDR = DATA / "scitldr_a_dev.jsonl"
SEED = DATA / "seed_papers.json"

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


def ours_uncompressed(sentences: Sequence[str], title: str) -> str:
    """Our pick shown as the authors wrote it (what compression adds is the difference)."""
    head, _ = pick(scored(sentences), 10_000, title)
    return sentences[head.index] if head else ""


def ours_no_title(sentences: Sequence[str]) -> str:
    """Our pick without the title-overlap feature (roles and contribution phrase only)."""
    head, _ = pick(scored(sentences), 10_000)
    return head.text if head else ""


def is_tune(paper_id: str) -> bool:
    return int(hashlib.sha1(paper_id.encode()).hexdigest(), 16) % 2 == 0


def rouge_table() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    records = [json.loads(line) for line in SCITLDR.read_text("utf-8").splitlines() if line]

    def ours(r: dict[str, Any], sentences: Sequence[str]) -> str:
        return summarize(Paper(id=r["id"], title=r["title"], abstract=r["abstract"])).headline

    methods: dict[str, Callable[[dict[str, Any], Sequence[str]], str]] = {
        "first sentence": lambda r, s: s[0] if s else "",
        "cue phrase": lambda r, s: cue_phrase(s),
        "sumy LexRank": lambda r, s: lexrank(s),
        "ours without title overlap": lambda r, s: ours_no_title(s),
        "ours uncompressed": lambda r, s: ours_uncompressed(s, clean_text(r["title"])),
        "ours (summarize headline)": ours,
    }
    rows: dict[str, list[tuple[bool, float, float, float, float, int]]] = {m: [] for m in methods}
    rows["oracle (best sentence)"] = []
    for r in records:
        sentences = split_sentences(clean_text(r["abstract"]))
        tune = is_tune(r["id"])

        def score(text: str) -> tuple[bool, float, float, float, float, int]:
            results = [scorer.score(ref, text) for ref in r["tldrs"]]
            best = max(results, key=lambda x: x["rouge1"].fmeasure)
            return (tune, best["rouge1"].fmeasure, best["rouge2"].fmeasure,
                    best["rougeL"].fmeasure, best["rouge1"].recall, len(text.split()))

        for name, fn in methods.items():
            rows[name].append(score(fn(r, sentences)))
        rows["oracle (best sentence)"].append(
            max((score(s) for s in sentences), key=lambda x: x[1], default=score("")))

    print(f"Headline vs SciTLDR-A dev TLDRs ({len(records)} papers; "
          f"tune half {sum(is_tune(r['id']) for r in records)}), ROUGE x100")
    header = (f"{'method':28} {'R1 F':>6} {'R2 F':>6} {'RL F':>6} {'R1 rec':>6} {'words':>6}"
              f" | {'R1 tune':>7} {'R1 check':>8}")
    print(header)
    print("-" * len(header))
    for name, vals in rows.items():
        def mean(i: int, part: bool | None = None) -> float:
            pool = [v[i] for v in vals if part is None or v[0] == part]
            return statistics.fmean(pool)
        print(f"{name:28} {100 * mean(1):6.1f} {100 * mean(2):6.1f} {100 * mean(3):6.1f} "
              f"{100 * mean(4):6.1f} {mean(5):6.1f} | {100 * mean(1, True):7.1f} "
              f"{100 * mean(1, False):8.1f}")
    print()


def heldout_model() -> tuple[RoleModel, list[dict[str, Any]], int]:
    """The role model trained on CSAbstruct minus its held-out 20%, the held-out abstracts,
    and how many abstracts it was trained on."""
    train_part, held = train_summarizer.split(train_summarizer.load())
    return RoleModel.from_json(train_summarizer.train(train_part)), held, len(train_part)


def role_table(model: RoleModel, held: list[dict[str, Any]], n_train: int) -> None:
    authorial_bg = 0
    head_roles: Counter[str] = Counter()
    result_roles: Counter[str] = Counter()
    first_roles: Counter[str] = Counter()
    cue_roles: Counter[str] = Counter()
    for r in held:
        sentences, labels = r["sentences"], r["labels"]
        head, results = pick(scored(sentences, model), 350)
        if head is not None:
            head_roles[labels[head.index]] += 1
        result_roles.update(labels[c.index] for c in results)
        authorial_bg += sum(labels[c.index] == "background" and is_authorial(c.text)
                            for c in ([head] if head else []) + results)
        first_roles[labels[0]] += 1
        cue = cue_phrase(sentences)
        cue_roles[labels[sentences.index(cue)]] += 1
    picks = head_roles + result_roles

    def share(c: Counter[str], role: str) -> str:
        total = sum(c.values())
        return f"{100 * c[role] / total:5.1f}%" if total else "    -"

    print(f"Roles of picked sentences, CSAbstruct held out ({len(held)} abstracts, "
          f"model trained on the other {n_train})")
    roles = ("background", "objective", "method", "result", "other")
    header = f"{'picks':28} {'n':>5} " + " ".join(f"{r:>10}" for r in roles)
    print(header)
    print("-" * len(header))
    for name, c in (("headline (ours)", head_roles), ("result claims (ours)", result_roles),
                    ("all claims (ours)", picks), ("first sentence", first_roles),
                    ("cue phrase", cue_roles)):
        print(f"{name:28} {sum(c.values()):5} " + " ".join(f"{share(c, r):>10}" for r in roles))
    n_bg = head_roles["background"] + result_roles["background"]
    print(f"of the {n_bg} background picks, {authorial_bg} state the paper's own work "
          f"(\"We present ...\", \"This paper describes ...\"); without them background is "
          f"{100 * (n_bg - authorial_bg) / max(sum(picks.values()), 1):.1f}% of all claims")
    with_results = sum(1 for r in held if pick(scored(r["sentences"], model), 350)[1])
    print(f"abstracts with at least one result claim: {with_results} of {len(held)} "
          "(CSAbstruct has no titles: the headline here uses roles and the contribution phrase)")
    print()


PENALTIES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5)  # the grid, fixed in advance


def tradeoff_table(model: RoleModel, held: list[dict[str, Any]]) -> None:
    """The headline's background penalty (with and without the length term) traded against
    ROUGE: SciTLDR dev R1 (all, tune, check, and without titles), held-out CSAbstruct
    background shares, and the role model's own estimate of the background share of the picks
    on SciTLDR dev *with* titles (CSAbstruct has none, so its gold labels cannot tell)."""
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    cache: dict[tuple[str, str], float] = {}

    def r1(r: dict[str, Any], text: str) -> float:
        key = (r["id"], text)
        if key not in cache:
            cache[key] = max(scorer.score(ref, text)["rouge1"].fmeasure for ref in r["tldrs"])
        return cache[key]

    dev = []
    for line in SCITLDR.read_text("utf-8").splitlines():
        r = json.loads(line)
        dev.append((r, clean_text(r["title"]), scored(split_sentences(clean_text(r["abstract"])))))
    cs = [(r, scored(r["sentences"], model)) for r in held]
    print("Trade-off: headline background penalty (shipped BACKGROUND_PENALTY = "
          f"{BACKGROUND_PENALTY}, LENGTH_PENALTY = {LENGTH_PENALTY}) vs SciTLDR dev ROUGE-1 F "
          "and background picks")
    header = (f"{'penalty':>7} {'length':>6} {'R1 dev':>7} {'tune':>6} {'check':>6} "
              f"{'no title':>8} | {'CSAbstruct bg: heads':>20} {'all claims':>10} {'n':>4} | "
              f"{'SciTLDR est. bg':>15}")
    print(header)
    print("-" * len(header))
    for length in (0.0, LENGTH_PENALTY):
        for penalty in PENALTIES:
            tune: list[float] = []
            check: list[float] = []
            untitled: list[float] = []
            estimated: list[float] = []
            for r, title, cands in dev:
                head, results = pick(cands, 350, title, background_penalty=penalty,
                                     length_penalty=length)
                (tune if is_tune(r["id"]) else check).append(r1(r, head.text if head else ""))
                estimated.extend(c.roles["background"] for c in ([head] if head else []) + results)
                bare, _ = pick(cands, 350, background_penalty=penalty, length_penalty=length)
                untitled.append(r1(r, bare.text if bare else ""))
            bg_heads = bg_all = n_heads = n_all = 0
            for r, cands in cs:
                head, results = pick(cands, 350, background_penalty=penalty,
                                     length_penalty=length)
                picked = ([head] if head else []) + results
                n_all += len(picked)
                if head is not None:
                    n_heads += 1
                    bg_heads += r["labels"][head.index] == "background"
                bg_all += sum(r["labels"][c.index] == "background" for c in picked)
            shipped = penalty == BACKGROUND_PENALTY and length == LENGTH_PENALTY
            print(f"{penalty:7.2f} {length:6.3f} {100 * statistics.fmean(tune + check):7.1f} "
                  f"{100 * statistics.fmean(tune):6.1f} {100 * statistics.fmean(check):6.1f} "
                  f"{100 * statistics.fmean(untitled):8.1f} | {100 * bg_heads / n_heads:19.1f}% "
                  f"{100 * bg_all / n_all:9.1f}% {n_all:4} | "
                  f"{100 * statistics.fmean(estimated):14.1f}%{'  <- shipped' if shipped else ''}")
    print()


def splitter_table() -> None:
    """Exact agreement with the gold sentence splits of both data sets, and CPU time."""
    import pysbd
    import syntok.segmenter as syntok

    segmenter = pysbd.Segmenter(language="en", clean=False)

    def syntok_split(text: str) -> list[str]:
        return ["".join(t.spacing + t.value for t in sentence).strip()
                for paragraph in syntok.process(text) for sentence in paragraph]

    cs = train_summarizer.load()
    sd = [json.loads(line) for line in SCITLDR.read_text("utf-8").splitlines() if line]
    splitters: dict[str, Callable[[str], list[str]]] = {
        "ours (digest.sentences)": split_sentences,
        "syntok 1.4": syntok_split,
        "pysbd 0.3": lambda t: [x.strip() for x in segmenter.segment(t) if x.strip()],
    }
    print("Sentence splitting: abstracts split exactly as the gold split")
    header = f"{'splitter':28} {'CSAbstruct':>12} {'SciTLDR dev':>12} {'CPU s':>7}"
    print(header)
    print("-" * len(header))
    for name, fn in splitters.items():
        t0 = time.process_time()
        a = sum(fn(" ".join(r["sentences"])) == r["sentences"] for r in cs)
        b = sum(fn(r["abstract"]) == r["sentences"] for r in sd)
        print(f"{name:28} {a:5}/{len(cs):<6} {b:5}/{len(sd):<6} {time.process_time() - t0:7.2f}")
    print()


def timing() -> None:
    seed = json.loads(SEED.read_text("utf-8"))
    papers = [Paper(id=str(i), title=p["title"], abstract=p["abstract"])
              for i, p in enumerate(seed)]
    shipped_model.cache_clear()
    t0 = time.process_time()
    summarize(papers[0])  # first call loads the model (once per process)
    t1 = time.process_time()
    for p in papers:
        summarize(p)
    t2 = time.process_time()
    print(f"Timing (CPU time, so other load on the machine does not count): model load + first "
          f"paper {1000 * (t1 - t0):.0f} ms; all {len(papers)} seed papers "
          f"{1000 * (t2 - t1):.0f} ms ({1000 * (t2 - t1) / len(papers):.2f} ms/paper)")


if __name__ == "__main__":
    rouge_table()
    heldout = heldout_model()
    role_table(*heldout)
    tradeoff_table(heldout[0], heldout[1])
    splitter_table()
    timing()
