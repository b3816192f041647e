"""The feeds stage: papers from files (any supported format, auto-detected), the bundled sample
and live feeds (HF Daily Papers, the arXiv API), merged and de-duplicated; the normalized writer.

Edge (files, HTTP). May import: models, errors, text. ``_http`` (httpx) loads only when a live
feed is fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from digest.feeds._parse import merge_papers
from digest.feeds._sources import WALK_BACK_DAYS, load_papers, papers_for, sample_papers
from digest.feeds._write import papers_to_json, write_papers

__all__ = ["WALK_BACK_DAYS", "fetch_papers", "load_papers", "merge_papers", "papers_for",
           "papers_to_json", "sample_papers", "write_papers"]

if TYPE_CHECKING:
    from digest.feeds._http import fetch_papers


def __getattr__(name: str) -> Any:
    # ``fetch_papers`` loads httpx: only when a command actually fetches a live feed.
    if name == "fetch_papers":
        from digest.feeds._http import fetch_papers

        return fetch_papers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
