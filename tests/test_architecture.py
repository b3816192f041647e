"""The import rules of docs/architecture.md, checked with ast over every module under digest/.

The units are the stage packages (``digest/feeds/`` ...) and the few shared top-level modules
(``models``, ``errors``, ``cron``, ``files``, ``memo``). A module may import its own unit's private modules; another
unit only through its public face (``digest.feeds``, never ``digest.feeds._http``) and only if
the table below allows it; pure units import no I/O library; no import cycle anywhere, lazy
imports inside functions included. Imports under ``if TYPE_CHECKING:`` are type-only and do not
count. There are no whitelisted exceptions: a cycle is mended, not allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"
README = PACKAGE.parent / "README.md"
EXAMPLE = PACKAGE.parent / "subscribers.example.yaml"

BASE = {"models", "errors"}
# unit -> units it may import (besides itself). None = anything but the CLI.
ALLOWED: dict[str, set[str] | None] = {
    "__init__": set(),
    "__main__": {"cli"},
    "models": set(),
    "errors": set(),
    "cron": set(),
    "files": set(),
    "memo": set(),
    "text": set(),
    "config": BASE | {"cron", "text"},
    "feeds": BASE | {"text", "files"},
    "selection": BASE | {"text", "memo"},
    "summarize": BASE | {"text"},
    "compose": BASE | {"summarize"},
    "render": BASE | {"text", "memo"},  # left_out: a cut pick's title, cleaned as a summary's is
    "ledger": BASE,
    "delivery": BASE | {"cron", "files", "ledger", "selection", "summarize", "compose", "render"},
    "schedule": BASE | {"cron", "config", "feeds", "ledger", "selection", "summarize", "compose",
                        "render", "delivery", "workers"},
    # queue workers: the claim (ledger) around deliver_edition (delivery), unchanged
    "workers": BASE | {"cron", "compose", "ledger", "selection", "render", "delivery"},
    "preview": BASE | {"config", "feeds", "ledger", "selection", "summarize", "compose", "render",
                       "delivery", "files"},
    # digest serve: tokens and links from compose, preferences and the archive in the ledger
    "web": BASE | {"config", "ledger", "compose"},
    "cli": None,
}

# Pure units and modules: no I/O libraries.
PURE = {"models", "errors", "text", "cron", "memo", "selection", "summarize", "compose", "render",
        "delivery._message"}
IO_LIBS = {"httpx", "sqlite3", "smtplib", "socket", "click", "rich", "subprocess", "urllib.request",
           "http.server", "sqlalchemy", "psycopg", "celery", "starlette", "uvicorn"}

# Environment variables the product may name: each is documented for users (README or example).
USER_ENV = {"DIGEST_CONFIG", "DIGEST_SMTP_PASSWORD", "DIGEST_UNSUBSCRIBE_SECRET",
            "DIGEST_QUEUE_PASSWORD"}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> set[str]:
    """Every module a tree imports at run time (``from digest import x`` counts as digest.x)."""
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
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    """digest/feeds/_http.py -> feeds._http; digest/feeds/__init__.py -> feeds."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _unit(name: str) -> str:
    return name.split(".")[0]


def _project(imported: set[str]) -> set[str]:
    return {name[len("digest."):] for name in imported if name.startswith("digest.")}


def test_every_unit_has_a_rule() -> None:
    missing = sorted({_unit(_name(p)) for p in _modules()} - set(ALLOWED))
    assert missing == [], f"add these to ALLOWED and docs/architecture.md: {missing}"


def test_every_stage_is_a_package_with_a_public_face() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py")
             if p.stem not in {"__init__", "__main__", "models", "errors", "cron", "files", "memo"}]
    assert loose == [], f"put these in a stage package: {loose}"


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_imports_follow_the_rules(path: Path) -> None:
    me = _name(path)
    unit = _unit(me)
    imported = _imports(ast.parse(path.read_text(encoding="utf-8")))
    others = {name for name in _project(imported) if _unit(name) != unit}
    insides = sorted(name for name in others if "." in name)
    assert insides == [], f"{me} reaches inside another stage: {insides} (use its public face)"
    allowed = ALLOWED[unit]
    if allowed is None:
        assert "cli" not in others, f"{me} imports the CLI"
    else:
        assert others <= allowed, f"{me} imports {sorted(others - allowed)}"
    if unit in PURE or me in PURE:
        io = {name for name in imported if name in IO_LIBS or name.split(".")[0] in IO_LIBS}
        assert io == set(), f"pure {me} imports I/O libraries {sorted(io)}"


def _graph() -> dict[str, set[str]]:
    names = {_name(p) for p in _modules()}
    graph: dict[str, set[str]] = {}
    for path in _modules():
        imported = _project(_imports(ast.parse(path.read_text(encoding="utf-8"))))
        graph[_name(path)] = {name for name in imported if name in names} - {_name(path)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_no_import_cycle_between_units() -> None:
    units: dict[str, set[str]] = {}
    for name, deps in _graph().items():
        units.setdefault(_unit(name), set()).update(_unit(d) for d in deps if _unit(d) != _unit(name))
    assert _cycle(units) is None, " -> ".join(_cycle(units) or [])


def test_every_module_says_what_it_owns() -> None:
    undocumented = [_name(p) for p in _modules()
                    if p.stem != "__main__" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []


def test_the_product_reads_no_test_only_environment_variable() -> None:
    named = set()
    for path in _modules():
        named.update(re.findall(r"[\"'](DIGEST_[A-Z_]+)[\"']", path.read_text(encoding="utf-8")))
    assert named <= USER_ENV, f"not a user setting: {sorted(named - USER_ENV)}"
    docs = README.read_text(encoding="utf-8") + EXAMPLE.read_text(encoding="utf-8")
    assert [name for name in sorted(USER_ENV) if name not in docs] == []


def test_loggers_are_named_by_module() -> None:
    fixed = [(_name(p), m) for p in _modules()
             for m in re.findall(r"getLogger\((\"digest[^\"]*\")\)", p.read_text(encoding="utf-8"))]
    assert fixed == [], f"use logging.getLogger(__name__): {fixed}"


def test_the_rules_catch_a_violation() -> None:
    tree = ast.parse("import sqlite3\nfrom digest import feeds\nfrom typing import TYPE_CHECKING\n"
                     "def f():\n    from digest.ledger._sqlite import Ledger\n"
                     "if TYPE_CHECKING:\n    from digest.render import Renderer\n")
    assert _imports(tree) == {"sqlite3", "digest", "digest.feeds", "digest.ledger._sqlite",
                              "typing"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_user_facing_exception_lives_in_errors_and_in_its_tree() -> None:
    errors = (PACKAGE / "errors.py").read_text(encoding="utf-8")
    elsewhere = []
    for path in _modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                    isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id == "Exception")
                    for b in node.bases):
                elsewhere.append(f"{_name(path)}.{node.name}")
    assert elsewhere == [], f"move these to digest/errors.py: {elsewhere}"
    tree = ast.get_docstring(ast.parse(errors)) or ""
    defined = [n.name for n in ast.parse(errors).body if isinstance(n, ast.ClassDef)
               and n.name.endswith("Error")]
    assert [name for name in defined if f" {name} " not in tree] == []
