"""The README's command table is the CLI: every command (and sub-command) has a row, every row
names a real command, and the rows name exactly the command's real options and arguments."""

from __future__ import annotations

import re
from pathlib import Path

import click

from digest.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()
             ) -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            out.update(commands(cmd, (*prefix, name)))
        else:
            out[" ".join((*prefix, name))] = cmd
    return out


def table_rows() -> dict[str, str]:
    """Command name -> all its rows' first cells, joined (a command may have several rows)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Commands"):]
    section = section[:section.index("\n## ", 4)]
    known = commands()
    rows: dict[str, str] = {}
    for cell in re.findall(r"^\| `digest ([^`]+)` \|", section, re.M):
        words = cell.split()
        name = next((n for n in sorted(known, key=len, reverse=True)
                     if words[:len(n.split())] == n.split()), words[0])
        rows[name] = rows.get(name, "") + " " + cell
    return rows


def test_every_command_has_a_row_and_every_row_a_command() -> None:
    assert sorted(table_rows()) == sorted(commands())


def test_rows_name_the_real_options_and_arguments() -> None:
    rows = table_rows()
    for name, cmd in commands().items():
        cell = rows[name]
        written = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", cell))
        real = {opt for p in cmd.params if isinstance(p, click.Option)
                for opt in p.opts if opt.startswith("--")}
        assert written == real, (name, sorted(written ^ real))
        for p in cmd.params:
            if isinstance(p, click.Argument):
                assert p.name is not None and p.name.upper() in cell, (name, p.name)


def test_the_lazy_table_holds_each_commands_own_one_line_help() -> None:
    from digest.cli.commands import COMMANDS

    ctx = click.Context(main)
    for name, (module, short) in COMMANDS.items():
        cmd = main.get_command(ctx, name)
        assert cmd is not None and cmd.callback is not None, name
        assert cmd.callback.__module__ == module, name
        assert cmd.get_short_help_str(limit=1000) == short, name
