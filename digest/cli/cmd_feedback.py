"""CLI: ``digest feedback EMAIL --more ID / --less ID``: record likes and dislikes.

Thin: load the config and the papers (the configured feed or ``--papers``), find each paper,
record the verdict in the ledger (``Ledger.record_feedback``), print one line per paper. The
selection reads them back on every plan and send: a liked paper joins every topic's ``like``,
a disliked one pushes papers close to it down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from digest.cli._base import config_option, main, papers_option
from digest.config import load_config
from digest.errors import InputError
from digest.feeds import papers_for
from digest.ledger import open_ledger
from digest.text import clean_text


@main.command("feedback", epilog="""\b
Examples:
  digest feedback ada@example.org --more 2406.01234
  digest feedback ada@example.org --less 2406.05678 --papers papers.json

\b
Liked papers re-rank Ada's topics and may bring up to 3 "you may also like" papers that no
term matched; papers close to a disliked one rank lower. The paper must be in the papers
(the configured feed, or --papers) so its title and abstract can be kept with the verdict.""")
@config_option
@papers_option
@click.argument("email")
@click.option("--more", "more", multiple=True, metavar="ARXIV_ID",
              help="A paper EMAIL liked (repeatable).")
@click.option("--less", "less", multiple=True, metavar="ARXIV_ID",
              help="A paper EMAIL did not want (repeatable).")
def feedback(config_path: Path, papers_path: Path | None, email: str, more: tuple[str, ...],
             less: tuple[str, ...]) -> None:
    """Record that EMAIL wants more, or fewer, papers like these."""
    if not more and not less:
        raise click.UsageError("give at least one --more ID or --less ID")
    config = load_config(config_path)
    subscriber = config.subscriber(email)
    if subscriber is None:
        known = ", ".join(s.email for s in config.subscribers)
        raise InputError(config.path, f"no subscriber {email!r}; known: {known}")
    now = datetime.now(UTC)
    papers = {p.id: p for p in papers_for(config.settings, papers_path, now)}
    missing = [i for i in (*more, *less) if i not in papers]
    if missing:
        where = papers_path if papers_path is not None else "the configured feed"
        raise InputError(config.path, f"no paper {', '.join(map(repr, missing))} in {where}; "
                                      "pass --papers FILE with the papers it came from")
    with open_ledger(config.settings.database) as ledger:
        for verdict, ids in (("more", more), ("less", less)):
            for paper_id in ids:
                ledger.record_feedback(subscriber.email, papers[paper_id], verdict, now=now)
                click.echo(f"{subscriber.email}: {verdict} like {paper_id} "
                           f"({clean_text(papers[paper_id].title)})")
