"""Command-line entry point: ``digest``. Each command lives in its own module below and
registers itself on the group from ``_base``; this module only imports them."""

# Importing a command module registers its commands on ``main``.
from digest.cli import commands  # noqa: E402,F401
from digest.cli._base import main

__all__ = ["main"]
