"""The summarize stage: an abstract's key claims (headline first), LaTeX cleaned.

Pure. May import: models, errors, text.
"""

from __future__ import annotations

from digest.summarize._claims import summarize

__all__ = ["summarize"]
