"""The feeds stage: papers from files (any supported format, auto-detected), the bundled sample
and live feeds (HF Daily Papers, the arXiv API, arXiv RSS listings, bioRxiv and medRxiv),
several at once, merged and de-duplicated, with a report per feed; the normalized writer.

Edge (files, HTTP). May import: models, errors, text, files. ``_http`` and ``_live`` (httpx)
load only when a live feed is fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from digest.feeds._gather import (
    WALK_BACK_DAYS,
    Gathered,
    describe_reports,
    fetch_day,
    fetch_one,
    reports_for_day,
)
from digest.feeds._parse import merge_papers
from digest.feeds._sources import gather_for, load_papers, papers_for, sample_papers
from digest.feeds._write import papers_to_json, write_papers

__all__ = ["WALK_BACK_DAYS", "Endpoints", "Gathered", "describe_reports", "fetch_day",
           "fetch_one", "fetch_papers", "gather_for", "load_papers", "merge_papers",
           "papers_for", "papers_to_json", "reports_for_day", "sample_papers", "write_papers"]

if TYPE_CHECKING:
    from digest.feeds._http import fetch_papers
    from digest.feeds._live import Endpoints


def __getattr__(name: str) -> Any:
    # ``fetch_papers`` and ``Endpoints`` load httpx: only when a command fetches a live feed.
    if name == "fetch_papers":
        from digest.feeds._http import fetch_papers

        return fetch_papers
    if name == "Endpoints":
        from digest.feeds._live import Endpoints

        return Endpoints
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
