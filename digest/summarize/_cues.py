"""The cue patterns every part of the summarizer reads: evidence (numbers, comparisons),
contribution phrases, authorial voice, dangling openers, hedges and asides; and
``content_words``, the crude stemmed bag the title overlap is measured with.

Pure; imports nothing of the project. Changing a pattern the role features or the ranker
features use changes what the shipped weights mean: retrain (scripts/train_summarizer.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

WORD = re.compile(r"[a-z]+")
NUMBER = re.compile(r"\d")
PERCENT = re.compile(r"\d\s?%|per ?cent")
FACTOR = re.compile(r"\d(?:\.\d+)?\s?[x×]\b|\d×")
COMPARISON = re.compile(
    r"\b(?:outperform\w*|improv\w*|better|superior|surpass\w*|beat(?:s|ing)?(?!-)|exceed\w*|"
    r"faster|state[- ]of[- ]the[- ]art|sota|speed-?ups?|reduc\w*|than|gains?|"
    r"achiev\w*|competitive|comparabl\w*|matches|rivals?)\b")
_URL = re.compile(r"https?://|www\.|github\.com|\bavailable at\b|\bcode (?:is|and)\b")
# The patterns below that are searched (not matched at the start) are written lower-case and
# compiled without re.I (several times faster): apply them to lower-cased text (``Cues``).

# Quantitative evidence: a percentage, a factor ("2.3x", "16×"), or a decimal score ("FID of
# 3.56"), but not a version or model name ("v1.5", "GPT-3.5", "Llama-3.1").
# Every branch opens with a digit (the decimal's "not after a word, dot or dash" is looked
# behind for after its first digit), so the engine skips to the next digit: ~5x faster than
# the same pattern with a leading look-behind, which is tried at every character.
QUANT = re.compile(r"\d\s?%|\d(?:\.\d+)?\s?[x×](?![\w-])|\d(?<![\w.-]\d)\d*\.\d+(?![.\d])")
# The numbers a reader looks for first: a %, a factor, "N times faster/more/fewer ...".
STRONG = re.compile(r"\d\s?%|\d(?:\.\d+)?\s?[x×](?![\w-])|\d\s?(?:percentage points|pp\b)"
                    r"|\d(?:\.\d+)?\s?times\s+(?:faster|more|less|fewer|higher|lower|smaller|"
                    r"larger|better|cheaper|speed-?up)")

# "We propose / this paper presents ...": the authors stating their contribution.
CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|study)|in this (?:paper|work))\b.{0,60}?\b(?:propose|present|"
    r"introduce|develop|show|demonstrate|describe|design)")
# Sentences about the authors' own work: not background whatever the role model says.
AUTHORIAL = re.compile(r"\b(?:we|our|us|this (?:paper|work|study|article|thesis|letter)|"
                       r"here)\b")
ANAPHORIC = re.compile(r"^(?:this|these|that|those|it|they|such|its|their)\b(?! (?:paper|work|"
                       r"study|article|letter|thesis|report|manuscript)\b)", re.I)
# A claim that leans on a sentence before it: a pointing subject ("These scores ...", "It
# ...", "Such a model ..."), a consequence ("Thus we ...", "Therefore ..."), or a purpose that
# points back ("To address this, ..."), unless it points at the paper itself ("This paper").
DANGLING = re.compile(
    r"^(?:(?:this|these|that|those|it|its|they|their|them|such|both|the latter|the former|"
    r"the above|the aforementioned)\b(?! (?:paper|work|study|article|letter|thesis|report|"
    r"manuscript|chapter|note)\b)"
    r"|(?:thus|therefore|hence|consequently|accordingly|as a result|as such|in doing so|"
    r"by doing so|this way|in this way|to this end|to that end|to do so|to do this)\b"
    r"|to (?:address|tackle|solve|overcome|fill|bridge|close|mitigate|alleviate|handle|"
    r"remedy|fix|resolve) (?:this|these|that|those|such|it|them)\b)", re.I)
# Conclusion hedges and side remarks: true, but not what the paper is about.
HEDGE_OPENER = re.compile(
    r"^(?:therefore|thus|hence|consequently|overall|in (?:conclusion|summary|sum)|taken together|"
    r"together|altogether|ultimately|these (?:results|findings|observations)|our (?:results|"
    r"findings)|this (?:suggests|indicates|implies|opens|paves|highlights))\b", re.I)
MODAL = re.compile(r"\b(?:could|might|may|would|potentially|possibly|perhaps)\b")
ASIDE_OPENER = re.compile(
    r"^(?:we (?:also|further|additionally|finally|then)|beyond|besides|finally|lastly|"
    r"in addition|additionally|moreover|furthermore|as a (?:by-?product|side)|"
    r"as an (?:aside|additional)|apart from)\b", re.I)

_STOPWORDS = frozenset(
    "a an the of for and or in on to with by from via is are we our this that at as its it be "
    "can using based towards toward into".split())
_SUFFIX = re.compile(r"(?:ations?|ing|ed|es|s|e)$")
_TOKEN = re.compile(r"[a-z0-9]+")
# ``bytes.translate`` tables that blank every byte but a-z (a-z0-9): on ASCII text, splitting
# the blanked bytes gives WORD's (``_TOKEN``'s) matches, ~2x faster than ``findall``.
_LETTERS = bytes(c if 97 <= c <= 122 else 32 for c in range(256))
_ALNUM = bytes(c if 97 <= c <= 122 or 48 <= c <= 57 else 32 for c in range(256))


def words(low: str) -> list[str]:
    """``WORD.findall(low)``: the runs of a-z in lower-cased text."""
    if low.isascii():
        return low.encode().translate(_LETTERS).decode().split()
    return WORD.findall(low)


class _Stems(dict[str, str | None]):
    """Word -> its stem, or None for a stop word; filled as words are met, bounded. One plain
    dict lookup per word (content_words stems every word of every candidate) is ~2.5x cheaper
    than a set difference plus an ``lru_cache`` call per distinct word."""

    def __missing__(self, word: str) -> str | None:
        stem = None if word in _STOPWORDS else (
            _SUFFIX.sub("", word) if len(word) > 4 else word)
        if len(self) < 1 << 16:
            self[word] = stem
        return stem


_STEMS = _Stems()


def content_words(text: str) -> frozenset[str]:
    """Lower-cased words minus stop words, crudely stemmed (``improved``/``improves`` ->
    ``improv``): enough to match a title's words in its abstract, and fast."""
    low = text.lower()
    tokens = low.encode().translate(_ALNUM).decode().split() if low.isascii() else \
        _TOKEN.findall(low)
    stems = set(map(_STEMS.__getitem__, tokens))
    stems.discard(None)
    return frozenset(stems)  # type: ignore[arg-type]  # None discarded


def is_authorial(text: str) -> bool:
    """About the authors' own work ("we", "our", "this paper")."""
    return bool(AUTHORIAL.search(text.lower()))


def is_link(text: str) -> bool:
    """A link or a "code is available" sentence: never a claim."""
    low = text.lower()
    return ("http" in low or "www." in low or "github.com" in low or "available at" in low
            or "code is" in low or "code and" in low) and bool(_URL.search(low))


def number_strength(text: str) -> int:
    """How strong the evidence a sentence carries is: 3 a %, a factor or "N times faster",
    2 a decimal score, 1 any other digit, 0 none."""
    return _strength(text.lower()) if NUMBER.search(text) else 0


def _strength(low: str) -> int:  # of lower-cased text with a digit
    if STRONG.search(low):
        return 3
    return 2 if QUANT.search(low) else 1


# Cheap necessary conditions for CONTRIBUTION and MODAL (an "or" of substring tests is ~30%
# cheaper than any() over a tuple, and a regex search for a missing cue costs more still).
def _contribution_hint(low: str) -> bool:
    return ("propose" in low or "present" in low or "introduce" in low or "develop" in low
            or "show" in low or "demonstrate" in low or "describe" in low or "design" in low)


def _comparison_hint(low: str) -> bool:  # a word every COMPARISON match contains
    return ("than" in low or "improv" in low or "achiev" in low or "outperform" in low
            or "better" in low or "reduc" in low or "state" in low or "gain" in low
            or "superior" in low or "surpass" in low or "beat" in low or "exceed" in low
            or "faster" in low or "sota" in low or "speed" in low or "competitive" in low
            or "comparabl" in low or "matches" in low or "rival" in low)


def _modal_hint(low: str) -> bool:
    return ("could" in low or "might" in low or "may" in low or "would" in low
            or "potential" in low or "possibl" in low or "perhaps" in low)


def _after_gap(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern``, which opens with ``\\b`` before a word character, with a non-word
    character in place of the ``\\b``. Searched in ``" " + text`` it matches where ``pattern``
    matches in ``text`` (one character earlier), but the engine skips from one non-word
    character to the next instead of testing the boundary at every character: ~2x faster."""
    if not pattern.pattern.startswith("\\b"):
        raise ValueError(f"{pattern.pattern!r} does not open with \\b")
    return re.compile("\\W" + pattern.pattern[2:], pattern.flags)


COMPARISON_GAP = _after_gap(COMPARISON)
_CONTRIBUTION_GAP = _after_gap(CONTRIBUTION)
_AUTHORIAL_GAP = _after_gap(AUTHORIAL)
_MODAL_GAP = _after_gap(MODAL)


class Cues(NamedTuple):
    """What the cue patterns say about one sentence, worked out once; and the sentence
    lower-cased and its words, which the role and ranker features read too. (A named tuple:
    built once per sentence, ~3x cheaper than a frozen dataclass of as many fields.)"""

    strength: int  # number_strength
    quant: bool  # QUANT: a %, a factor or a decimal score
    comparison: bool
    contribution: bool
    authorial: bool
    modal: bool
    hedge_opener: bool
    aside: bool
    low: str  # the sentence, lower-cased
    words: tuple[str, ...]  # ``words(low)``


def cues(text: str) -> Cues:
    low = text.lower()
    gap = " " + low  # for the _GAP patterns: what COMPARISON etc. find in ``low``
    strength = _strength(low) if NUMBER.search(low) else 0
    we = "we" in low or "this" in low or "our" in low or "us" in low or "here" in low
    return Cues(
        strength=strength,
        quant=strength >= 2 and (strength == 2 or bool(QUANT.search(low))),
        comparison=_comparison_hint(low) and bool(COMPARISON_GAP.search(gap)),
        contribution=we and _contribution_hint(low) and bool(
            _CONTRIBUTION_GAP.search(gap)),
        authorial=we and bool(_AUTHORIAL_GAP.search(gap)),
        modal=_modal_hint(low) and bool(_MODAL_GAP.search(gap)),
        hedge_opener=bool(HEDGE_OPENER.match(text)),
        aside=bool(ASIDE_OPENER.match(text)),
        low=low,
        words=tuple(words(low)),
    )


# Prior work as the subject, within the first dozen words, not compared against: the
# "however, existing methods ..." sentences, which the role model sometimes calls method.
PRIOR_WORK = re.compile(
    r"\b(?:existing|previous|prior|conventional|traditional|current|most)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:methods?|approaches|works?|studies|models|techniques|systems|solutions|algorithms|"
    r"frameworks|literature)\b")
PRIOR_WORK_GAP = _after_gap(PRIOR_WORK)
