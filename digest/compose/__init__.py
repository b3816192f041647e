"""The compose stage: a subscriber's selection and the summaries become one ``Digest``
(edition date, items, the signed links), and the opaque tokens those links carry.

Pure. May import: models, errors, summarize.
"""

from __future__ import annotations

from digest.compose._digest import (
    LazySummaries,
    build_digest,
    edition_for,
    edition_in,
    summarize_all,
)
from digest.compose._tokens import (
    ARCHIVE_PATH,
    EDITION_PATH,
    FEED_PATH,
    MORE_PATH,
    PREFERENCES_PATH,
    UNSUBSCRIBE_PATH,
    Links,
    TokenIndex,
    links_for,
    make_token,
)

__all__ = ["ARCHIVE_PATH", "EDITION_PATH", "FEED_PATH", "MORE_PATH", "PREFERENCES_PATH",
           "UNSUBSCRIBE_PATH",
           "LazySummaries", "Links", "TokenIndex", "build_digest", "edition_for",
           "edition_in", "links_for", "make_token", "summarize_all"]
