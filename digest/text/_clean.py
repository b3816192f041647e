"""LaTeX debris and accent cleaning shared by the selector (matching) and summarizer (display).

Owns: ``clean_text`` (feed text -> readable Unicode) and ``fold`` (cleaned text -> the form
terms are matched against). Pure; imports nothing from the project (only pylatexenc).

Feeds hand us abstracts as authors typed them for arXiv: LaTeX accents (``Fr\\'echet``),
escapes (``1.71\\%``), ties (``Genie~that``), markup (``\\textbf{...}``), math
(``$256\\times256$``), and the debris left when someone else already stripped the LaTeX
badly (``20times speedup``, ``256 times 256``, ``~wortsman2021robust``). The rules, in order:

1. Repair what pylatexenc would get wrong: escape bare ``%`` (it starts a comment that would
   silently eat the rest of the line) and bare ``&`` (an alignment tab it drops); turn ``~``
   into a space when it is a LaTeX tie between two words, but keep it when it means "about"
   (``(~billion``, `` ~10``); drop colour debris glued to URLs.
2. pylatexenc, on the LaTeX spans only (whole abstracts cost ~6x more), with our macro
   table: accents and symbols to Unicode, math to text, citations
   and references dropped, ``\\url``/``\\href`` kept as their text, and an *unknown* macro kept
   as its name (``\\codestar-15B`` -> ``codestar-15B``) instead of vanishing.
3. Debris of a lost ``\\times``: a number glued to ``times`` (``20times``, ``2.3times``) or
   ``N times M`` between two numbers becomes ``×``. ``3 times faster``, ``16 times more``,
   ``sampling times``, ``multiple times`` are English and stay.
4. Stray author-year citation keys (``wortsman2021robust``), a URL glued to the word before
   it, spaces before punctuation and inside brackets left by dropped citations, runs of
   whitespace (hard-wrapped feeds).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pylatexenc import latex2text as _l2t
from pylatexenc import latexwalker as _walker
from pylatexenc.macrospec import LatexContextDb

__all__ = ["clean_text", "fold", "scrub_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub_surrogates(text: str) -> str:
    """``text`` with every lone surrogate (which no encoder accepts: JSON can carry one as an
    escaped half pair) replaced by U+FFFD; the identity, cheaply, on text without one."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _macro_name(node: Any, l2tobj: Any) -> str:
    """Unknown macros are usually an author's shorthand for a name (``\\codestar``): keep the
    name rather than silently losing a word."""
    return str(getattr(node, "macroname", "") or "")


def _context() -> LatexContextDb:
    db: LatexContextDb = _l2t.get_default_latex_context_db()
    db = db.filter_context()  # a copy: never mutate pylatexenc's shared default
    db.add_context_category(
        "paper-digest",
        prepend=True,
        macros=[
            *(_l2t.MacroTextSpec(name, simplify_repl="")
              for name in ("cite", "citep", "citet", "citealp", "citeauthor", "citeyear",
                           "ref", "eqref", "autoref", "cref", "Cref", "label", "footnote",
                           "footnotemark", "thanks", "vspace", "hspace")),
            _l2t.MacroTextSpec("sim", simplify_repl="~"),
            _l2t.MacroTextSpec("approx", simplify_repl="≈"),
        ],
    )
    db.set_unknown_macro_spec(_l2t.MacroTextSpec("", simplify_repl=_macro_name))
    return db


_L2T = _l2t.LatexNodes2Text(latex_context=_context(), math_mode="text",
                            strict_latex_spaces=False)
# What the parser reads macros' arguments by: pylatexenc's default database, which its
# LatexWalker otherwise builds afresh for every span (a third of a span's time). Parsing only
# reads it.
_PARSE_CONTEXT = _walker.get_default_latex_context_db()

_BRACED = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"
# One LaTeX construct: inline math (closing ``$`` glued to its content, so "$5 and $10" is
# money, not math), a macro with its braced/bracketed arguments, an escaped symbol or accent
# (``\\%``, ``\\'e``, ``\\"{o}``), or a bare braced group.
_LATEX_SPAN = re.compile(
    r"\$[^$\s](?:[^$]*[^$\s])?\$"
    rf"|\\[a-zA-Z]+\*?(?:\s*(?:{_BRACED}|\[[^\]]*\]))*"
    r"|\\[^a-zA-Z\s](?:\{\\?\w*\}|\w)?"
    rf"|{_BRACED}")
_STRAY_BRACE = re.compile(r"[{}]")
_DASH = {"---": "—", "--": "–"}
_DASHES = re.compile(r"---?")
_BARE_PERCENT = re.compile(r"(?<!\\)%")
_BARE_AMP = re.compile(r"(?<!\\)&")
# A tie joins two words (``Genie~that``, ``models~(DMs)``); after a space, an opening bracket or
# at the start, ``~`` means "approximately" (``(~billion``) and stays.
_TIE = re.compile(r"(?<=[^\s(\[{])~(?=\S)")
# ``https://x/y{red{https://x/y}}``: a \textcolor that lost its backslash around a URL.
_URL_COLOUR = re.compile(r"(https?://[^\s{}]+)\{\w+\{[^{}\s]*\}\}")
# pylatexenc's parser does not know \href's two arguments; \url it wraps in <>. Keep the text.
_LINK = re.compile(r"\\url\{([^{}]*)\}|\\href\{[^{}]*\}\{([^{}]*)\}")
# "N times M" or "Ntimes": the number opens the pattern (its "not after a word or a dot" is
# looked behind for after its first digit) so the engine skips from digit to digit, where a
# leading look-behind is tried at every character. Group 2 is None for "Ntimes".
_GLUED_TIMES = re.compile(r"(\d(?<![\w.]\d)\d*(?:\.\d+)?)(?: ?times ?(\d+(?:\.\d+)?)\b"
                          r"|times\b)")
_URL_START = re.compile(r"https?://")  # glued when a-z is before it: "frameworkhttps://..."
_CITE_KEY = re.compile(r"\s?~?\b[a-z][a-z-]{2,}(?:19|20)\d\d[a-z]{2,}\b")
_CIT_LEFTOVER = re.compile(r"\s*<cit\.>")
# Cheap necessary conditions for the costly patterns above and below: most abstracts have none
# of the debris, and a literal or anchored search is ~10x cheaper than a sub that tries a
# match at every word or space (the selector folds every paper of a 1,000-paper feed).
_YEARISH = re.compile(r"(?:19|20)\d\d[a-z]")
_EMPTY_BRACKET_CORE = re.compile(r"[(\[]\s*[,;]?\s*[)\]]")
# Only before a closing bracket, or punctuation that ends a clause (``the .NET API`` stays).
_SPACE_BEFORE = re.compile(r"\s+([)\]]|[,.;:!?](?=\s|$))")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")
_EMPTY_BRACKETS = re.compile(r"\s*\(\s*[,;]?\s*\)|\s*\[\s*[,;]?\s*\]")


def _has_latex(text: str) -> bool:
    """Whether ``text`` has LaTeX to convert: ``\\ $ { } ~ ` --``. One ``in`` test per
    character (a memchr) is ~100x cheaper than a character-class search over the abstract."""
    return ("\\" in text or "$" in text or "{" in text or "}" in text or "~" in text
            or "`" in text or "--" in text)


# What ``str.split`` splits on besides a single space (Unicode has none above U+3000): a text
# with none of these, no two spaces in a row and no space at either end is its own
# ``" ".join(text.split())``. ~25 ``in`` tests (memchr) cost a tenth of the split and join,
# which builds a string per word.
_OTHER_SPACES = (*(c for c in map(chr, range(0x3001)) if c.isspace() and c != " "), "  ")


def _tidy_spaces(text: str) -> bool:
    """Whether ``text`` is already on one line with single spaces."""
    if text[:1] == " " or text[-1:] == " ":
        return False
    for space in _OTHER_SPACES:
        if space in text:
            return False
    return True


def _unglue_urls(text: str) -> str:
    """A space between a word and the URL glued to it. (A pattern that opens with a literal
    is scanned for fast; one that opens with a look-behind is tried at every character.)"""
    cuts = [m.start() for m in _URL_START.finditer(text)
            if m.start() and "a" <= text[m.start() - 1] <= "z"]
    if not cuts:
        return text
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return " ".join(pieces)


def _times(match: re.Match[str]) -> str:
    if match.group(2) is None:
        return f"{match.group(1)}×"
    return f"{match.group(1)}×{match.group(2)}"


# The work cap per field: pylatexenc costs ~0.2 ms a span, so a hostile abstract of 50,000
# spans (``$a$ `` repeated: 200 KB) took 12 s. Equal spans are converted once (a memo per
# field); past ``MAX_LATEX_SPANS`` distinct ones, or for a span longer than
# ``MAX_SPAN_CHARS``, a plain regex strip stands in, so a field costs linear time whatever
# it holds (bench/bench_textclean.py).
MAX_LATEX_SPANS = 200
MAX_SPAN_CHARS = 2000
_MARKUP_MACRO = re.compile(r"\\[a-zA-Z]+\*?(?=\s*[{\[])")  # \textbf{x} -> {x}
_ANY_MACRO = re.compile(r"\\([a-zA-Z]+)\*?")  # \alpha -> alpha (a name beats nothing)
_ESCAPED = re.compile(r"\\([^a-zA-Z\s])")  # \% -> %


def _span_to_text(span: str) -> str:
    escaped = _BARE_AMP.sub(r"\\&", _BARE_PERCENT.sub(r"\\%", span))
    try:
        return str(_L2T.latex_to_text(escaped, latex_context=_PARSE_CONTEXT))
    except Exception:  # pylatexenc raises on some malformed input; raw text beats nothing
        return span


def _plain_span(span: str) -> str:
    """The cheap stand-in past the work cap: markup macros dropped, other macros kept as
    their names, escapes unescaped, math dollars and braces removed."""
    text = span[1:-1] if span.startswith("$") else span
    text = _ESCAPED.sub(r"\1", _ANY_MACRO.sub(r"\1", _MARKUP_MACRO.sub("", text)))
    return text.replace("{", "").replace("}", "")


def _spans_to_text(text: str) -> str:
    memo: dict[str, str] = {}

    def convert(match: re.Match[str]) -> str:
        span = match.group(0)
        done = memo.get(span)
        if done is None:
            if len(memo) < MAX_LATEX_SPANS and len(span) <= MAX_SPAN_CHARS:
                done = _span_to_text(span)
            else:
                done = _plain_span(span)
            memo[span] = done
        return done

    return _LATEX_SPAN.sub(convert, text)


def _latex(text: str) -> str:
    text = _URL_COLOUR.sub(r"\1", text)
    text = _LINK.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(1), text)
    text = _TIE.sub(" ", text)
    # Only the LaTeX spans go through pylatexenc: whole abstracts cost ~10 ms each, spans ~0.1.
    text = _spans_to_text(text)
    text = _STRAY_BRACE.sub("", text)  # what is left of unbalanced groups is debris
    if "``" in text:
        text = text.replace("``", "“").replace("''", "”")
    return _DASHES.sub(lambda m: _DASH[m.group(0)], text)


def clean_text(text: str) -> str:
    """Feed text with LaTeX escapes, accents, math and their debris turned into plain Unicode,
    on one line with single spaces. Idempotent: ``clean_text(clean_text(s)) == clean_text(s)``
    for the text feeds give us."""
    if not text:
        return ""
    if _has_latex(text):
        text = _latex(text)
    text = text.replace("\xa0", " ")
    if "<cit." in text:
        text = _CIT_LEFTOVER.sub("", text)
    if _YEARISH.search(text):
        text = _CITE_KEY.sub("", text)
    if "times" in text:
        text = _GLUED_TIMES.sub(_times, text)
    if "http" in text:
        text = _unglue_urls(text)
    # From here the only whitespace is single spaces, so plain substring checks tell whether
    # a pattern can match (each sub scans the whole abstract; most abstracts need none).
    if not _tidy_spaces(text):
        text = " ".join(text.split())  # runs of whitespace: ~3x faster than a \s+ sub
    if "(" in text or "[" in text:
        if _EMPTY_BRACKET_CORE.search(text):
            text = _EMPTY_BRACKETS.sub("", text)
        if "( " in text or "[ " in text:
            text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    if (" )" in text or " ]" in text or " ," in text or " ." in text or " ;" in text
            or " :" in text or " !" in text or " ?" in text):  # what _SPACE_BEFORE removes
        text = _SPACE_BEFORE.sub(r"\1", text)
    return text.strip()


def fold(text: str) -> str:
    """Cleaned, accent-free, case-folded text for matching (``Fr\\'echet`` -> ``frechet``)."""
    cleaned = clean_text(text)
    if cleaned.isascii():  # NFKD and the accent filter are the identity on ASCII
        return cleaned.casefold()
    decomposed = unicodedata.normalize("NFKD", cleaned)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
