"""The papers a subscriber may rate on the preferences page: those of their newest archived
editions, each with the verdict ``digest feedback`` recorded for it, if any.

Paper ids come from the delivery row (the ids the email was rendered with, in card order);
titles and text from the archived message itself (each card's ``<h3>`` title and its claims:
the summarizer's sentences of the abstract), so a paper from an earlier day can be rated
without its feed. A paper that already has
a verdict keeps the text stored with it (what ``digest feedback`` took from the feed). Pure but
for the ledger reads. May import models, the ledger and the web stage's archive reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from html.parser import HTMLParser

from digest.ledger import LedgerStore
from digest.models import Paper
from digest.web._archive import open_message

RATE_EDITIONS = 3  # the newest archived editions whose papers the page lists
VERDICTS = ("more", "less")  # what the ledger's record_feedback takes


@dataclass(frozen=True)
class RatedPaper:
    """One paper of a recent edition and what the subscriber said about it."""

    paper: Paper  # what a verdict records (ledger.record_feedback)
    verdict: str | None  # "more", "less", or None: nothing said yet


@dataclass(frozen=True)
class RatedEdition:
    edition: date
    papers: tuple[RatedPaper, ...]


class _Cards(HTMLParser):
    """Each card's title (the text of its ``<h3>``) and claims (the ``<li>`` items of the
    ``<ul class="claims">`` after it), in the order of the email (the stock card template)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.titles: list[str] = []
        self.claims: list[list[str]] = []
        self._in: str | None = None  # "h3" or "li" while collecting its text
        self._buf: list[str] = []
        self._claims_list = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = next((v or "" for k, v in attrs if k == "class"), "").split()
        if tag == "h3":
            self._in, self._buf = "h3", []
        elif tag == "ul" and "claims" in classes:
            self._claims_list = True
        elif tag == "li" and self._claims_list and self.titles:
            self._in, self._buf = "li", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul":
            self._claims_list = False
        if tag != self._in:
            return
        text = " ".join("".join(self._buf).split())
        if tag == "h3":
            self.titles.append(text)
            self.claims.append([])
        elif text:
            self.claims[-1].append(text)
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._buf.append(data)


@lru_cache(maxsize=256)
def _cards(data: bytes) -> tuple[tuple[str, str], ...]:
    """(title, claims) per card of an archived message. Cached by the bytes themselves (an
    archived edition never changes): opening and parsing one costs milliseconds, many times
    the rest of the preferences page (docs/web.md, "Measured")."""
    parser = _Cards()
    parser.feed(open_message(data).html or "")
    parser.close()
    return tuple((t, " ".join(c)) for t, c in zip(parser.titles, parser.claims, strict=True))


def recent_papers(ledger: LedgerStore, email: str, *, editions: int = RATE_EDITIONS
                  ) -> tuple[RatedEdition, ...]:
    """``email``'s newest archived editions (at most ``editions``), newest first, each with
    its papers and their verdicts. A paper listed in a newer edition is not listed again."""
    said = ledger.feedback().get(email.strip().lower())
    verdicts: dict[str, tuple[str, Paper]] = {}
    if said is not None:
        verdicts.update((p.id, ("more", p)) for p in said.more)
        verdicts.update((p.id, ("less", p)) for p in said.less)
    seen: set[str] = set()
    out = []
    for archived in ledger.archived(email)[:editions]:
        row = ledger.get(email, archived.edition)
        data = ledger.archived_message(email, archived.edition)
        if row is None or data is None:
            continue
        cards = _cards(data)
        # The ids are the rendered cards', in order. An overriding template that shows them
        # some other way leaves their text unknown: such papers are not listed (a verdict on
        # a bare id would feed the selection noise), unless a verdict already holds their text.
        texts = dict(zip(row.papers, cards, strict=True)) if len(cards) == len(row.papers) \
            else {}
        papers = []
        for pid in row.papers:
            verdict, stored = verdicts.get(pid, (None, None))
            if pid in seen or (stored is None and pid not in texts):
                continue
            seen.add(pid)
            paper = stored or Paper(id=pid, title=texts[pid][0], abstract=texts[pid][1])
            papers.append(RatedPaper(paper, verdict))
        if papers:
            out.append(RatedEdition(archived.edition, tuple(papers)))
    return tuple(out)


def find_paper(rated: tuple[RatedEdition, ...], paper_id: str) -> Paper | None:
    """The listed paper with that id (a form may only rate what the page shows)."""
    return next((r.paper for e in rated for r in e.papers if r.paper.id == paper_id), None)
