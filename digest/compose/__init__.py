"""The compose stage: a subscriber's selection and the summaries become one ``Digest``
(edition date, items, unsubscribe link).

Pure. May import: models, errors, summarize.
"""

from __future__ import annotations

from digest.compose._digest import (
    LazySummaries,
    build_digest,
    edition_for,
    summarize_all,
)

__all__ = ["LazySummaries", "build_digest", "edition_for", "summarize_all"]
