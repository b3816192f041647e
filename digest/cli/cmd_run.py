"""CLI: ``digest run`` (the scheduler daemon) and ``digest schedule`` (next send times).

Thin: parse, call ``digest.schedule.Daemon`` / ``digest.schedule.upcoming``, print. ``run`` logs
one line per fire to stderr; ``schedule`` prints a table or JSON on stdout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.cli._base import config_option, main, now_from
from digest.errors import ConfigError, DigestError


@main.command(epilog="""\b
Examples:
  digest run --config subscribers.yaml
  DIGEST_CONFIG=/etc/digest.yaml digest run -v

\b
Jobs persist in <database>.jobs next to the ledger. After downtime each subscriber gets at
most ONE catch-up digest, if the missed send is within settings.catch_up (default 12h).
Edit the YAML while it runs: the schedule follows within seconds; an invalid edit is logged
(file:line) and the last good config keeps running. Stop with Ctrl-C or SIGTERM: the message
in flight is finished first. Only one digest run (or digest send) per database at a time.""")
@config_option
@click.option("--verbose", "-v", is_flag=True, help="Also log APScheduler's own messages.")
@click.option("--new-ledger", is_flag=True,
              help="Start a new ledger although earlier runs left their mark (an outbox with "
                   "messages, <database>.jobs): editions are sent again.")
def run(config_path: Path, verbose: bool, new_ledger: bool) -> None:
    """Send each subscriber's digest on their own schedule, in their own timezone."""
    from digest.schedule import utc_now

    run_daemon(config_path, verbose=verbose, clock=utc_now, new_ledger=new_ledger)


def run_daemon(config_path: Path, *, verbose: bool, clock: Callable[[], datetime],
               new_ledger: bool = False) -> None:
    """``digest run`` with its clock given (``utc_now`` in the product)."""
    from digest.schedule import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.WARNING)
    daemon = Daemon(config_path, clock=clock, new_ledger=new_ledger)
    try:
        daemon.run_forever()
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1) from None


@main.command(epilog="""\b
Examples:
  digest schedule --config subscribers.yaml
  digest schedule --next 5 --now 2026-03-28T12:00:00Z
  digest schedule --json""")
@config_option
@click.option("--next", "-n", "count", type=click.IntRange(1, 1000), default=3,
              show_default=True, help="How many upcoming send times per subscriber.")
@click.option("--now", "now_text", metavar="ISO-8601", default=None,
              help="Compute from this time instead of now (no offset means UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def schedule(config_path: Path, count: int, now_text: str | None, as_json: bool) -> None:
    """Show each subscriber's next send times, in their local time and in UTC."""
    from digest.config import load_config
    from digest.schedule import upcoming

    now = now_from(now_text)
    try:
        config = load_config(config_path)
        table = upcoming(config.subscribers, now, count)
    except ValueError as exc:  # config validates schedules; this is a belt and braces
        raise DigestError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"subscribers": [
            {"email": r.email, "timezone": r.timezone, "schedule": r.schedule,
             "next": [t.isoformat() for t in r.runs]} for r in table]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"Next {count} send times after {now.isoformat()}")
    for column in ("subscriber", "schedule", "timezone", "local time", "UTC"):
        out.add_column(column, no_wrap=True)
    for r in table:
        for i, t in enumerate(r.runs):
            first = i == 0
            out.add_row(r.email if first else "", r.schedule if first else "",
                        r.timezone if first else "", t.strftime("%a %Y-%m-%d %H:%M %Z"),
                        t.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M"))
        if not r.runs:
            out.add_row(r.email, r.schedule, r.timezone, "never", "")
    console = Console()
    # piped output has no terminal width; do not squeeze the times into two lines each
    Console(width=None if console.is_terminal else 200).print(out)
