"""CLI: ``digest send``, ``digest history`` and ``digest unsubscribe``.

Thin: parse, call ``digest.delivery.send_all`` / the ``digest.ledger.Ledger``, print. Progress
goes to stderr (only on a terminal); the closing table and history go to stdout.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from digest.cli._base import config_option, main, now_from, papers_option
from digest.errors import InputError
from digest.models import Config, Delivery, FeedReport

if TYPE_CHECKING:
    from digest.ledger import LedgerRow, SkipRow


@main.command("send", epilog="""\b
Examples:
  digest send --config subscribers.yaml
  digest send --subscriber ada@example.org --dry-run
  digest send --papers papers.json --force      # re-send today's edition

\b
Subscribers whose schedule has no send on their local date are skipped (a mon-fri subscriber
gets no Saturday edition); --ignore-schedule sends to everyone, --subscriber to the one named.
Each subscriber gets at most one digest per edition (their local date). Re-running sends
nothing new; temporary failures are retried, then left deferred for the next run (for up to
settings.retry_for); permanent refusals are reported and not retried. Exit status 1 if any
digest failed.""")
@config_option
@papers_option
@click.option("--subscriber", "-s", "only", metavar="EMAIL", default=None,
              help="Send only this subscriber's digest.")
@click.option("--dry-run", is_flag=True,
              help="Select, summarize, render and build, but send and record nothing.")
@click.option("--force", is_flag=True,
              help="Send this edition again even to subscribers who already got it.")
@click.option("--now", "now_text", metavar="ISO-8601", default=None,
              help="Send as if it were this time (no offset means UTC).")
@click.option("--ignore-schedule", is_flag=True,
              help="Send to every subscriber, also those whose schedule has no send today.")
@click.option("--new-ledger", is_flag=True,
              help="Start a new ledger although earlier runs left their mark (an outbox with "
                   "messages, <database>.jobs): every edition is sent again.")
@click.option("--wait", is_flag=True,
              help="With settings.queue: wait until the workers have settled every digest.")
def send(config_path: Path, papers_path: Path | None, only: str | None, dry_run: bool,
         force: bool, now_text: str | None, ignore_schedule: bool, new_ledger: bool,
         wait: bool) -> None:
    """Send the current edition to every subscriber now (once per edition)."""
    from digest.config import open_config
    from digest.delivery import due, send_all
    from digest.feeds import papers_for

    now = now_from(now_text)
    # A big file's subscribers are read one at a time, from a temporary file the block removes.
    with open_config(config_path, environ=os.environ) as config:
        settings = config.settings
        if only is not None and not due(config, now, only):
            raise InputError(config_path, f"no subscriber {only} in this config")
        papers = papers_for(settings, papers_path, now)
        if settings.queue and not dry_run:  # the workers deliver: hand the run over
            if force:
                raise InputError(config_path, "--force is not supported with settings.queue")
            from digest.cli.cmd_worker import send_queued

            send_queued(Config(config.path, settings, tuple(config.subscribers)), tuple(papers),
                        now, only=only, ignore_schedule=ignore_schedule, wait=wait)
            return
        err = Console(stderr=True)
        with Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, disable=not err.is_terminal,
                      transient=True) as bar:
            task = bar.add_task("send", total=None)  # sized when send_all has counted

            def sized(total: int) -> None:
                bar.update(task, total=total)

            def tick(_d: Delivery) -> None:
                bar.advance(task)

            with graceful_stop() as stop:
                report = send_all(config, papers, now, only=only, dry_run=dry_run, force=force,
                                  environ=os.environ, progress=tick,
                                  ignore_schedule=ignore_schedule, new_ledger=new_ledger,
                                  stop=stop, counted=sized)

    out = Console(soft_wrap=True)
    table = Table(title="digest send" + (" (dry run)" if dry_run else ""), title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    rows: list[tuple[str, int, bool]] = [
        ("would send", report.would_send, dry_run),
        ("sent", report.sent, not dry_run),
        ("  of which possible duplicates", report.possible_duplicates,
         report.possible_duplicates > 0),
        ("skipped: already sent", report.already_sent, True),
        ("skipped: nothing new", report.nothing_new, True),
        ("skipped: suppressed", report.suppressed, True),
        ("skipped: paused", report.paused, report.paused > 0),
        ("skipped: not scheduled today", report.not_due, report.not_due > 0),
        ("skipped: failed earlier", report.failed_before, report.failed_before > 0),
        ("deferred (retried next run)", report.deferred, True),
        ("held: uncertain (digest resolve)", report.uncertain, report.uncertain > 0),
        ("failed", report.failed, True),
    ]
    for label, count, shown in rows:
        if shown:
            table.add_row(label, str(count))
    out.print(table)
    if settings.delivery == "outbox" and report.sent and not dry_run:
        box = settings.outbox
        out.print(f"{report.sent} email{'s' if report.sent != 1 else ''} written to the Maildir "
                  f"{box} (open it with any mail client, e.g. mutt -f {box}); "
                  "'digest history' lists what went out.", markup=False)
    for d in report.problems:
        what = d.detail if d.state == "sent" else d.state
        out.print(f"{d.email} ({d.edition}): {what}"
                  + (f": {d.error}" if d.error and d.state != "sent" else ""), markup=False)
        if d.state == "uncertain":
            out.print(f"  the server may have accepted it; nothing re-sends it until you run "
                      f"digest resolve {d.email} {d.edition} --sent (it arrived) or --resend",
                      markup=False)
    if report.stopped:
        click.echo(f"stopped by {stop.signal_name}: the messages in flight were finished, "
                   "the rest not started; run digest send again to finish", err=True)
    if not report.ok or report.stopped:
        raise SystemExit(1)


class _Stop:
    """Set by SIGTERM/SIGINT; ``send_all`` polls it between messages."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()


@contextmanager
def graceful_stop() -> Iterator[_Stop]:
    """SIGTERM and SIGINT finish the messages in flight instead of killing them (a killed
    send leaves rows ``sending``, re-sent next time as possible duplicates)."""
    stop = _Stop()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stop.on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ledger(config_path: Path):  # type: ignore[no-untyped-def]
    from digest.config import load_config
    from digest.ledger import open_ledger

    return open_ledger(load_config(config_path, environ=os.environ).settings.database)


def _why(config: Config, skip: SkipRow) -> tuple[str, list[FeedReport]]:
    """Why ``skip``'s edition sent nothing: the selection's reason, and what the feeds that
    subscriber reads said that day (empty, down, or how many papers)."""
    from digest.feeds import describe_reports, fetch_day, reports_for_day

    sub = config.subscriber(skip.email)
    names = sub.feeds if sub is not None else ()
    reports = [r for r in reports_for_day(config.settings.database, fetch_day(skip.at))
               if not names or r.name in names]
    feeds = describe_reports(reports)
    return (f"{skip.reason}; {feeds}" if feeds else skip.reason), reports


@main.command("history", epilog="""\b
Examples:
  digest history
  digest history ada@example.org --json
  digest history --limit 0          # every row

\b
An edition that sent nothing is listed as skipped, with why: what matched but was already
sent, or that nothing matched, and what each feed the subscriber reads said that day
(empty: weekend, holiday, not yet announced; down: the error; or how many papers).""")
@config_option
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=100, show_default=True,
              help="Show at most this many rows, newest first (0: all).")
def history(config_path: Path, email: str | None, as_json: bool, limit: int) -> None:
    """What went out (or is pending, or why nothing did), when, with which papers, newest
    first."""
    from digest.config import load_config
    from digest.ledger import SkipRow, open_ledger

    config = load_config(config_path, environ=os.environ)
    ledger = open_ledger(config.settings.database)
    rows = ledger.rows(email, limit=limit or None)
    skips = ledger.skips(email, limit=limit or None)
    suppressed = ledger.suppressed()
    ledger.close()
    merged: list[LedgerRow | SkipRow] = sorted([*rows, *skips], key=lambda r: r.email)
    merged.sort(key=lambda r: r.edition, reverse=True)  # newest first, addresses A-Z within
    if limit:
        merged = merged[:limit]
    if as_json:
        out_rows = []
        for r in merged:
            if isinstance(r, SkipRow):
                why, reports = _why(config, r)
                out_rows.append({
                    "email": r.email, "edition": r.edition.isoformat(), "state": "skipped",
                    "reason": why, "updated": r.at.isoformat(),
                    "feeds": [{"name": f.name, "source": f.source, "state": f.state,
                               "papers": f.papers, "day": f.day.isoformat() if f.day else None,
                               "reason": f.reason} for f in reports],
                    "suppressed": r.email in suppressed})
                continue
            out_rows.append({
                "email": r.email, "edition": r.edition.isoformat(), "state": r.state,
                "message_id": r.message_id, "papers": list(r.papers), "attempts": r.attempts,
                "created": r.created.isoformat(), "updated": r.updated.isoformat(),
                "sent_at": r.sent_at.isoformat() if r.sent_at else None, "code": r.code,
                "error": r.error, "possible_duplicate": r.possible_duplicate,
                "suppressed": r.email in suppressed})
        click.echo(json.dumps(out_rows, indent=2))
        return
    out = Console(soft_wrap=True)
    if not merged:
        out.print("nothing sent yet" + (f" to {email}" if email else "")
                  + f" ({ledger.path})", markup=False)
        return
    table = Table(title=f"history ({ledger.path})", title_justify="left")
    for col in ("edition", "email", "state", "when (UTC)", "papers", "note"):
        table.add_column(col)
    for r in merged:
        if isinstance(r, SkipRow):
            when = r.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            why, _reports = _why(config, r)
            table.add_row(r.edition.isoformat(), r.email, "skipped", when, "0", why)
            continue
        when = (r.sent_at or r.updated).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        notes = [n for n in (
            "possible duplicate" if r.possible_duplicate else None,
            f"{r.attempts} attempts" if r.attempts > 1 else None,
            f"{r.code} {r.error}" if r.state in ("deferred", "failed") and r.error else None,
            "may have arrived" if r.state == "uncertain" else None,
            "unsubscribed" if r.email in suppressed else None) if n]
        # One address: its paper ids; everyone: just how many (ids are in --json).
        papers = " ".join(r.papers) if email else str(len(r.papers))
        table.add_row(r.edition.isoformat(), r.email, r.state, when, papers, "; ".join(notes))
    out.print(table)
    held = [r for r in rows if r.state == "uncertain"]
    for r in held:
        out.print(f"{r.email} {r.edition}: uncertain ({r.error}); the server may have accepted "
                  f"it: digest resolve {r.email} {r.edition} --sent (it arrived) or --resend",
                  markup=False)


@main.command("resolve", epilog="""\b
Examples:
  digest resolve ada@example.org 2026-11-25 --sent      # it did arrive: done
  digest resolve ada@example.org 2026-11-25 --resend    # it did not: send it again

\b
An edition is held "uncertain" when the server may have accepted it but never said so (no
reply to the final "." twice, or in flight at a crash and again unclear when re-sent):
nothing re-sends it automatically, so no subscriber gets it three times. Ask the subscriber
or check the server's log, then tell paper-digest which it was.""")
@config_option
@click.argument("email")
@click.argument("edition", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--sent", "outcome", flag_value="sent", help="It arrived: record it as sent.")
@click.option("--resend", "outcome", flag_value="resend",
              help="It did not arrive: the next run sends it again (the same message).")
def resolve(config_path: Path, email: str, edition: datetime, outcome: str | None) -> None:
    """Settle an edition held "uncertain": it arrived (--sent) or send it again (--resend)."""
    if outcome is None:
        raise click.UsageError("say which: --sent (it arrived) or --resend (send it again)")
    ledger = _ledger(config_path)
    try:
        row = ledger.resolve(email, edition.date(), sent=outcome == "sent",
                             now=datetime.now(UTC))
    finally:
        ledger.close()
    click.echo(f"{row.email} edition {row.edition}: " + (
        "recorded as sent" if outcome == "sent" else "will be sent again by the next run"))


@main.command("unsubscribe", epilog="""\b
Examples:
  digest unsubscribe ada@example.org
  digest unsubscribe ada@example.org --undo""")
@config_option
@click.argument("email")
@click.option("--undo", is_flag=True, help="Lift the suppression instead.")
def unsubscribe(config_path: Path, email: str, undo: bool) -> None:
    """Stop sending to EMAIL (recorded in the ledger; wins over the YAML)."""
    if "@" not in email or any(c.isspace() for c in email.strip()):
        raise click.BadParameter(f"{email!r} is not an email address", param_hint="EMAIL")
    ledger = _ledger(config_path)
    address = email.strip().lower()
    if undo:
        changed = ledger.unsuppress(address)
        click.echo(f"{address}: will get digests again" if changed
                   else f"{address} was not unsubscribed")
    else:
        changed = ledger.suppress(address, now=datetime.now(UTC), source="cli")
        click.echo(f"{address}: unsubscribed, gets nothing from now on" if changed
                   else f"{address} was already unsubscribed")
    ledger.close()
