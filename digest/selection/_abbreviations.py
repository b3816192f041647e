"""Abbreviations defined in a text, by the Schwartz-Hearst method ("long form (SF)").

Schwartz & Hearst, "A simple algorithm for identifying abbreviation definitions in biomedical
text", PSB 2003: a short form in parentheses after a run of words; the long form is the
shortest run of preceding words, at most min(|SF| + 5, 2 * |SF|) of them, whose characters
contain the short form's letters and digits in order, right to left, the first one starting
a word. Pure; imports nothing from the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_PAREN = re.compile(r"\(([^()]{1,12})\)")
_WORD = re.compile(r"\S+")


def _short_form_ok(sf: str) -> bool:
    if not 2 <= len(sf) <= 10 or len(sf.split()) > 2:
        return False
    if not sf[0].isalnum() or not any(c.isalpha() for c in sf):
        return False
    # a short form has a capital letter (GAN, GANs, mAP); a plain word in parentheses is not one
    return any(c.isupper() for c in sf)


def _best_long_form(sf: str, words: list[str]) -> str | None:
    """The shortest suffix of ``words`` that the Schwartz-Hearst character match accepts."""
    text = " ".join(words)
    s, l_ = len(sf) - 1, len(text) - 1
    while s >= 0:
        c = sf[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        # walk left in the long form to a match; the first SF char must start a word
        while l_ >= 0 and (text[l_].lower() != c
                           or (s == 0 and l_ > 0 and text[l_ - 1].isalnum())):
            l_ -= 1
        if l_ < 0:
            return None
        s -= 1
        l_ -= 1
    start = text.rfind(" ", 0, l_ + 1) + 1
    long_form = text[start:]
    if len(long_form) <= len(sf) or sf.lower() in long_form.lower().split():
        return None
    return long_form


def definitions(text: str) -> Iterator[tuple[str, str]]:
    """(short form, long form) pairs defined in ``text``, in order of appearance."""
    for m in _PAREN.finditer(text):
        sf = m.group(1).strip()
        # "(SF, ...)" or "(SF; ...)": the short form comes first
        sf = re.split(r"[,;]\s", sf)[0].strip()
        if not _short_form_ok(sf):
            continue
        before = text[:m.start()]
        # the long form stays inside its clause
        cut = max(before.rfind(p) for p in (". ", "; ", ": ", "(", ")", ", "))
        before = before[cut + 1:] if cut >= 0 else before
        words = _WORD.findall(before)
        limit = min(len(sf) + 5, 2 * len(sf))
        words = words[-limit:]
        if not words:
            continue
        long_form = _best_long_form(sf, words)
        if long_form:
            yield sf, long_form.strip(" \"'")
