"""CLI: the summarize command(s). Thin: parse, call one library function, print."""

from __future__ import annotations

from digest.cli._base import main  # noqa: F401
