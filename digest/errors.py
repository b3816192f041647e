"""The one exception hierarchy.

Owns: every error the CLI reports to a user. Each class carries its context (file, line, key;
template; recipient and SMTP code) and formats its own message, so the CLI only prints
``str(error)`` and exits 1. Third-party errors are wrapped in these, never shown raw. Imports
nothing from the project. (Two private signals never leave their module: ``feeds._parse``'s
skipped item and ``delivery._transports``' stale pooled connection.)

    DigestError                     base: the CLI prints it and exits 1
    ├── ConfigError                 every Problem (file:line: key: message) of a config at once
    ├── InputError                  a bad input file or line (papers JSON, summarize input)
    ├── FeedError                   a feed that cannot be read or fetched
    ├── TemplateError               a template that fails to load, render or compile
    ├── DeliveryError               one recipient's message not delivered (SMTP code, temporary?)
    │   └── UncertainDeliveryError  sent, but the final reply never came: maybe accepted
    ├── TransportError              the transport as a whole is unusable: the run stops
    │   └── SenderRefusedError      many recipients in a row refused alike: our problem
    ├── LockedError                 another process holds the database's send lock
    ├── LedgerError                 the ledger (file or database) is unreadable or not ours
    ├── ScheduleError               a schedule that cannot be computed, a scheduler that fails
    └── TokenError                  a malformed or forged unsubscribe token
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DigestError(Exception):
    """Base of every error a user should see as one clear message (CLI exit 1)."""


@dataclass(frozen=True)
class Problem:
    """One problem in a file: ``subscribers.yaml:14: subscribers[1].email: missing``."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(DigestError):
    """The config file has one or more problems; all of them are reported at once."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(DigestError):
    """A bad input file or line (papers JSON, summarize input)."""

    def __init__(self, source: str | Path, message: str, line: int | None = None) -> None:
        self.source = str(source)
        self.line = line
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")


class FeedError(DigestError):
    """A feed could not be read or fetched (malformed payload, HTTP error, offline)."""

    def __init__(self, source: str | Path, message: str) -> None:
        self.source = str(source)
        super().__init__(f"{self.source}: {message}")


class TemplateError(DigestError):
    """A template failed to load, render or compile."""

    def __init__(self, template: str, message: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        where = f"{template}:{line}" if line is not None else template
        super().__init__(f"template {where}: {message}")


class DeliveryError(DigestError):
    """A message could not be delivered to one recipient."""

    def __init__(self, message: str, recipient: str | None = None, code: int | None = None,
                 temporary: bool = False) -> None:
        self.recipient = recipient
        self.code = code
        self.temporary = temporary
        parts = [p for p in (recipient, f"SMTP {code}" if code else None) if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class UncertainDeliveryError(DeliveryError):
    """The whole message was sent but the connection dropped or timed out before the server's
    final reply: it may have been accepted, so a retry may deliver a duplicate. Temporary."""

    def __init__(self, message: str, recipient: str | None = None) -> None:
        super().__init__(message, recipient=recipient, code=None, temporary=True)


class TransportError(DigestError):
    """The transport as a whole is unusable (auth refused, TLS failure, server unreachable):
    the run stops and nothing is marked sent."""


class SenderRefusedError(TransportError):
    """Many different recipients in a row refused with the same 5xx: a problem of ours (relay
    permission, a blocklisted sender), not of theirs. ``deferred`` are the (email, edition)
    rows put back to deferred, so a later run sends them once it is fixed."""

    def __init__(self, message: str, deferred: tuple[tuple[str, object], ...] = ()) -> None:
        self.deferred = deferred
        super().__init__(message)


class LockedError(DigestError):
    """Another paper-digest process holds the database's send lock."""


class ScheduleError(DigestError):
    """A schedule could not be computed or the scheduler could not start."""


class LedgerError(DigestError):
    """The ledger (a SQLite file, or a PostgreSQL database by URL) is unreadable, unreachable
    or not a paper-digest database."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class TokenError(DigestError):
    """A link token is malformed, unknown, or its signature does not match."""
