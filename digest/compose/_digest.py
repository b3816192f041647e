"""Pure composition of the stages into one subscriber's digest.

Owns: turning a selection plus the run's summaries into a ``Digest`` value. May import models,
summarize and ``_tokens`` (the pure link signing); does no I/O: the unsubscribe
secret is passed in, never read from the environment here. Summaries are computed once per
paper per run (``summarize_all``), never once per subscriber.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from digest.compose._tokens import links_for, unsubscribe_link
from digest.models import (
    Digest,
    DigestItem,
    Paper,
    Selection,
    Settings,
    Subscriber,
    Summary,
)
from digest.summarize import summarize


def edition_for(subscriber: Subscriber, now: datetime) -> date:
    """The edition a send at ``now`` belongs to: the subscriber's local calendar date."""
    return edition_in(subscriber.timezone, now)


def edition_in(timezone: str, now: datetime) -> date:
    """``edition_for`` of any subscriber in ``timezone``."""
    return now.astimezone(ZoneInfo(timezone)).date()


def summarize_all(papers: Iterable[Paper], budget: int) -> dict[str, Summary]:
    """One summary per distinct paper id, for the whole run."""
    out: dict[str, Summary] = {}
    for paper in papers:
        if paper.id not in out:
            out[paper.id] = summarize(paper, budget=budget)
    return out


class LazySummaries(Mapping[str, Summary]):
    """The run's summaries, each computed the first time a digest needs it and then kept: a
    small run (one subscriber, a few topics) never pays for papers nobody gets. Thread-safe,
    so the sending workers can share one instance."""

    def __init__(self, papers: Iterable[Paper], budget: int) -> None:
        self._papers: dict[str, Paper] = {}
        for paper in papers:
            self._papers.setdefault(paper.id, paper)
        self._budget = budget
        self._done: dict[str, Summary] = {}
        self._lock = threading.Lock()

    def __getitem__(self, paper_id: str) -> Summary:
        found = self._done.get(paper_id)
        if found is None:
            paper = self._papers[paper_id]  # KeyError for an unknown id, as a Mapping should
            with self._lock:
                found = self._done.get(paper_id)
                if found is None:
                    found = self._done[paper_id] = summarize(paper, budget=self._budget)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._papers)

    def __len__(self) -> int:
        return len(self._papers)


def build_digest(selection: Selection, summaries: Mapping[str, Summary], edition: date,
                 now: datetime, settings: Settings, *,
                 unsubscribe_secret: str | None = None) -> Digest:
    """One subscriber's edition. With the HMAC secret and ``settings.base_url``, the digest
    carries the signed links of ``digest serve`` (one-click unsubscribe, preferences, this
    edition in a browser, the matches it left out); with ``settings.unsubscribe_url``
    instead, a signed link to the admin's own unsubscribe handler."""
    items = tuple(DigestItem(pick=p, summary=summaries[p.paper.id]) for p in selection.picks)
    sender_addr = settings.sender.rsplit("<", 1)[-1].rstrip(">").strip()
    email = selection.subscriber.email
    unsubscribe_url = view_url = preferences_url = archive_url = more_url = None
    if settings.base_url and unsubscribe_secret:
        links = links_for(settings.base_url, email, unsubscribe_secret)
        unsubscribe_url, view_url = links.unsubscribe, links.edition(edition)
        preferences_url, archive_url = links.preferences, links.archive
        more_url = links.more(edition)
    elif settings.unsubscribe_url and unsubscribe_secret:
        unsubscribe_url = unsubscribe_link(settings.unsubscribe_url, email, unsubscribe_secret)
    publisher = settings.sender.rpartition("<")[0].strip().strip('"').strip() \
        if settings.sender.rstrip().endswith(">") else ""
    return Digest(
        subscriber=selection.subscriber,
        edition=edition,
        generated_at=now,
        items=items,
        more=selection.more,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=f"mailto:{sender_addr}?subject=unsubscribe",
        manage_url=settings.manage_url,
        view_url=view_url,
        preferences_url=preferences_url,
        publisher=publisher or None,
        sender_address=sender_addr,
        archive_url=archive_url,
        also=tuple(DigestItem(pick=p, summary=summaries[p.paper.id]) for p in selection.also),
        more_url=more_url,
    )
