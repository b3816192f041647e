"""Imports every command module so its commands register on the group."""

from digest.cli import (  # noqa: F401
    cmd_fetch,
    cmd_plan,
    cmd_preview,
    cmd_run,
    cmd_send,
    cmd_summarize,
    cmd_validate,
)
