"""The selection stage: which papers each subscriber gets, ranked and explained.

Pure. May import: models, errors, text.
"""

from __future__ import annotations

from digest.selection._rank import Selector, plan

__all__ = ["Selector", "plan"]
