"""arXiv's RSS announcement feed (the 2024+ format of ``rss.arxiv.org``) read as a day's listing.

Each ``<item>`` carries ``<arxiv:announce_type>``: ``new`` (first announced today), ``cross``
(a paper from another primary archive listed here today), ``replace`` and ``replace-cross``
(a new version of an older paper). A digest wants what is new: ``new``, and ``cross`` when
asked; replacements are left out. The channel's ``pubDate`` is the announcement day; a day
without an announcement (weekends, arXiv holidays) is a channel with no item. Ids lose their
version (``2205.06398v2`` is ``2205.06398``), so the same paper from two feeds merges.

May import: the feeds stage's parsers, ``digest.models``, ``digest.errors``.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from email.utils import parsedate_to_datetime

from digest.errors import FeedError
from digest.feeds._parse import ARXIV, merge_papers, rss_item
from digest.models import Paper

log = logging.getLogger(__name__)

KEPT = ("new", "cross")


@dataclass(frozen=True)
class Listing:
    """One RSS answer: the day it announces, its papers, and what was left out."""

    day: date | None  # the channel's pubDate (US Eastern announcement day)
    papers: tuple[Paper, ...]
    replaced: int = 0  # replace / replace-cross items left out
    crosses: int = 0  # cross-lists left out (cross not asked for)
    skip_days: tuple[str, ...] = ()  # the channel's <skipDays> (Saturday, Sunday)


def parse_listing(payload: bytes, source: str, *, cross: bool = False) -> Listing:
    """The day's new papers (and cross-lists when ``cross``) from an arXiv RSS answer."""
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        line, col = exc.position
        raise FeedError(source, f"malformed XML at line {line}, column {col + 1} "
                                "(a cut-off answer?)") from None
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise FeedError(source, f"not an RSS feed (XML root <{root.tag}>)")
    day: date | None = None
    stamp = (channel.findtext("pubDate") or "").strip()
    if stamp:
        try:
            day = parsedate_to_datetime(stamp).date()
        except (TypeError, ValueError):
            log.warning("%s: unreadable channel pubDate %r", source, stamp)
    papers: list[Paper] = []
    replaced = crosses = 0
    for index, item in enumerate(channel.iter("item")):
        kind = (item.findtext(f"{ARXIV}announce_type") or "new").strip().casefold()
        if kind.startswith("replace"):
            replaced += 1
            continue
        if kind == "cross" and not cross:
            crosses += 1
            continue
        if kind not in KEPT:
            log.warning("%s: item [%d] skipped: unknown announce type %r", source, index, kind)
            continue
        try:
            papers.append(rss_item(item))
        except ValueError as exc:
            log.warning("%s: item [%d] skipped: %s", source, index, exc)
    skip = tuple(d.text.strip() for d in channel.iterfind("skipDays/day") if d.text)
    return Listing(day, merge_papers(papers), replaced, crosses, skip)
