"""The click group every command hangs on, and the options they share.

The CLI is the only place that prints or exits: a ``DigestError`` becomes its message on stderr
and exit 1 (no traceback); click's usage errors exit 2.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from digest import __version__
from digest.errors import DigestError


class DigestGroup(click.Group):
    """The ``digest`` group: commands load lazily from ``commands.COMMANDS``; a
    ``DigestError`` is one line on stderr and exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from digest.cli.commands import COMMANDS

        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from digest.cli.commands import COMMANDS

        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name][0])  # registers it on this group
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from digest.cli.commands import COMMANDS

        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                stub = click.Command(name, help=COMMANDS[name][1])  # shortened as click would
                rows.append((name, stub.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.echo(f"error: {exc}" if "\n" not in str(exc) else str(exc), err=True)
            ctx.exit(1)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
def main() -> None:
    """paper-digest: each day's trending papers, as personal email digests.

    \b
    Start here:
      digest validate subscribers.example.yaml
      digest send --config subscribers.example.yaml
    """


def default_config() -> Path:
    return Path(os.environ.get("DIGEST_CONFIG", "subscribers.yaml"))


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    default=default_config, show_default="subscribers.yaml or $DIGEST_CONFIG",
    help="The subscribers YAML file.")

papers_option = click.option(
    "--papers", "-p", "papers_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read papers from this file (our JSON list, HF Daily Papers JSON, arXiv Atom or RSS; "
         "auto-detected) instead of the configured feed.")


def parse_now(value: str | None, what: str = "--now") -> datetime | None:
    """An ISO 8601 time given on the command line (no offset means UTC); None when not given."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date-time: {value!r} (e.g. 2026-11-25T07:00Z "
                                 "or 2026-03-29T08:00:00+02:00)", param_hint=what) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now_from(value: str | None) -> datetime:
    """``--now`` if given, else the current time."""
    return parse_now(value) or datetime.now(UTC)


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1, localhost: reachable from this machine only (servers warn otherwise)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
