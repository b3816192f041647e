"""Pure composition of the stages into one subscriber's digest.

Owns: turning a selection plus the run's summaries into a ``Digest`` value. May import models,
selector, summarizer and unsubscribe (its pure token signing); does no I/O: the unsubscribe
secret is passed in, never read from the environment here. Summaries are computed once per
paper per run (``summarize_all``), never once per subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from digest.models import Digest, DigestItem, Paper, Selection, Settings, Subscriber, Summary
from digest.summarizer import summarize
from digest.unsubscribe import unsubscribe_link


def edition_for(subscriber: Subscriber, now: datetime) -> date:
    """The edition a send at ``now`` belongs to: the subscriber's local calendar date."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).date()


def summarize_all(papers: Iterable[Paper], budget: int) -> dict[str, Summary]:
    """One summary per distinct paper id, for the whole run."""
    out: dict[str, Summary] = {}
    for paper in papers:
        if paper.id not in out:
            out[paper.id] = summarize(paper, budget=budget)
    return out


def build_digest(selection: Selection, summaries: Mapping[str, Summary], edition: date,
                 now: datetime, settings: Settings, *,
                 unsubscribe_secret: str | None = None) -> Digest:
    """One subscriber's edition. With ``settings.unsubscribe_url`` and the HMAC secret, the
    digest carries a signed one-click unsubscribe URL for that address."""
    items = tuple(DigestItem(pick=p, summary=summaries[p.paper.id]) for p in selection.picks)
    sender_addr = settings.sender.rsplit("<", 1)[-1].rstrip(">").strip()
    return Digest(
        subscriber=selection.subscriber,
        edition=edition,
        generated_at=now,
        items=items,
        more=len(selection.cut),
        unsubscribe_url=(unsubscribe_link(settings.unsubscribe_url, selection.subscriber.email,
                                          unsubscribe_secret)
                         if settings.unsubscribe_url and unsubscribe_secret else None),
        unsubscribe_mailto=f"mailto:{sender_addr}?subject=unsubscribe",
        manage_url=settings.manage_url,
    )
