"""Warnings about topic terms measured on real papers: too broad, never found, a near form
that would find far more, an acronym with other meanings here.

Owns ``term_warnings``, the one place ``digest plan`` and ``digest validate --papers`` get
them from, so both say the same thing; it reads the hits from the same ``Selector`` (index,
word forms, vocabulary) the selection uses. May import ``_rank``, ``_terms``, ``_widen`` and
``_vocabulary``; pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from digest.models import Subscriber
from digest.selection._rank import Selector
from digest.selection._terms import compile_term

BROAD_SHARE = 0.25  # a term in a quarter of the papers or more says little about a paper
BROAD_MIN = 10  # ... and in at least this many (on a small feed every term looks broad)
NEAR_RATIO = 2  # a near form found at least twice as often is worth a mention


@dataclass(frozen=True)
class TermWarning:
    """One warning: ``subscriber`` (index in the config) and ``key`` (the key path of the
    term, e.g. ``subscribers[0].topics[1].include[2]``) say where; ``line`` is the
    subscriber's line in the file."""

    subscriber: int
    line: int
    key: str
    message: str


def _papers(n: int) -> str:
    return f"{n} paper{'' if n == 1 else 's'}"


def term_warnings(selector: Selector, subscribers: Sequence[Subscriber]
                  ) -> tuple[TermWarning, ...]:
    """Every warning for every include and require term, each distinct term measured once."""
    out: list[TermWarning] = []
    memo: dict[tuple[str, bool, str], tuple[str, ...]] = {}
    for s_index, sub in enumerate(subscribers):
        for t_index, topic in enumerate(sub.topics):
            for field in ("include", "require"):
                for k, raw in enumerate(getattr(topic, field)):
                    found = memo.get((raw, topic.expand, field))
                    if found is None:
                        found = memo[(raw, topic.expand, field)] = tuple(
                            _messages(selector, raw, topic.expand, broad=field == "include"))
                    key = f"subscribers[{s_index}].topics[{t_index}].{field}[{k}]"
                    out.extend(TermWarning(s_index, sub.line, key, m) for m in found)
    return tuple(out)


def _count(selector: Selector, raw: str, expand: bool) -> int:
    return selector.term_hits(raw, expand).bit_count()


def _messages(selector: Selector, raw: str, expand: bool, broad: bool) -> Iterator[str]:
    term = compile_term(raw)
    if not term.words:
        return
    total = len(selector.index)
    found = _count(selector, raw, expand)
    shown = term.raw
    if broad and found >= BROAD_MIN and found >= BROAD_SHARE * total:  # (a require narrows)
        yield (f"warning: {shown!r} is in {found * 100 // total}% of today's papers "
               f"({found} of {total}): a broad word finds passing mentions; prefer a phrase, "
               "or add a require term")
    # Spellings of the same idea this term does not find: for ``=term``, every spelling
    # of it; with ``expand: false`` (or exact), the vocabulary's other spellings.
    near: list[str] = [term.shown] if term.mode == "exact" else []
    if not expand or term.mode == "exact":
        near.extend(v.raw for v in selector.vocabulary.variants(term.shown))
    best = max(((_count(selector, s, False), s) for s in dict.fromkeys(near)),
               default=(0, ""))
    if best[0] >= max(NEAR_RATIO * found, 2):
        yield f"warning: {shown!r} found {_papers(found)}, {best[1]!r} {best[0]}"
    elif found == 0:
        yield f"warning: {shown!r} is in none of today's {_papers(total)}"
    if term.mode == "acronym" and selector.ambiguous(term.shown):
        meant = ", ".join(selector.vocabulary.intended(term.shown)) or "its usual long form"
        yield (f"warning: {shown!r} has other meanings in today's papers; it counts only "
               f"where a paper means {meant} (write '={term.shown}' to count every one)")

