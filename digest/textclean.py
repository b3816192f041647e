"""LaTeX debris and accent cleaning shared by the selector (matching) and summarizer (display).

Owns: ``clean_text`` (feed text -> readable Unicode) and ``fold`` (cleaned text -> the form
terms are matched against). Pure; imports nothing from the project.
"""

from __future__ import annotations

import re
import unicodedata

from pylatexenc.latex2text import LatexNodes2Text

_L2T = LatexNodes2Text(math_mode="text", strict_latex_spaces=False)
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Feed text with LaTeX escapes, accents and math turned into plain Unicode."""
    if "\\" in text or "$" in text or "~" in text or "{" in text:
        # pylatexenc treats a bare % as a comment and drops the rest of the line: escape it.
        guarded = re.sub(r"(?<!\\)%", r"\\%", text)
        try:
            text = _L2T.latex_to_text(guarded)
        except Exception:  # pylatexenc can choke on unbalanced input; keep the raw text
            pass
    return _SPACES.sub(" ", text).strip()


def fold(text: str) -> str:
    """Cleaned, accent-free, case-folded text for matching (``Fr\\'echet`` -> ``frechet``)."""
    decomposed = unicodedata.normalize("NFKD", clean_text(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
