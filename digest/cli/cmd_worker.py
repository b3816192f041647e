"""CLI: ``digest worker`` (a queue worker), ``digest status`` (a run across workers), and the
queued form of ``digest send`` (``send_queued``, called by ``cmd_send`` when
``settings.queue`` is set).

Thin: parse, call ``digest.workers`` / the ledger, print.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from digest.cli._base import config_option, main
from digest.errors import DigestError
from digest.models import Config, Paper, PostgresDatabase

if TYPE_CHECKING:
    from digest.ledger import EditionStatus


def _queued_config(config: Config) -> PostgresDatabase:
    if not config.settings.queue or not isinstance(config.settings.database, PostgresDatabase):
        raise DigestError(f"{config.path}: settings.queue is not set (with a postgresql:// "
                          "settings.database): there is nothing for a worker to take")
    return config.settings.database


@main.command("worker", epilog="""\b
Examples:
  digest worker --config subscribers.yaml
  digest worker --concurrency 4

\b
Needs settings.queue (a RabbitMQ amqp:// URL) and a postgresql:// settings.database. Run as
many workers, on as many machines, as the SMTP relay allows; each task claims its
(subscriber, edition) in the ledger, so every subscriber gets each edition once whatever
dies. Stop with Ctrl-C or SIGTERM: the tasks in flight are finished first.""")
@config_option
@click.option("--concurrency", "-n", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes (each with its own SMTP connection).")
@click.option("--lease", type=click.FloatRange(min=1.0), default=None,
              help="Seconds a claim holds before another worker may take it over "
                   "[default: 360].")
@click.option("--time-limit", type=click.FloatRange(min=1.0), default=None,
              help="Seconds a task may run before it is killed; keep it well under RabbitMQ's "
                   "consumer_timeout [default: 300].")
@click.option("--reconcile-every", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds between passes re-publishing lost tasks.")
@click.option("--requeue-after", type=click.FloatRange(min=0.1), default=None,
              help="A queued row older than this many seconds lost its task [default: 1800].")
@click.option("--retry-after", type=click.FloatRange(min=0.1), default=None,
              help="A deferred row is tried again this many seconds later [default: 300].")
@click.option("--verbose", "-v", is_flag=True, help="Log every task.")
def worker(config_path: Path, concurrency: int, lease: float | None, time_limit: float | None,
           reconcile_every: float, requeue_after: float | None, retry_after: float | None,
           verbose: bool) -> None:
    """Deliver queued digests: a Celery worker on settings.queue."""
    from digest.config import load_config
    from digest.workers import LEASE, REQUEUE_AFTER, RETRY_AFTER, TIME_LIMIT, run_worker

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(processName)s %(levelname)s %(message)s")
    config = load_config(config_path, environ=os.environ)
    _queued_config(config)
    limit = time_limit or min(TIME_LIMIT, (lease or LEASE) * 0.8)
    try:
        code = run_worker(config, os.environ, concurrency=concurrency, lease=lease or LEASE,
                   time_limit=limit, reconcile_every=reconcile_every,
                   requeue_after=requeue_after or REQUEUE_AFTER,
                   retry_after=retry_after or RETRY_AFTER,
                   loglevel="INFO" if verbose else "WARNING")
    except ValueError as exc:
        raise DigestError(str(exc)) from None
    if code:
        raise SystemExit(code)


def send_queued(config: Config, papers: tuple[Paper, ...], now: datetime, *, only: str | None,
                ignore_schedule: bool, wait: bool) -> None:
    """``digest send`` with ``settings.queue``: hand the run to the workers, print what was
    queued, and with ``wait`` follow the run until every queued row is settled."""
    from digest.workers import enqueue_run

    report = enqueue_run(config, papers, now, only=only, ignore_schedule=ignore_schedule,
                         environ=os.environ)
    out = Console(soft_wrap=True)
    table = Table(title=f"digest send (queued, edition {report.run})", title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("queued for the workers", str(report.queued))
    table.add_row("skipped: already sent or in flight", str(report.already))
    table.add_row("skipped: suppressed", str(report.suppressed))
    if report.not_due:
        table.add_row("skipped: not scheduled today", str(report.not_due))
    out.print(table)
    if not wait:
        out.print("'digest status' follows the run; 'digest worker' processes deliver it.",
                  markup=False)
        return
    from digest.compose import edition_for
    from digest.delivery import due
    from digest.ledger import PostgresLedger

    editions = {edition_for(s, now) for s in due(config, now, only,
                                                 ignore_schedule=ignore_schedule)}
    with PostgresLedger(_queued_config(config)) as ledger:
        while True:
            left = [s for s in ledger.status() if s.edition in editions]
            if sum(s.queued + s.sending for s in left) == 0:
                break
            time.sleep(0.5)
        left = [s for s in ledger.status() if s.edition in editions]
    _print_status(out, left)
    if any(s.failed or s.uncertain for s in left):
        raise SystemExit(1)


def _print_status(out: Console, rows: Sequence[EditionStatus]) -> None:
    table = Table(title="status", title_justify="left")
    for col in ("edition", "queued", "sending", "sent", "deferred", "failed", "uncertain",
                "possible duplicates", "oldest lease ends (UTC)"):
        table.add_column(col, justify="left" if col.startswith(("edition", "oldest")) else "right")
    for s in rows:
        lease = s.oldest_lease.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") \
            if s.oldest_lease else ""
        table.add_row(s.edition.isoformat(), str(s.queued), str(s.sending), str(s.sent),
                      str(s.deferred), str(s.failed), str(s.uncertain),
                      str(s.possible_duplicates), lease)
    out.print(table)


@main.command("status", epilog="""\b
Examples:
  digest status
  digest status --edition 2026-11-25 --json""")
@config_option
@click.option("--edition", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Only this edition (a subscriber-local date).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(config_path: Path, edition: datetime | None, as_json: bool) -> None:
    """Per edition across every sender: queued, sending, sent, deferred, failed, oldest lease."""
    import json

    from digest.config import load_config
    from digest.ledger import open_ledger

    config = load_config(config_path, environ=os.environ)
    wanted: date | None = None if edition is None else edition.date()
    with open_ledger(config.settings.database) as ledger:
        rows = [s for s in ledger.status() if wanted is None or s.edition == wanted]
    if as_json:
        click.echo(json.dumps([{
            "edition": s.edition.isoformat(), "queued": s.queued, "sending": s.sending,
            "sent": s.sent, "deferred": s.deferred, "failed": s.failed,
            "uncertain": s.uncertain, "possible_duplicates": s.possible_duplicates,
            "oldest_lease": s.oldest_lease.isoformat() if s.oldest_lease else None}
            for s in rows], indent=2))
        return
    out = Console(soft_wrap=True, width=None if Console().is_terminal else 200)
    if not rows:
        out.print(f"nothing recorded yet ({config.settings.database})", markup=False)
        return
    _print_status(out, rows)
