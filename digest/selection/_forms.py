"""Word forms: when a word in a paper is "the same word" as the last word of a topic term.

Owns the one rule both the index and the reference scan use: a token is a form of a term's
last word when it is one of its simple plurals (``plural_forms``), or when the English Snowball
stemmer (Porter2, from the ``snowballstemmer`` package) gives both the same stem and both are
the same kind of word (``word_kind``). The kind check keeps the stemmer's derivations apart
where they change the meaning: an agent noun (transformer, optimizer, adapter) never finds its
verb or process (transform, optimization), an adjective (general, optimal, generative) never
finds a noun built on it (generalization, optimization, generation), and a noun of a quality
or result (interpretability, alignment) never finds its verb (interpret, aligned). Acronyms (a word the user
wrote with two or more capitals: GAN, LLMs, MoE) take only their plural and singular. Pure.
"""

from __future__ import annotations

from functools import lru_cache

import snowballstemmer

_STEMMER = snowballstemmer.stemmer("english")
_VOWELS = frozenset("aeiou")
# Endings that make a word an adjective or adverb: the stemmer strips them, the meaning moves.
_ADJECTIVE = ("al", "ial", "ical", "ic", "ive", "ous", "able", "ible", "ful", "less", "ly")
_AGENT = ("er", "ers", "or", "ors")
# Nouns of a quality or a result: interpretability is a field, "we interpret" is not;
# alignment is a field, "aligned with" is not.
_QUALITY = ("ity", "ities", "ment", "ments")
MIN_STEMMED = 4  # shorter words (and numbers) only take plurals: "gan", "vit", "nas"


def plural_forms(word: str) -> tuple[str, ...]:
    """The word and its simple plurals (+s, +es, consonant+y -> ies)."""
    forms = [word, word + "s", word + "es"]
    if len(word) > 1 and word.endswith("y") and word[-2] not in _VOWELS:
        forms.append(word[:-1] + "ies")
    return tuple(forms)


def singular_forms(word: str) -> tuple[str, ...]:
    """What a plural-looking word may be the plural of ("llms" -> "llm"): plurals both ways."""
    out = []
    if len(word) > 2 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
        if word.endswith("es") and len(word) > 3:
            out.append(word[:-2])
        if word.endswith("ies") and len(word) > 4:
            out.append(word[:-3] + "y")
    return tuple(out)


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The Snowball (Porter2) stem of a folded word."""
    return str(_STEMMER.stemWord(word))


def word_kind(word: str, stemmed: str) -> str:
    """"agent", "quality", "adjective" or "base": only words of one kind are forms of each
    other."""
    if word.endswith(_AGENT) and not stemmed.endswith(("er", "or")):
        return "agent"  # transformer -> transform; not cluster -> cluster
    if word.endswith(_QUALITY) and not stemmed.endswith(("iti", "ment")):
        return "quality"  # interpretability -> interpret, alignment -> align
    if word.endswith(_ADJECTIVE):
        return "adjective"
    return "base"


def stemmable(word: str) -> bool:
    return len(word) >= MIN_STEMMED and word.isalpha()


def is_form(word: str, token: str, acronym: bool = False) -> bool:
    """Whether ``token`` (a folded word of a paper) is a form of a term's last ``word``."""
    if token in plural_forms(word) or token in singular_forms(word):
        return True
    if acronym or not stemmable(word) or not stemmable(token):
        return False
    s = stem(word)
    t = stem(token)
    return s == t and word_kind(word, s) == word_kind(token, t)


def stem_prefix(word: str) -> str:
    """A prefix every stemmed form of ``word`` starts with, to find candidates in a sorted
    vocabulary (the stem may end in a letter the word does not have: study -> studi)."""
    s = stem(word)
    return s[:max(3, len(s) - 3)]  # Porter2 rewrites at most a 3-letter ending (biliti -> ble)
