"""The import rules of docs/architecture.md, checked with ast over digest/*.py.

Stages never import each other; pure stages never import an edge (files, network, SQLite, the
terminal); nothing but the CLI imports the CLI. Imports under ``if TYPE_CHECKING:`` are type-only
and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"

BASE = {"models", "errors"}
# module -> project modules it may import (besides itself). None = anything but the CLI.
ALLOWED: dict[str, set[str] | None] = {
    "__init__": set(),
    "__main__": {"cli"},
    "models": set(),
    "errors": set(),
    "textclean": set(),
    "sentences": set(),
    "cron": set(),
    "config_schema": {"errors", "cron"},
    "config": BASE | {"config_schema", "cron"},
    "feeds": BASE | {"feeds_http"},
    "feeds_http": BASE | {"feeds"},
    "matching": BASE | {"textclean"},
    "selector": BASE | {"matching", "textclean"},
    "summarizer": BASE | {"sentences", "textclean"},
    "unsubscribe": {"errors"},
    "pipeline": BASE | {"selector", "summarizer", "unsubscribe"},
    "compiled": BASE,
    "renderer": BASE | {"compiled"},
    "mailer": BASE,
    "transports": BASE | {"mailer"},
    "ledger": BASE,
    "scheduler": BASE | {"cron"},
    "service": None,
    "daemon": None,
    "preview": None,
}

# Pure stages: no I/O libraries.
PURE = {"models", "errors", "textclean", "sentences", "cron", "matching", "selector",
        "summarizer", "pipeline", "compiled", "renderer", "mailer", "unsubscribe"}
IO_LIBS = {"httpx", "sqlite3", "smtplib", "socket", "click", "rich", "subprocess", "urllib.request",
           "http.server", "sqlalchemy"}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "digest":
                found.update(f"digest.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def test_every_module_has_a_rule() -> None:
    missing = [p.stem for p in _modules() if p.stem not in ALLOWED]
    assert missing == [], f"add these modules to ALLOWED and docs/architecture.md: {missing}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.stem)
def test_imports_follow_the_rules(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = _imports(tree)
    project = {name.split(".")[1] for name in imported if name.startswith("digest.")}
    project.discard(path.stem)
    allowed = ALLOWED.get(path.stem, set())
    if allowed is None:
        assert "cli" not in project, f"{path.name} imports the CLI"
    else:
        assert project <= allowed, f"{path.name} imports {sorted(project - allowed)}"
    if path.stem in PURE:
        io = {name for name in imported if name in IO_LIBS or name.split(".")[0] in IO_LIBS}
        assert io == set(), f"pure stage {path.name} imports I/O libraries {sorted(io)}"


def test_every_module_says_what_it_owns() -> None:
    undocumented = [p.name for p in _modules()
                    if p.stem not in {"__main__"} and not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    tree = ast.parse("import sqlite3\nfrom digest import feeds\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from digest.ledger import Ledger\n")
    assert _imports(tree) == {"sqlite3", "digest", "digest.feeds", "typing"}
