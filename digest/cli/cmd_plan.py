"""CLI: ``digest plan``: what each subscriber would get now, with reasons; sends nothing.

Thin: load the config, the papers and the ledger's history, call ``selector.plan``, print a
table per subscriber (rich) or the stable JSON documented in docs/plan-json.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digest.cli._base import config_option, main, now_from, papers_option
from digest.cli.cmd_validate import term_warning_lines
from digest.compose import edition_for
from digest.config import load_config
from digest.errors import InputError
from digest.feeds import papers_for
from digest.ledger import open_ledger
from digest.models import Pick, Selection
from digest.selection import Selector
from digest.selection import plan as plan_selections
from digest.text import clean_text

UNSUBSCRIBED = "unsubscribed: the ledger lists this address as suppressed"


def pick_json(pick: Pick) -> dict[str, Any]:
    return {"id": pick.paper.id, "title": clean_text(pick.paper.title),
            "topics": list(pick.topics), "reasons": [str(r) for r in pick.reasons]}


def plan_json(selections: tuple[Selection, ...]) -> dict[str, Any]:
    """The documented ``--json`` shape (docs/plan-json.md); keep it stable."""
    return {"subscribers": [
        {"email": s.subscriber.email,
         "papers": [pick_json(p) for p in s.picks],
         "cut": [pick_json(p) for p in s.cut],
         "skipped_reason": s.skipped_reason,
         "also": [pick_json(p) for p in s.also]}
        for s in selections]}


def _short(title: str, width: int = 72) -> str:
    return title if len(title) <= width else title[:width - 1].rstrip() + "…"


def _why(pick: Pick) -> str:
    """Per topic (best first) the terms that matched: "Quantization (LLM in title, ...)"."""
    parts = []
    for topic in pick.topics:
        terms = ", ".join(f"{r.term} in {r.where}" for r in pick.reasons if r.topic == topic)
        parts.append(f"{topic} ({terms})" if terms else topic)
    return " · ".join(parts)


def _print_human(selections: tuple[Selection, ...], console: Console) -> None:
    for n, s in enumerate(selections):
        sub = s.subscriber
        who = f"{sub.name} <{sub.email}>" if sub.name else sub.email
        if n:
            console.print()
        if s.skipped_reason:
            console.print(Text.assemble((who, "bold"), "  no email: ", s.skipped_reason))
            continue
        total = len(s.picks) + len(s.cut)
        console.print(Text.assemble(
            (who, "bold"), f"  {len(s.picks)} of {total} matching "
            f"{'paper' if total == 1 else 'papers'} (max_papers {sub.max_papers})"))
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("id", no_wrap=True)
        table.add_column("paper: title, then topics (terms that matched)")
        for rank, pick in enumerate(s.picks, 1):
            cell = Text(_short(clean_text(pick.paper.title)))
            cell.append(f"\n{_why(pick)}", style="dim")
            table.add_row(str(rank), pick.paper.id, cell)
        console.print(table)
        if s.also:
            console.print("you may also like (no term matched):")
            for pick in s.also:
                console.print(Text(f"      {pick.paper.id}  {_short(clean_text(pick.paper.title))}"
                                   f"  ({pick.reasons[0]})"), overflow="ellipsis", no_wrap=True)
        if s.cut:
            console.print("cut by max_papers:")
            for rank, pick in enumerate(s.cut, len(s.picks) + 1):
                console.print(Text(f"  {rank:>2}  {pick.paper.id}  {clean_text(pick.paper.title)}"),
                              overflow="ellipsis", no_wrap=True)


@main.command("plan")
@config_option
@papers_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan as JSON (shape below and in docs/plan-json.md).")
@click.option("--subscriber", "-s", "emails", multiple=True, metavar="EMAIL",
              help="Only this subscriber (repeatable; default: everyone).")
@click.option("--now", "now_text", metavar="ISO",
              help="Pretend it is this time (default: now); picks the day of a live feed.")
def plan(config_path: Path, papers_path: Path | None, as_json: bool, emails: tuple[str, ...],
         now_text: str | None) -> None:
    """Show what each subscriber would get now, and why. Sends and records nothing.

    Per subscriber: the picked papers in rank order with the topics and terms that matched
    (and where: title or abstract), then the matches cut by max_papers; or why they would get
    no email (nothing matches, everything matching was already sent, unsubscribed). Papers
    already sent to a subscriber (the ledger in settings.database) are never picked again.

    \b
    --json prints, in rank order (one "reasons" string per matched term):
      {"subscribers": [{"email": "ada@example.org",
                        "papers": [{"id": "2401.00001", "title": "...",
                                    "topics": ["Quantization"],
                                    "reasons": ["matched: quantization in title"]}],
                        "cut": [ same shape as papers ],
                        "skipped_reason": null,
                        "also": [ papers no term matched, close to a liked one ]}]}
    skipped_reason is null, "no new papers match your topics", "N matching papers were
    already sent", "unsubscribed: ..." or "paused until YYYY-MM-DD (preferences page)".

    \b
    Examples:
      digest plan --config subscribers.example.yaml
      digest plan --papers papers.json --subscriber ada@example.org
      digest plan --json | jq '.subscribers[] | {email, n: (.papers | length)}'
    """
    now = now_from(now_text)
    config = load_config(config_path)
    subscribers = config.subscribers
    if emails:
        missing = [e for e in emails if config.subscriber(e) is None]
        if missing:
            known = ", ".join(s.email for s in config.subscribers)
            raise InputError(config.path, f"no subscriber {', '.join(map(repr, missing))}; "
                                          f"known: {known}")
        wanted = {e.strip().lower() for e in emails}
        subscribers = tuple(s for s in subscribers if s.email.lower() in wanted)
    papers = papers_for(config.settings, papers_path, now)
    from digest.delivery import selection_histories  # the delivery stage only when planning

    with open_ledger(config.settings.database) as ledger:
        history = selection_histories(subscribers, ledger, now)  # the one rule a send uses
        suppressed = ledger.suppressed()
        chosen = {p.email: p for p in ledger.all_preferences()}  # digest serve's, over the YAML
        feedback = ledger.feedback()
    subscribers = tuple(chosen[s.email.lower()].apply(s) if s.email.lower() in chosen else s
                        for s in subscribers)

    def skipped(s: Selection) -> Selection:
        email = s.subscriber.email.lower()
        if email in suppressed:
            return Selection(subscriber=s.subscriber, picks=(), skipped_reason=UNSUBSCRIBED)
        p = chosen.get(email)
        if p is not None and p.paused_on(edition_for(s.subscriber, now)):
            return Selection(subscriber=s.subscriber, picks=(),
                             skipped_reason=f"paused until {p.paused_until} (preferences page)")
        return s

    selections = tuple(skipped(s) for s in plan_selections(papers, subscribers, history,
                                                           build_cuts=True, feedback=feedback))
    if not as_json:  # the terms measured on these papers, as `digest validate --papers` says
        for line in term_warning_lines(config, Selector(papers), str(config_path),
                                       {s.email.lower() for s in subscribers}):
            click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(plan_json(selections), indent=2, ensure_ascii=False))
    else:
        _print_human(selections, Console(highlight=False, soft_wrap=False))
