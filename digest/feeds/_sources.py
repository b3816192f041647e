"""Where a run's papers come from: a ``--papers`` file, the bundled sample, a saved file or a
live feed (``_http``, imported lazily so file-only commands never load httpx).
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import FeedError
from digest.models import Paper, Settings

if TYPE_CHECKING:
    import httpx

from digest.feeds._parse import parse_payload


def load_papers(path: Path) -> tuple[Paper, ...]:
    """Papers from a file in any supported format (auto-detected from its content)."""
    try:
        payload = Path(path).read_bytes()
    except OSError as exc:
        raise FeedError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_payload(payload, str(path))


@lru_cache(maxsize=1)
def sample_papers() -> tuple[Paper, ...]:
    """The bundled offline sample (the 81 seed papers), read from inside the package."""
    ref = resources.files("digest") / "data" / "sample_papers.json"
    return parse_payload(ref.read_bytes(), "sample_papers.json", default_source="sample")


# Weekends and holidays leave days with no list; a week covers any of them.
WALK_BACK_DAYS = 7


def papers_for(settings: Settings, papers_path: Path | None, now: datetime,
               client: httpx.Client | None = None) -> tuple[Paper, ...]:
    """The run's papers: the ``--papers`` file if given, else the configured feed (the bundled
    sample, a file, or a live fetch for ``now``'s UTC date walking back over empty days).
    ``client`` is an optional ``httpx.Client`` for the live sources."""
    if papers_path is not None:
        return load_papers(papers_path)
    feed = settings.feed
    if feed.source == "sample":
        return sample_papers()
    if feed.source == "file":
        if feed.path is None:
            raise FeedError("settings.feed", "source 'file' needs a path")
        return load_papers(feed.path)
    from digest.feeds._http import (
        fetch_papers,  # lazily: httpx is only needed for live feeds
    )

    day = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()
    return fetch_papers(
        feed.source, day, client=client, walk_back=WALK_BACK_DAYS, categories=feed.categories,
        limit=feed.limit, timeout=feed.timeout).papers
