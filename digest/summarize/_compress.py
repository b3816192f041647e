"""Compression that keeps meaning, and claims that stand alone.

Owns: ``compress`` (openers, asides, the frame around a result), ``number_clause`` (a long
result sentence shortened to the clause that carries its strongest number), ``standalone``
(a claim that leans on an omitted sentence made to stand alone, or refused) and ``fit``.
Pure; imports only the stage's cue patterns. Extractive: every word kept is the authors'; the
only word ever put in is the paper's own name, for "This method"/"It" (see ``standalone``).
"""

from __future__ import annotations

import re

from digest.summarize._cues import COMPARISON, DANGLING, NUMBER, number_strength


# Connectives and frames a standalone claim does not need. "In this paper(,) we" and "Here(,)
# we" may lack the comma; the others only go when a comma closes them, so "To address this
# problem we ..." is never cut in the middle.
_OPENER = re.compile(
    r"^(?:(?:(?:in|within) (?:this|the present|our) (?:paper|work|study|article|letter|note|"
    r"report|manuscript)|here)\s*,?\s+(?=we\b)"
    r"|(?:(?:in|within) (?:this|the present|our) (?:paper|work|study|article|letter|note|"
    r"report|manuscript)|here|in this regard|to (?:this|that) end|to (?:address|tackle|solve|"
    r"overcome|fill|bridge|close|mitigate|alleviate|handle|achieve|do) (?:this|these|that|"
    r"the|such|above)\b[^,]{0,40}|specifically|concretely|in particular|therefore|thus|hence|"
    r"consequently|motivated by[^,]{0,40}|inspired by[^,]{0,60}|in summary|overall|finally|"
    r"moreover|furthermore|additionally|in addition|notably|importantly|however|in response|"
    r"for (?:instance|example)|in practice|as a result|empirically|remarkably|surprisingly|"
    r"in (?:contrast|particular|short|other words|fact)|taken together|as such|crucially|"
    r"to summarize|"
    r"first(?:ly)?|second(?:ly)?|third(?:ly)?|lastly|last|further)\s*,\s*)",
    re.I)
# "Extensive experiments on X show that ...", "We find that ...": the frame around a result.
_RESULT_FRAME = re.compile(
    r"^(?:(?:our |the |extensive |experimental |empirical |comprehensive |numerical |"
    r"further )*(?:experiments?|results?|evaluations?|studies|analys[ie]s|tests?|comparisons?|"
    r"ablations?)\b[^,.;]{0,60}?|we(?: also| further| empirically| experimentally)?)\s+"
    r"(?:show|shows|demonstrate|demonstrates|indicate|indicates|reveal|reveals|confirm|"
    r"confirms|verify|verifies|suggest|suggests|find|found|observe|prove|proves)\s+that\s+"
    r"|^it is (?:noteworthy|worth (?:noting|mentioning)|notable|remarkable|interesting|shown|"
    r"observed|found) that\s+",
    re.I)
# ", which lays a solid foundation for ...", ", paving the way for ...": the authors' comment
# on a result, not the evidence (dropped only when it holds no number or comparison).
_TRAILING_COMMENT = re.compile(
    r",\s+(?:which|thus|thereby|making|setting|highlighting|demonstrating|showing|paving|"
    r"opening|underscoring|indicating|suggesting|confirming|validating|offering|providing|"
    r"enabling|establishing|shedding)\b[^,;]*[.!?]?$")
_ASIDE = re.compile(r"\s*\((?:[^()]|\([^()]*\))*\)")
_SPACE_BEFORE = re.compile(r"\s+([,.;:])")
_ASIDE_START = re.compile(r"^\((?:e\.g\.|i\.e\.|see|cf\.|such as|for example|namely)", re.I)


def _drop_aside(match: re.Match[str]) -> str:
    inner = match.group(0).strip()
    # Numbers are evidence ("(42.5% vs 38.9%)"), short ones are names ("(DEIS)", "(NFE=5)").
    if _ASIDE_START.match(inner):
        return ""
    if NUMBER.search(inner) or len(inner.split()) <= 3:
        return match.group(0)
    return ""


def _drop_asides(text: str) -> str:
    """``_ASIDE.sub(_drop_aside, text)``, then the spaces that leaves before punctuation
    dropped. The asides are looked for from the whitespace before the first "(" on: no match
    starts earlier, and the pattern (it opens with ``\\s*``) is tried at every character."""
    start = text.find("(")
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return _SPACE_BEFORE.sub(r"\1", text[:start] + _ASIDE.sub(_drop_aside, text[start:]))


def compress(sentence: str, *, result: bool = False) -> str:
    """Drop what a reader on a phone does not need; keep every claim and number. For a result
    claim also the frame around it ("Experiments on X show that ...")."""
    text = sentence
    for _ in range(2):  # "In this paper, to address this, we ..." has two openers
        opener = _OPENER.match(text)  # anchored: a match, not a sub that rebuilds the text
        if opener is None:
            break
        text = text[opener.end():]
    if result:
        framed = _RESULT_FRAME.sub("", text, count=1)
        if len(framed.split()) >= 6:  # keep the frame when it is most of the sentence
            text = framed
        tail = _TRAILING_COMMENT.search(text)
        if tail and not NUMBER.search(tail.group(0)) and not COMPARISON.search(
                tail.group(0).lower()):
            text = text[:tail.start()] + "."
    if "(" in text:
        text = _drop_asides(text)
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def fit(text: str, limit: int) -> str:
    """``text`` cut at a word with "…" when longer than ``limit`` characters (before a
    bracket the cut would leave open)."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0]
    if cut.count("(") > cut.count(")"):
        cut = cut[:cut.rfind("(")]
    cut = cut.rstrip(" ,;:")
    return f"{cut}…" if cut else ""


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# ------------------------------------------------------------------ the clause with the number

# Where a clause ends: a comma or semicolon outside brackets and not inside "1,000", or a
# contrast/concession word ("while", "whereas") that opens a trailing clause.
_CLAUSE_MARK = re.compile(r"[(\[)\],;]")
_CLAUSE_WORD = re.compile(r"\s+(?=(?:while|whereas|although|though|thereby|leading to)\b)")


def _clauses(text: str) -> list[str]:
    """``text`` cut into clauses; joining them with "" gives ``text`` back."""
    parts: list[str] = []
    depth = start = 0
    for mark in _CLAUSE_MARK.finditer(text):  # the brackets and stops only, not every character
        ch = mark.group()
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            i = mark.start()
            if not (ch == "," and text[i - 1:i].isdigit() and text[i + 1:i + 2].isdigit()):
                parts.append(text[start:i + 1])
                start = i + 1
    parts.append(text[start:])
    out: list[str] = []
    for part in parts:
        pieces = _CLAUSE_WORD.split(part)
        out.extend(p if k == 0 else " " + p for k, p in enumerate(pieces))
    return [p for p in out if p.strip()]


_ENUMERATION = re.compile(r"^\s*(?:\(\w{1,3}\)|\w{1,3}\))\s+")  # "(2) ", "ii) "


def _close(text: str) -> str:
    text = re.sub(r"[\s,;:]*(?:\band|\bor|\bbut)?[\s,;:]*$", "", text.rstrip(". "))
    text = _ENUMERATION.sub("", text.strip())
    return _capitalize(text) + "." if text else ""


_LEADING_AND = re.compile(r"^\s*(?:and|but|or|while|whereas|although|though|thereby)\s+", re.I)


# A leading clause that sets the scene ("On ImageNet, …", "With only one GPU, …", "Compared
# to X, …"): it can go; a leading clause that is the sentence's subject and verb cannot.
_CONTEXT = re.compile(
    r"^\s*(?:on|in|with|for|under|across|compared|using|when|by|at|after|without|given|despite|"
    r"although|though|while|unlike|beyond|notably|specifically|moreover|furthermore|"
    r"additionally|overall|finally|through|via|from|over|against|relative|thanks|due|"
    r"as|and|but|or|whereas|thereby)\b", re.I)


def _shorter(text: str) -> list[str]:
    """``text`` (a compressed result) ever shorter, each keeping its strongest number:
    parentheticals without a digit out; then the trailing clauses without a digit ("…, while
    keeping X", "…, which …"); the leading context without a digit ("On the X benchmark,
    …"); the clauses after the one with the strongest number; the leading context before it.
    A leading clause is dropped only when it sets the scene (``_CONTEXT``) or is a whole
    clause before a ";", never the subject: "Our method achieves X, with an FID of 3.56"
    keeps "Our method achieves X"."""
    out = [text]
    text = re.sub(r"\s*\((?:[^()]|\([^()]*\))*\)",
                  lambda m: m.group(0) if NUMBER.search(m.group(0)) else "", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    out.append(text)
    parts = _clauses(text.rstrip("."))
    strength = [number_strength(p) for p in parts]
    best = strength.index(max(strength))
    if strength[best] == 0:
        return out
    lo, hi = 0, len(parts)

    def shown() -> str:
        return _close(_LEADING_AND.sub("", "".join(parts[lo:hi])))

    while hi - 1 > best and not strength[hi - 1]:
        hi -= 1
        out.append(shown())
    def droppable(part: str) -> bool:  # scene-setting, or a whole clause before a ";"
        return bool(_CONTEXT.match(part)) or part.rstrip().endswith(";")

    while lo < best and not strength[lo] and droppable(parts[lo]):
        lo += 1
        out.append(shown())
    while hi - 1 > best:
        hi -= 1
        out.append(shown())
    while lo < best and droppable(parts[lo]):
        lo += 1
        out.append(shown())
    return out


def shorter_headline(text: str) -> list[str]:
    """A headline ever shorter, for room for the number: its trailing clauses without a
    digit dropped one by one ("…, which …", "…, where …"), never below eight words."""
    parts = _clauses(text.rstrip("."))
    out = []
    for hi in range(len(parts) - 1, 0, -1):
        if NUMBER.search(parts[hi]):
            break
        shown = _close("".join(parts[:hi]))
        if len(shown.split()) < 8:
            break
        out.append(shown)
    return out


def number_clause(sentence: str, limit: int, *, cut: bool = True) -> str:
    """A result sentence in at most ``limit`` characters without losing its strongest number:
    the longest of ``_shorter``'s forms that fits; else (when ``cut``) the shortest cut at a
    word with "…", if a quantity is before the cut; else ""."""
    text = compress(sentence, result=True)
    forms = [f for f in _shorter(text) if len(f.split()) >= 5]  # never a stub like "FP6."
    for form in forms:
        if len(form) <= limit:
            return form
    if not cut:
        return ""
    shortened = fit(forms[-1] if forms else text, limit)
    # A cut keeps a quantity (not a digit in a name such as "W4A16") and a few words round it.
    return shortened if number_strength(shortened) >= 2 and len(shortened.split()) >= 6 else ""


# ------------------------------------------------------------------ claims that stand alone

# "By optimizing these expressions, we show ...": a leading clause that points back, before
# the authors' own "we": the claim after it stands alone.
_POINTING_LEAD = re.compile(
    r"^[^,]{0,80}?\b(?:this|these|those|such|that|it|them|the latter|the former|the above)\b"
    r"[^,]{0,60},\s+(?=we\b)", re.I)
_CONNECTIVE = re.compile(r"^(?:thus|therefore|hence|consequently|accordingly|as a result|"
                         r"as such|in doing so|by doing so|this way|in this way|to this end|"
                         r"to that end|to do so|to do this)\b,?\s+", re.I)
_TRAILING_PURPOSE = re.compile(
    r",?\s+(?:in order )?to (?:address|tackle|solve|overcome|mitigate|alleviate|remedy|fix|"
    r"resolve|handle) (?:this|these|that|those|it|them|such)\b(?: \w+)?(?=[.!?]?$)", re.I)
_PURPOSES = tuple(f"to {verb}" for verb in ("address", "tackle", "solve", "overcome",
                                            "mitigate", "alleviate", "remedy", "fix",
                                            "resolve", "handle"))


def _may_end_in_purpose(text: str) -> bool:
    """Whether ``_TRAILING_PURPOSE`` can match: "to <verb>" is in the text, case aside. (On
    ASCII text; elsewhere re.I also matches "ſ" for "s" and "ı" for "i", so only "to ".)"""
    low = text.lower()
    if not low.isascii():
        return "to " in low
    return "to " in low and any(p in low for p in _PURPOSES)


# "This method", "It", "The proposed approach": the paper's own method, nameable.
_THE_METHOD = re.compile(
    r"^(?:(?:this|the proposed|our proposed|such an?|the resulting|the new|this new) "
    r"(?:(?:\w+[- ]){1,3}?)?(?:method|approach|framework|model|system|technique|algorithm|"
    r"architecture|network|scheme|strategy|procedure|pipeline|tool|library|module|design|"
    r"formulation|estimator|loss|objective|regularizer|benchmark|dataset|agent|policy)|it)\b(?! is (?:"
    r"\w+ )?(?:well|widely|known|believed|common|hard|difficult|challenging|important|"
    r"unclear|crucial|essential|necessary|possible|natural))", re.I)


def standalone(text: str, name: str = "") -> str | None:
    """``text`` (a compressed claim) as a claim that stands alone, or None when it leans on a
    sentence the reader will not see and cannot be mended minimally. Mending: a trailing "to
    address this" and a leading connective ("Thus we …") dropped; a leading clause that
    points back ("By optimizing these expressions, we show …") dropped down to the authors'
    "we"; and, when the paper has a ``name``, "This method …"/"It …" becomes "<name> …"."""
    if _may_end_in_purpose(text):  # a cheap necessary condition first: most claims pass it
        trimmed = _TRAILING_PURPOSE.sub("", text)
        if trimmed != text:
            text = trimmed if trimmed[-1:] in (".", "!", "?") else trimmed + "."
    for _ in range(2):
        lead = _pointing_lead(text)
        if not lead and not DANGLING.match(text):
            return text
        if lead:
            text = _capitalize(text[lead.end():])
            continue
        connective = _CONNECTIVE.match(text)
        if connective and len(text[connective.end():].split()) >= 4:
            text = _capitalize(text[connective.end():])
            continue
        break
    if not DANGLING.match(text):
        return text
    method = _THE_METHOD.match(text)
    if method and name:
        return f"{name}{text[method.end():]}"
    if method and method.group(0).lower().startswith(("this", "the")):
        # "This simple approach" -> "Our simple approach"
        return "Our" + re.sub(r"^\S+(?: proposed| new)?", "", method.group(0), flags=re.I) \
            + text[method.end():]
    return None


def _pointing_lead(text: str) -> re.Match[str] | None:
    return _POINTING_LEAD.match(text) if "," in text and "we" in text.lower() else None


def is_dangling(text: str) -> bool:
    """Whether a shown claim leans on something before it: it opens by pointing back
    ("These scores …", "It …", "Thus …", "To address this, …") or ends so ("… to address
    this.")."""
    return bool(DANGLING.match(text) or _pointing_lead(text)
                or _TRAILING_PURPOSE.search(text))
