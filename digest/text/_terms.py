"""The syntax of a topic term: what text a term is matched against, its words, and the one
check a term must pass to be usable. Config validation and matching both call these, so a term
``digest validate`` accepts is a term the selector can match.

Pure; imports only ``digest.text._clean``.
"""

from __future__ import annotations

import re

from digest.text._clean import fold

_TOKEN = re.compile(r"[^\W_]+")
# fold() keeps Unicode hyphens (U+2010; NFKD maps the non-breaking U+2011 to it) and dashes
# as they are. A hyphen, figure dash or en dash glued between two words joins them like "-"
# ("Fokker–Planck", and LaTeX "Fokker--Planck" which clean_text turns into an en dash); a
# spaced dash (" – ") stays a gap no term crosses, and the em dash is punctuation.
_HYPHENS = str.maketrans({"\u2010": "-", "\u2012": "-", "\u2013": "-"})


def normalize(text: str) -> str:
    """The exact text terms are matched against: folded, with Unicode hyphens made ASCII."""
    return fold(text).translate(_HYPHENS)


def term_words(raw: str) -> tuple[tuple[str, ...], bool]:
    """A term's folded words (runs of letters and digits) and whether it ends in ``*``. A
    leading ``=`` (an exact term) is not a word."""
    text = raw.strip()
    body = text[1:] if text.startswith("=") else text
    return tuple(_TOKEN.findall(normalize(body.rstrip("*")))), text.endswith("*")


def term_problem(raw: str) -> str | None:
    """Why a term can never match, or None when it is usable."""
    text = raw.strip()
    if not text or text == "=":
        return "empty term"
    if not term_words(text)[0]:
        return f"term {text!r} has no letters or digits, so it can never match"
    if "*" in text.rstrip("*"):
        return f"term {text!r}: '*' is only a wildcard at the end of a term"
    if text.startswith("=") and text.endswith("*"):
        return f"term {text!r}: '=' (exact) and a trailing '*' (prefix) do not combine"
    return None
