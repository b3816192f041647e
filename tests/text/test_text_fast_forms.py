"""``digest.text``'s fast forms do what their plain forms do: the splitter's boundary pattern
and the glued-times pattern that open with what they need (so the engine skips ahead), and the
substring tests that stand in for a character-class search and a split/join. Checked on the
real abstracts of the test fixtures and on crafted traps."""

from __future__ import annotations

import json
import re

import paths

from digest.text import _clean, _sentences, clean_text, split_sentences

TRAPS = [
    "", " ", "a", "methods.Our approach.We see", "ab.!Cd", "x.Y", "e.g.The", "U.S.A. The",
    "(Fig. 1(c)).We", "v1.5.The", "GPT-3.5.It", "http://a.b/c.Our", "1.2.3.Four",
    "a 20times b, 3 times 4, x2.5 times faster, 1.5times, .5times, a.3 times 4, 7times8",
    "  lead\ttab\nnl  trail ", "em\u2003space", "nbsp\u00a0x", "line\u2028sep", "two  spaces",
    "x\x1cy", "$x$ and \\% and {y} and ~z and `q` and a--b", "plain text, nothing to do.",
]


def _texts() -> list[str]:
    texts = list(TRAPS)
    for record in paths.dataset_records("scitldr_a_train.jsonl", "csabstruct_train.jsonl"):
        texts += record.get("sentences", [])
        if "sentences" in record:
            texts.append(" ".join(record["sentences"]))
        texts += [record[k] for k in ("title", "abstract") if k in record]
    for paper in json.loads(paths.SEED.read_text("utf-8")):
        texts += [paper["title"], paper["abstract"]]
    return texts + [clean_text(t) for t in texts]


TEXTS = _texts()


def test_the_boundary_pattern_finds_the_boundaries_the_look_behind_form_did() -> None:
    plain = re.compile(r"""[.!?]["'”)\]]?(\s+)(?=["'“(\[]?[A-Z0-9©†])"""
                       r"|(?<=[a-z0-9)]{2}[.!?])(?=[A-Z][a-z]+\b)")

    def cuts(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
        out = []
        for m in pattern.finditer(text):
            begin, end = m.span(1)
            out.append((begin, end) if begin >= 0 else (m.end(), m.end()))
        return out

    for text in TEXTS:
        assert cuts(_sentences._CANDIDATE, text) == cuts(plain, text), text
        assert split_sentences(text) == split_sentences(text.strip())


def test_glued_times_opens_with_its_number_and_replaces_the_same() -> None:
    plain = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ?times ?(\d+(?:\.\d+)?)\b"
                       r"|(?<![\w.])(\d+(?:\.\d+)?)times\b")

    def times(m: re.Match[str]) -> str:
        return f"{m.group(3)}×" if m.group(3) is not None else f"{m.group(1)}×{m.group(2)}"

    for text in TEXTS:
        assert _clean._GLUED_TIMES.sub(_clean._times, text) == plain.sub(times, text), text


def test_the_substring_tests_agree_with_the_searches_they_replace() -> None:
    latex = re.compile(r"[\\${}~`]")
    for text in TEXTS:
        assert _clean._has_latex(text) == bool(latex.search(text) or "--" in text), text
        if text:
            tidy = " ".join(text.split()) == text
            assert _clean._tidy_spaces(text) == tidy, repr(text)


def test_every_space_str_split_splits_on_is_checked() -> None:
    import sys
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()} - {" "}
    assert spaces == set(_clean._OTHER_SPACES) - {"  "}
