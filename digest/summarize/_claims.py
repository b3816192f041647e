"""Key claims of a paper: a headline sentence and up to two result claims with the evidence.

Owns: ``summarize(paper, budget) -> Summary``, the candidate claims (``scored``), the choice
among them (``pick``) and the shipped model (``shipped_model``). Pure; imports models, text and
the stage's private modules, and reads its weights ``digest/data/summarizer_model.json`` once
(package data, not user I/O). The method and its numbers: docs/summarizer.md.

1. Clean title, abstract and ai_summary, split the abstract (``digest.text``).
2. Roles (``_roles``): background / objective / method / result / other per sentence.
3. Headline (``_ranker``): the candidate the learned ranker scores closest to a TLDR, among
   those that are not background, not a conclusion's hedge or a side remark ("We also …",
   "Beyond …"), not a bare restatement of the title, and that stand alone (``standalone``).
4. Results: if the headline carries no strong number (a %, a factor, "N times faster") and
   another claim does, the one with the strongest number comes first, shortened to the clause
   that carries it when it does not fit (``number_clause``), never dropped for length alone;
   then the best other result claim that fits. Shown in abstract order, each standing alone
   (a claim that points back at the sentence before it is shown right after it, joined to
   it, or not at all).
Extractive: every word shown is the authors', except the paper's own name or "Our" in place of
"This method" (``standalone``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from digest.models import Paper, Summary
from digest.summarize._compress import (
    compress,
    fit,
    number_clause,
    shorter_headline,
    standalone,
)
from digest.summarize._cues import (
    COMPARISON_GAP,
    PRIOR_WORK_GAP,
    Cues,
    content_words,
    cues,
    is_link,
    number_strength,
)
from digest.summarize._ranker import Ranker, rank_features
from digest.summarize._roles import RoleModel, sentence_roles
from digest.text import clean_text, split_sentences

MODEL_FILE = "summarizer_model.json"
# A headline longer than this (two lines on a phone) may lose its trailing clauses without a
# digit ("…, where …") when the strongest number would not fit beside it otherwise.
HEADLINE_TRIM_CHARS = 200
# Added to the ranker's score of a sentence that presents the paper's named contribution ("We
# propose ViCrop, …"), so that close calls go its way (on the tune half of SciTLDR-A dev:
# 0, 0.5 and 1 are within 0.05 ROUGE-1; few of its titles name the method).
NAMED_BONUS = 0.5
# Without a title the ranker is off its training data (every SciTLDR paper has one) and has no
# evidence that "We describe X" at the top is the contribution rather than its context, so the
# role model's background probability counts against a headline, times this. The smallest
# value on the grid {0, 1, 2, 3, 4} that keeps held-out CSAbstruct background claims under 10%
# (bench/summarize_eval.py); with a title it is 0 (the best on the tune half of SciTLDR dev).
BACKGROUND_PENALTY = 0.0
UNTITLED_BACKGROUND_PENALTY = 3.0


@dataclass(frozen=True)
class SummarizerModel:
    """The shipped weights: the role model and the headline ranker."""

    roles: RoleModel
    ranker: Ranker

    @classmethod
    def from_json(cls, raw: object) -> SummarizerModel:
        if not isinstance(raw, dict):
            raise ValueError("summarizer model: expected an object with 'roles' and 'ranker'")
        return cls(roles=RoleModel.from_json(raw.get("roles")),
                   ranker=Ranker.from_json(raw.get("ranker")))


@lru_cache(maxsize=1)
def shipped_model() -> SummarizerModel:
    """The model in the package, read once per process."""
    text = resources.files("digest").joinpath("data", MODEL_FILE).read_text("utf-8")
    return SummarizerModel.from_json(json.loads(text))


def _opens_on_prior_work(sentence: str) -> bool:
    head = " " + " ".join(sentence.lower().split()[:12])  # " ": for the _GAP patterns
    return bool(PRIOR_WORK_GAP.search(head)) and not COMPARISON_GAP.search(head)


@dataclass(frozen=True)
class Scored:
    """A candidate claim: where it is, as written, as shown, its roles and ranker score."""

    index: int  # position in the abstract's sentences
    sentence: str  # as split
    text: str  # compressed, as shown
    roles: dict[str, float]
    cues: Cues  # of ``sentence``
    score: float  # the ranker's: higher reads more like the paper's TLDR
    background: bool  # context or motivation, not a claim of this paper (see ``scored``)

    @property
    def role(self) -> str:
        return max(self.roles, key=self.roles.__getitem__)

    def shown_as(self, text: str) -> Scored:
        # Not dataclasses.replace: it re-reads the fields by name, ~3x slower.
        return Scored(self.index, self.sentence, text, self.roles, self.cues, self.score,
                      self.background)


def scored(sentences: Sequence[str], title: str = "", name: str = "",
           model: SummarizerModel | None = None) -> list[Scored]:
    """Candidate claims from an abstract's sentences (cleaned, split), with roles and ranker
    scores; junk (links, "code is available", fragments) removed. ``index`` points into
    ``sentences``; ``name`` is the paper's (``paper_name``).

    A candidate is background when the role model says so or it opens on prior work ("…,
    existing testing methods have been adapted"), and it does not speak of the authors' own
    work ("we", "our", "this paper", the paper's name): "We present …" never is."""
    if not sentences:
        return []
    model = model or shipped_model()
    every = [cues(s) for s in sentences]
    roles = sentence_roles(sentences, model.roles, every)
    shown = {i: compress(s) for i, s in enumerate(sentences)
             if len(s.split()) >= 4 and not is_link(s)}
    # A sentence that is all aside ("(Keywords; Trust; Internet)") compresses to nothing.
    keep = [i for i, t in shown.items() if len(t.split()) >= 4]
    kept = [sentences[i] for i in keep]
    texts = [shown[i] for i in keep]
    found = [every[i] for i in keep]
    kept_roles = [roles[i] for i in keep]
    scores = model.ranker.scores(rank_features(found, texts, kept_roles, title))
    named = _named(name) if name else None
    out = []
    for i, s, t, r, cue, sc in zip(keep, kept, texts, kept_roles, found, scores):
        own = cue.authorial or bool(named and named.search(s))
        background = not own and (max(r, key=r.__getitem__) == "background"
                                  or _opens_on_prior_work(s))
        out.append(Scored(i, s, t, r, cue, sc, background))
    return out


def result_score(c: Scored) -> float:
    """How strongly a sentence reads as a result carrying evidence; 0 when it is not one.
    The role model under-calls results in ML abstracts ("GMem accelerates training by 46.7×"
    reads to it as method), so measured evidence also qualifies a sentence the model gives at
    least a 20% chance of being a result."""
    quant, compared, p = c.cues.quant, c.cues.comparison, c.roles["result"]
    if c.background or not (c.role == "result" and (quant or compared or c.cues.strength) or (
            quant and p >= 0.2)):
        return 0.0
    return p + 0.5 * quant + 0.2 * compared


_GENERIC = content_words("this paper work study we present propose introduce describe new "
                         "novel method approach framework model called named here")
_CONSEQUENCE = re.compile(r"\b(?:therefore|thus|hence)\b", re.I)


def is_hedge(c: Scored, last: int) -> bool:
    """A conclusion's hedge ("… could therefore yield broad …", "Overall, …", "These results
    suggest …"): true perhaps, but not what the paper is about."""
    if c.cues.hedge_opener:
        return True
    return c.cues.modal and not c.cues.contribution and (
        bool(_CONSEQUENCE.search(c.text)) or c.index == last)


def is_aside(c: Scored) -> bool:
    """A side remark: "We also …", "Beyond benchmarks, …", "Finally, …"."""
    return c.cues.aside


def repeats_title(text: str, title_words: frozenset[str]) -> bool:
    """"This paper presents the ballistic graph neural network.": the title again, no claim.
    (A definition is a claim: "We propose ZeroQ, a novel zero-shot quantization framework.")"""
    return (bool(title_words) and len(text.split()) <= 12 and "," not in text
            and len(content_words(text) - title_words - _GENERIC) <= 1)


_NAME_TOKEN = re.compile(r"\b[A-Za-z][\w-]*(?:[A-Z][\w-]*|\d[\w-]*)\b")


def paper_name(title: str, abstract: str) -> str:
    """What the paper calls its contribution, when the title says it and the abstract uses
    it: "ZeroQ" from "ZeroQ: A Novel Zero Shot Quantization Framework"; "" when unsure."""
    head = title.split(":")[0].strip() if ":" in title else ""
    # "name in abstract" first: a plain substring test, where the whole-word pattern (it opens
    # with a look-behind) is tried at every character of the abstract.
    if head and len(head.split()) <= 3 and head in abstract and _named(head).search(abstract):
        return head
    if head:  # "Visual AutoRegressive modeling (VAR)" for "Visual Autoregressive Modeling: …"
        short = re.search(rf"{re.escape(head)}\s+\(([A-Z][\w+-]{{1,15}})\)", abstract, re.I)
        if short and any(ch.isupper() for ch in short.group(1)[1:]):
            return short.group(1)
    for token in map(str, _NAME_TOKEN.findall(title)):
        # "ZeroQ", "GMem", "MoE++": capitals inside a word; not an acronym ("LLM", "BF16").
        caps = sum(ch.isupper() or ch.isdigit() for ch in token)
        if caps >= 2 and any(ch.islower() for ch in token) and token in abstract and _named(
                token).search(abstract):
            return token
    return ""


def _named(name: str) -> re.Pattern[str]:
    """``name`` as a whole word ("MoE++" too, where ``\\b`` fails after the "+"). The name
    opens the pattern and what may not come before it is looked behind for after it, so the
    engine searches for the name as a literal (a leading look-behind is tried at every
    character)."""
    escaped = re.escape(name)
    return re.compile(rf"{escaped}(?<![\w-]{escaped})(?![\w-])")


def _headline_options(claims: Sequence[Scored], title: str, name: str) -> list[Scored]:
    """Headline candidates, best first, each as it would be shown (standing alone)."""
    title_words = content_words(title)
    last = max(c.index for c in claims)
    good: list[Scored] = []
    fallback: list[Scored] = []
    named = _named(name) if name else None
    penalty = BACKGROUND_PENALTY if title_words else UNTITLED_BACKGROUND_PENALTY

    def rank(c: Scored) -> float:
        # The title vouches for the sentence that presents the paper's named contribution
        # ("We propose ViCrop, ..."): close calls go its way. Without the title's backing,
        # what the role model calls background counts against a headline.
        score = c.score
        if named and c.cues.contribution and named.search(c.text):
            score += NAMED_BONUS
        if penalty:
            overlap = len(title_words & content_words(c.text)) / len(title_words) \
                if title_words else 0.0
            score -= penalty * c.roles["background"] * (1.0 - overlap)
        return score

    for c in sorted(claims, key=lambda c: -rank(c)):
        text = standalone(c.text, name)
        if text is None or is_aside(c) or is_hedge(c, last) or repeats_title(text, title_words):
            fallback.append(c)
        else:
            good.append(c.shown_as(text))
            if len(good) == 3:  # pick looks at the best three
                break
    return good or fallback


def _result_text(c: Scored, room: int, name: str, shown: set[int],
                 before: Scored | None = None, *, first: bool = False) -> tuple[str, bool]:
    """``c`` as a result claim in at most ``room`` characters, standing alone ("" if it
    cannot), and whether it is joined to the sentence before it.
    Only the ``first`` (the strongest number) may be cut at a word to keep its number. A claim
    that leans on the sentence before it is shown right after that one, or joined to it
    (``before``, when that is a claim too and both fit), or not at all."""
    text = compress(c.sentence, result=True)
    if len(text) > room:
        text = number_clause(c.sentence, room, cut=first) if c.cues.strength >= 2 else ""
    if not text:
        return "", False
    alone = standalone(text, name)
    if alone is not None and len(alone) <= room:
        return alone, False
    if c.index - 1 in shown:
        return text, False
    if before is not None and before.index == c.index - 1 and not before.background:
        lead = standalone(before.text, name)
        if lead is not None and len(lead) + 1 + len(text) <= room:
            return f"{lead} {text}", True
    return "", False


def pick(candidates: Sequence[Scored], budget: int, title: str = "",
         name: str = "") -> tuple[Scored | None, list[Scored]]:
    """The headline and up to two result claims (in abstract order) within ``budget``
    characters, each with ``text`` as shown. ``name`` is the paper's (``paper_name``)."""
    claims = [c for c in candidates if not c.background] or list(candidates[:1])
    if not claims:
        return None, []
    options = _headline_options(claims, title, name)
    # A whole sentence beats a cut one: the best of the top three that fits, else the best
    # (cut at a word by the caller).
    headline = next((c for c in options[:3] if len(c.text) <= budget), options[0])
    numeric = sorted((c for c in claims if c.index != headline.index and c.cues.strength >= 3),
                     key=lambda c: (-result_score(c), -c.score))
    results: list[Scored] = []
    shown = {headline.index}
    by_index = {c.index: c for c in claims}

    def room() -> int:
        used = min(len(headline.text), budget) + sum(len(r.text) + 1 for r in results)
        return budget - used - 1  # -1: claims are shown apart, keep a separator's worth

    def add_number() -> None:
        # The strongest number comes first, shortened to fit rather than left out.
        for c in numeric:
            if c.index in shown:
                continue
            text, joined = _result_text(c, room(), name, shown, by_index.get(c.index - 1),
                                        first=True)
            if text:
                results.append(c.shown_as(text))
                shown.update((c.index, c.index - 1) if joined else (c.index,))
                return

    if numeric and number_strength(headline.text) < 3:
        add_number()
        long = len(headline.text) > HEADLINE_TRIM_CHARS
        for trimmed in shorter_headline(headline.text) if long and not results else ():
            headline = headline.shown_as(trimmed)  # only its trailing clauses go
            add_number()
            if results:
                break
        if not results:
            headline = next((c for c in options[:3] if len(c.text) <= budget), options[0])
    ranked = sorted(((result_score(c), c) for c in claims if c.index not in shown),
                    key=lambda sc: -sc[0])
    for score, c in ranked:
        if score <= 0:
            break
        if len(results) == 2:
            break
        text, joined = _result_text(c, room(), name, shown, by_index.get(c.index - 1))
        if text:
            results.append(c.shown_as(text))
            shown.update((c.index, c.index - 1) if joined else (c.index,))
    if numeric and len(results) < 2 and not any(number_strength(x.text) >= 3 for x in results):
        add_number()  # "These scores mark a 3.5× …" may stand now that its antecedent is shown
    results.sort(key=lambda c: c.index)
    return headline, _standing(headline, results, name)


def _standing(headline: Scored, results: list[Scored], name: str) -> list[Scored]:
    """Results in display order, minus any that leans on a sentence not shown just before it."""
    out: list[Scored] = []
    before = headline.index
    for r in results:
        if standalone(r.text, name) is not None or r.index - 1 == before:
            out.append(r)
            before = r.index
    return out


def summarize(paper: Paper, budget: int = 350) -> Summary:
    """The paper's key claims: ``headline`` then up to two ``results``, at most ``budget``
    characters in all; title and ai_summary cleaned."""
    title = clean_text(paper.title)
    abstract = clean_text(paper.abstract)
    name = paper_name(title, abstract)
    headline, results = pick(scored(split_sentences(abstract), title, name), budget, title, name)
    return Summary(
        paper_id=paper.id,
        title=title,
        headline=fit(headline.text, budget) if headline else "",
        results=tuple(c.text for c in results),
        ai_summary=clean_text(paper.ai_summary) or None if paper.ai_summary else None,
    )
