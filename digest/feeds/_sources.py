"""Where a run's papers come from: a ``--papers`` file, the bundled sample, a saved file or a
live feed (``_http``, imported lazily so file-only commands never load httpx).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.errors import FeedError
from digest.feeds._gather import Gathered, fetch_day, gather
from digest.models import FeedReport, FeedState, Paper, Settings

if TYPE_CHECKING:
    import httpx

    from digest.feeds._live import Endpoints

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


def gather_for(settings: Settings, papers_path: Path | None, now: datetime, *,
               client: httpx.Client | None = None, endpoints: Endpoints | None = None,
               **options: Any) -> Gathered:
    """The run's papers and a report per feed: the ``--papers`` file if given, else every
    configured feed (see ``_gather``). ``client``/``endpoints`` reach the live services (a
    test points them at a local server); ``options`` go to ``gather``."""
    day = fetch_day(now)
    if papers_path is not None:
        papers = load_papers(papers_path)
        state: FeedState = "ok" if papers else "empty"
        return Gathered(papers, (FeedReport(str(papers_path), "file", state, len(papers),
                                            day),), day)
    return gather(settings, now, load=load_papers, sample=sample_papers, client=client,
                  endpoints=endpoints, **options)


def papers_for(settings: Settings, papers_path: Path | None, now: datetime,
               client: httpx.Client | None = None) -> tuple[Paper, ...]:
    """The run's papers: the ``--papers`` file if given, else the configured feeds (the
    bundled sample, a file, or live fetches for ``now``'s UTC date, walking back over empty
    days), merged. ``client`` is an optional ``httpx.Client`` for the live sources."""
    return gather_for(settings, papers_path, now, client=client).papers
