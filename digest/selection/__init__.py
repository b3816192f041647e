"""The selection stage: which papers each subscriber gets, ranked and explained.

Pure. May import: models, errors, text. Reads its shipped data (``digest/data/vocabulary.json``,
the embedding model inside the ``wordllama`` wheel) on first use. ``term_warnings`` measures
terms on real papers (``digest plan``, ``digest validate --papers``).
"""

from __future__ import annotations

from digest.selection._checks import TermWarning, term_warnings
from digest.selection._rank import Selector, plan

__all__ = ["Selector", "TermWarning", "plan", "term_warnings"]
