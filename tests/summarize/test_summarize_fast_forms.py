"""The summarizer's fast forms find exactly what their plain forms find.

Several patterns and steps are written for the regex engine's sake (a literal or a character
class first, so it skips ahead; a cheap necessary condition before a costly search; a
tokenizer by ``bytes.translate``): each is checked here against the plain form it replaces,
on the real abstracts of the test fixtures (every sentence, every title) and on crafted
traps (Unicode letters and digits, hyphens, brackets, the long s that re.I folds to "s").
"""

from __future__ import annotations

import json
import re

import paths
import pytest

from digest.summarize import _claims, _compress, _cues, _roles
from digest.text import clean_text, split_sentences

TRAPS = [
    "", " ", "we", "We propose X.", "This paper presents Y; we show it is better than Z.",
    "2improved and improved2 and _improved and é-improved, outperforming-ish (better)",
    "beats-all beat beating-x speed-up speedups state-of-the-art state of the-art SOTA",
    "It could possibly, perhaps, maybe help; it may2 not; mayday.",
    "In this paper, we propose ZeroQ, a novel framework; ZeroQ-2 and ZeroQ++ and xZeroQ.",
    "MoE++ beats MoE (MoE++), and MoE++-style models; MoE++.",
    "Accuracy rises 5 % and 3.5% and 10 per cent and 7 percent (see Tab. 2), 1.2.3 v1.5.",
    "To address this, we propose X to tackle this issue.", "We do it to reſolve this.",
    "We use it to mitıgate these.", "ｗe propose ２x faster 3× models in the ＳＯＴＡ",
    "Existing methods, prior works and most current deep models fail; we improve on them.",
    "x (a (b) c) y ( unbalanced (z) and  (two  spaces) , then ; stop .",
    "A sentence with\ttabs\nand newlines\u2003and\u00a0spaces.",
]


def _texts() -> list[str]:
    texts = list(TRAPS)
    for record in paths.dataset_records("scitldr_a_train.jsonl", "csabstruct_train.jsonl"):
        texts += record.get("sentences", [])
        for key in ("title", "abstract"):
            if key in record:
                texts.append(record[key])
                texts += split_sentences(clean_text(record[key]))
    for paper in json.loads(paths.SEED.read_text("utf-8")):
        texts += [paper["title"], *split_sentences(clean_text(paper["abstract"]))]
    return texts


TEXTS = _texts()


def test_there_is_enough_to_compare_on() -> None:
    assert len(TEXTS) > 1000


@pytest.mark.parametrize("plain", [_cues.COMPARISON, _cues.CONTRIBUTION, _cues.AUTHORIAL,
                                   _cues.MODAL, _cues.PRIOR_WORK])
def test_the_gap_forms_match_where_the_plain_patterns_do(plain: re.Pattern[str]) -> None:
    fast = _cues._after_gap(plain)
    for text in TEXTS:
        low = text.lower()
        want = plain.search(low)
        got = fast.search(" " + low)
        assert bool(got) == bool(want), text
        if want and got:  # one character earlier: the non-word character before it
            assert got.start() == want.start() and got.end() == want.end() + 1, text


def test_the_gap_form_refuses_a_pattern_without_a_leading_boundary() -> None:
    with pytest.raises(ValueError, match="does not open with"):
        _cues._after_gap(_cues.NUMBER)


def test_quant_opens_with_its_digit_and_finds_the_same() -> None:
    plain = re.compile(r"\d\s?%|\d(?:\.\d+)?\s?[x×](?![\w-])|(?<![\w.-])\d+\.\d+(?![.\d])")
    for text in TEXTS:
        low = text.lower()
        assert [m.span() for m in _cues.QUANT.finditer(low)] == [
            m.span() for m in plain.finditer(low)], text


def test_percent_is_its_two_branches() -> None:
    assert _cues.PERCENT.pattern == "|".join(
        (_roles._DIGIT_PERCENT.pattern, _roles._PER_CENT.pattern))


def test_words_and_content_words_tokenize_as_the_regexes_do() -> None:
    token = re.compile(r"[a-z0-9]+")
    for text in TEXTS:
        low = text.lower()
        assert _cues.words(low) == _cues.WORD.findall(low), text
        stems = {_cues._STEMS[w] for w in token.findall(low)} - {None}
        assert _cues.content_words(text) == stems, text


def test_cues_carry_the_sentence_lowered_and_its_words() -> None:
    for text in TEXTS[:300]:
        cue = _cues.cues(text)
        assert cue.low == text.lower()
        assert list(cue.words) == _cues.WORD.findall(text.lower())


def test_the_name_pattern_finds_the_whole_word_as_the_look_behind_form_does() -> None:
    names = ["ZeroQ", "MoE++", "MoE", "X", "GF-DiT", "Visual AutoRegressive modeling", "Q"]
    for name in names:
        plain = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
        fast = _claims._named(name)
        for text in TEXTS:
            assert [m.span() for m in fast.finditer(text)] == [
                m.span() for m in plain.finditer(text)], (name, text)


def test_asides_are_dropped_as_by_the_plain_substitution() -> None:
    for text in TEXTS:
        if "(" not in text:
            continue
        want = _compress._SPACE_BEFORE.sub(r"\1", _compress._ASIDE.sub(
            _compress._drop_aside, text))
        assert _compress._drop_asides(text) == want, text


def test_the_purpose_hint_is_a_necessary_condition() -> None:
    for text in TEXTS:
        if _compress._TRAILING_PURPOSE.search(text):
            assert _compress._may_end_in_purpose(text), text
    assert _compress._may_end_in_purpose("We do it to reſolve this.")  # re.I: ſ is s
    assert not _compress._may_end_in_purpose("We set out to show this.")


def test_clauses_are_cut_as_by_the_character_loop() -> None:
    def plain(text: str) -> list[str]:
        parts: list[str] = []
        depth = start = 0
        for i, ch in enumerate(text):
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth = max(depth - 1, 0)
            elif ch in ",;" and depth == 0 and not (
                    ch == "," and text[i - 1:i].isdigit() and text[i + 1:i + 2].isdigit()):
                parts.append(text[start:i + 1])
                start = i + 1
        parts.append(text[start:])
        out: list[str] = []
        for part in parts:
            pieces = _compress._CLAUSE_WORD.split(part)
            out.extend(p if k == 0 else " " + p for k, p in enumerate(pieces))
        return [p for p in out if p.strip()]

    for text in TEXTS + ["a, 1,000 b; (c, d) e], f) g, h"]:
        assert _compress._clauses(text) == plain(text), text
