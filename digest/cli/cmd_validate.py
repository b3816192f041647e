"""CLI: ``digest validate [CONFIG]``. Thin: parse, call ``load_config``, print.

Every problem goes to stderr, one per line as ``file:line: key.path: message``, followed by a
count, and the exit code is 1; a valid file prints a one-line summary on stdout and exits 0.
"""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli._base import default_config, main
from digest.config import load_config
from digest.errors import ConfigError
from digest.feeds import load_papers
from digest.models import Config
from digest.selection import Selector, term_warnings


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(config: Config, shown: str) -> str:
    """``subscribers.yaml: OK, 4 subscribers, 9 topics, delivery outbox``."""
    topics = sum(len(s.topics) for s in config.subscribers)
    return (f"{shown}: OK, {_plural(len(config.subscribers), 'subscriber')}, "
            f"{_plural(topics, 'topic')}, delivery {config.settings.delivery}")


@main.command(epilog="""\b
Examples:
  digest validate subscribers.example.yaml
  DIGEST_CONFIG=/etc/digest.yaml digest validate

\b
A problem reads:
  subscribers.yaml:14: subscribers[1].topics[0].include: expected a list of strings, got 'x'

\b
With --papers, every include and require term is also measured on those papers, as the
selection reads it, and a warning says when it is too broad, never found, or when a near
form would find far more:
  digest validate --papers papers.json
  subscribers.yaml:9: subscribers[0].topics[0].include[0]: warning: '=pretrained' found
  13 papers, 'pretrained' 37""")
@click.argument("config_path", metavar="[CONFIG]", required=False,
                type=click.Path(path_type=Path, dir_okay=True))
@click.option("--papers", "-p", "papers_path", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Also measure the terms on these papers (any format digest fetch reads): "
                   "too broad, never found, near forms.")
def validate(config_path: Path | None, papers_path: Path | None) -> None:
    """Check a subscribers YAML file and report every problem at once.

    CONFIG defaults to $DIGEST_CONFIG, else subscribers.yaml. Environment variables named by
    password_env (when delivery is smtp) and unsubscribe_secret_env must be set. Exits 0 when
    the file is valid, 1 when it has problems.
    """
    path = config_path if config_path is not None else default_config()
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        if len(exc.problems) > 1:
            click.echo(f"{path}: {_plural(len(exc.problems), 'problem')}", err=True)
        raise SystemExit(1) from None
    for warning in (suppression_warnings(config, str(path)) + helo_warnings(config, str(path))
                    + dkim_key_warnings(config, str(path))):
        click.echo(warning, err=True)
    if papers_path is not None:
        for warning in term_warning_lines(config, Selector(load_papers(papers_path)), str(path)):
            click.echo(warning, err=True)
    click.echo(summary(config, str(path)))


def term_warning_lines(config: Config, selector: Selector, shown: str,
                       emails: set[str] | None = None) -> list[str]:
    """``file:line: key: warning: ...`` per term warning (``digest plan`` prints them too),
    for every subscriber or those whose lower-cased address is in ``emails``."""
    return [f"{shown}:{w.line}: {w.key}: {w.message}"
            for w in term_warnings(selector, config.subscribers)
            if emails is None or config.subscribers[w.subscriber].email.lower() in emails]


def suppression_warnings(config: Config, shown: str) -> list[str]:
    """One warning per subscriber still in the YAML who unsubscribed (recorded in the ledger):
    they get nothing, and the file should drop them or the suppression be lifted."""
    from digest.ledger import open_ledger

    with open_ledger(config.settings.database) as ledger:
        suppressed = ledger.suppressed()
    return [f"{shown}:{sub.line}: subscribers[{i}].email: warning: {sub.email} unsubscribed "
            f"(recorded in {_where(config.settings.database)}) and gets nothing; remove the entry, "
            f"or run 'digest unsubscribe --undo {sub.email}'"
            for i, sub in enumerate(config.subscribers) if sub.email.lower() in suppressed]


def helo_warnings(config: Config, shown: str) -> list[str]:
    """A warning when mail goes out by SMTP and the greeting name (``smtp.helo``, else this
    host's FQDN) is ``localhost`` or a bare name while the server is not on this machine."""
    from digest.delivery import helo_name, helo_problem

    smtp = config.settings.smtp
    if config.settings.delivery != "smtp" or smtp is None:
        return []
    problem = helo_problem(helo_name(smtp), smtp.host)
    return [f"{shown}: settings.smtp.helo: warning: {problem}"] if problem else []


def dkim_key_warnings(config: Config, shown: str) -> list[str]:
    """A warning per DKIM private key file that others on this machine can read: whoever
    reads it can sign mail as the domain."""
    import stat

    dkim = config.settings.dkim
    out: list[str] = []
    if dkim is None:
        return out
    for key in dkim.keys:
        try:
            mode = stat.S_IMODE(key.path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            where = "settings.dkim.ed25519" if key.algorithm == "ed25519-sha256" \
                else "settings.dkim"
            out.append(f"{shown}: {where}.private_key_file: warning: {key.path} is readable "
                       f"by others (mode {mode:04o}); anyone who reads it can sign mail as "
                       f"{dkim.domain}: chmod 600 {key.path}")
    return out


def _where(database: object) -> str:
    """The ledger as a message names it: a SQLite file by name, PostgreSQL by URL."""
    return database.name if isinstance(database, Path) else str(database)
