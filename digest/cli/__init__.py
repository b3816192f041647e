"""Command-line entry point: ``digest``. Each command lives in its own module below and
registers itself on the group from ``_base``; ``commands.COMMANDS`` says which module, and the
group imports it only when that command is used."""

from digest.cli._base import main

__all__ = ["main"]
