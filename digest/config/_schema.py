"""Reading composed YAML nodes into typed values, collecting every problem on the way.

Owns: the node-level half of config loading (``_compose`` parses the file into ``yaml`` nodes,
which keep line numbers): mappings checked for unknown and duplicate keys, and typed readers (strings, lists of
strings, integers, numbers, choices, durations, IANA zones, and the config's domain values:
email addresses, cron schedules, paths, URLs, environment variable names, arXiv categories,
search terms) that spot the YAML 1.1 traps (an unquoted ``no`` read as false, ``12:30`` read
as the base-60 number 750). Nothing here raises on bad input: each reader records a
``Problem`` and returns ``None`` so the caller can keep going and report everything at once.
``digest.config`` builds the models on top.

May import: the standard library, PyYAML, email-validator, ``digest.errors``, ``digest.cron``.
Touches the file system only to check that a referenced path exists.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from email_validator import EmailNotValidError, validate_email
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from digest.cron import cron_trigger
from digest.errors import Problem
from digest.models import BIORXIV_SUBJECTS
from digest.text import term_problem

__all__ = ["Entry", "Reader", "describe", "is_null", "suggest"]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"

# C0 controls (tab excepted) and DEL: never meant in config values, and a header-injection risk
# for anything that ends up in an email header.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Scalars only: stateless for them, so one instance serves every call.
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# arXiv categories: archive (cs, stat, q-bio, hep-th, astro-ph) and optional subject class.
# bioRxiv/medRxiv subjects as papers carry them: cell_biology.
_CATEGORY = re.compile(r"[a-z][a-z_-]*(\.[A-Za-z][A-Za-z-]*)?")
_SUBJECT = re.compile(r"[a-z][a-z_]*")
_LIST_ID = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")  # RFC 2919: label.namespace
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def describe(node: Node) -> str:
    """How a value is shown after ``got``: strings quoted, other scalars as written."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "an empty list" if not node.value else "a list"
    if node.tag == _NULL:
        return "nothing" if node.value in ("", "~") else "null"
    if node.tag == _STR:
        text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        return repr(text)
    return str(node.value)


def _trap(node: ScalarNode) -> str:
    """Why an unquoted scalar is not the string it looks like, as a hint after ``got ...``."""
    if node.style:  # quoted or block scalars are never resolved to other types
        return ""
    if node.tag == _BOOL:
        value = node.value.lower() in ("yes", "true", "on", "y")
        return (f" (YAML 1.1 reads it as the boolean {str(value).lower()}); "
                f'quote it: "{node.value}"')
    if node.tag == _INT and ":" in node.value:
        number = _CONSTRUCTOR.construct_yaml_int(node)
        return f' (YAML 1.1 reads it as the base-60 number {number}); quote it: "{node.value}"'
    if node.tag in (_INT, _FLOAT):
        return f' (a number); quote it: "{node.value}"'
    if node.tag == _TIMESTAMP:
        return f' (YAML reads it as a date); quote it: "{node.value}"'
    return ""


class Entry:
    """One key of a checked mapping: its value node and the line of the key."""

    __slots__ = ("line", "node")

    def __init__(self, line: int, node: Node) -> None:
        self.line = line
        self.node = node



# A plain ASCII local part (RFC 5322 dot-atom): email-validator accepts it as it is, so an
# address made of one and a domain it has already accepted needs no second look at the
# domain. A lab's subscribers share a few domains: 10,000 addresses cost 0.45 s checked one
# by one (a fifth of reading the file), a few ms this way.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=1024)
def _checked_domain(domain: str) -> str:
    """The domain as email-validator normalizes it (lower case, IDNA decoded); raises
    ``EmailNotValidError`` as it does."""
    return str(validate_email(f"x@{domain}", check_deliverability=False,
                              allow_smtputf8=False).normalized).rpartition("@")[2]


# The same few hundred terms recur across a big list's topics: each is checked once (a
# small bound: terms seen once, such as "low-bit 17", churn through it, memory stays flat).
_term_problem = lru_cache(maxsize=512)(term_problem)


def normalized_address(value: str) -> str:
    """``value`` as email-validator normalizes it without SMTPUTF8 (``validate_email(value,
    check_deliverability=False, allow_smtputf8=False).normalized``), raising its
    ``EmailNotValidError``; a plain local part at a domain seen before takes the cached
    domain, anything else (and every error, for its message) goes through it whole."""
    local, at, domain = value.rpartition("@")
    if at and len(local) <= 64 and len(value) <= 200 and _DOT_ATOM.fullmatch(local):
        try:
            return f"{local}@{_checked_domain(domain)}"
        except EmailNotValidError:
            pass  # the whole address is checked below, for email-validator's own message
    return str(validate_email(value, check_deliverability=False,
                              allow_smtputf8=False).normalized)


class Reader:
    """Typed readers over nodes of one file; problems accumulate in ``problems``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        # id(mapping node) -> its expanded pairs; the nodes live as long as this reader
        self._expanded: dict[int, list[tuple[str, Node, Node]]] = {}

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, key, message))

    def bad(self, node: Node, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line_of(node), key, message))

    # ------------------------------------------------------------------ containers

    def mapping(self, node: Node, key: str, allowed: tuple[str, ...], *,
                required: tuple[str, ...] = (), refused: dict[str, str] | None = None,
                what: str = "a mapping", free_prefix: str | None = None
                ) -> dict[str, Entry] | None:
        """The keys of a mapping node, checked: duplicates (which PyYAML would silently drop),
        unknown keys (naming the allowed ones), refused keys and missing required keys. Keys
        starting with ``free_prefix`` are skipped (room for YAML anchors, as ``x-`` in
        Docker Compose)."""
        if not isinstance(node, MappingNode):
            self.bad(node, key, f"expected {what}, got {describe(node)}")
            return None
        entries: dict[str, Entry] = {}
        for name, key_node, value in self._pairs(node, key):
            if name in allowed and name not in entries:  # the common case, checked first
                entries[name] = Entry(int(key_node.start_mark.line) + 1, value)
                continue
            path = f"{key}.{name}" if key else name
            if free_prefix and name.startswith(free_prefix):
                continue
            if name in entries:
                self.bad(key_node, path, f"duplicate key (first at line {entries[name].line}); "
                         "YAML would silently keep only the last one")
            elif refused and name in refused:
                self.bad(key_node, path, refused[name])
            else:
                self.bad(key_node, path, f"unknown key{suggest(name, allowed)}; "
                         f"allowed: {', '.join(allowed)}")
        for name in required:
            if name not in entries and not (refused and name in refused):
                self.bad(node, f"{key}.{name}" if key else name, "missing")
        return entries

    def _pairs(self, node: MappingNode, key: str, *,
               source: bool = False) -> list[tuple[str, Node, Node]]:
        """(name, key node, value node) in document order, YAML merge keys (``<<: *base``)
        expanded first so that keys written out override merged ones without a duplicate.
        A merge ``source`` is expanded once (memoized): merges of merges cannot blow up, and
        a mapping merging itself is reported instead of recursing forever."""
        if source:
            done = self._expanded.get(id(node))
            if done is not None:
                return done
            self._expanded[id(node)] = []  # in progress: a merge back into it adds nothing
        merged: list[tuple[str, Node, Node]] = []
        own: list[tuple[str, Node, Node]] = []
        for key_node, value in node.value:
            if key_node.tag == _MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for other in sources:
                    if other is node:
                        self.bad(other, key, "<< merges the mapping into itself")
                    elif isinstance(other, MappingNode):
                        merged.extend(self._pairs(other, key, source=True))
                    else:
                        self.bad(other, key, f"<< merges a mapping, got {describe(other)}")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                self.bad(key_node, key, f"expected a key name, got {describe(key_node)}"
                         + (_trap(key_node) if isinstance(key_node, ScalarNode) else ""))
                continue
            own.append((key_node.value, key_node, value))
        if not merged:
            pairs = own
        else:
            names = {name for name, _, _ in own}
            pairs = []
            for item in merged:  # a later merge source does not override an earlier one
                if item[0] not in names:
                    names.add(item[0])
                    pairs.append(item)
            pairs.extend(own)
        if source:
            self._expanded[id(node)] = pairs
        return pairs

    def sequence(self, node: Node, key: str, what: str) -> list[Node] | None:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.bad(node, key, f"expected {what}, got {describe(node)}")
        return None

    # ------------------------------------------------------------------ scalars

    def text(self, node: Node, key: str, *, what: str = "a string",
             optional: bool = False) -> str | None:
        """A string, stripped and non-empty; ``None`` (after recording why) otherwise. With
        ``optional`` a null or empty value is simply ``None``."""
        if optional and is_null(node):
            return None
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            hint = _trap(node) if isinstance(node, ScalarNode) else ""
            self.bad(node, key, f"expected {what}, got {describe(node)}{hint}")
            return None
        value = str(node.value).strip()
        if not value:
            if optional:
                return None
            self.bad(node, key, f"expected {what}, got an empty string")
            return None
        if _CONTROL.search(value):
            self.bad(node, key, f"expected {what}, got {describe(node)} "
                     "(control characters such as line breaks are not allowed)")
            return None
        return value

    def strings(self, node: Node, key: str, *, what: str = "a list of strings",
                item: str = "a non-empty string") -> tuple[str, ...] | None:
        """A list of non-empty strings (``[]`` and null give ``()``)."""
        if is_null(node):
            return ()
        items = self.sequence(node, key, what)
        if items is None:
            return None
        values: list[str] = []
        ok = True
        for index, child in enumerate(items):
            value = self.text(child, f"{key}[{index}]", what=item)
            if value is None:
                ok = False
            else:
                values.append(value)
        return tuple(values) if ok else None

    def flag(self, node: Node, key: str) -> bool | None:
        """true or false."""
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return bool(node.value.lower() in ("yes", "true", "on", "y"))
        self.bad(node, key, f"expected true or false, got {describe(node)}")
        return None

    def integer(self, node: Node, key: str, *, minimum: int = 1,
                maximum: int | None = None) -> int | None:
        if isinstance(node, ScalarNode) and node.tag == _INT:
            value = int(_CONSTRUCTOR.construct_yaml_int(node))
            if value >= minimum and (maximum is None or value <= maximum):
                return value
        wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        if maximum is not None:
            wanted = f"an integer from {minimum} to {maximum}"
        self.bad(node, key, f"expected {wanted}, got {describe(node)}")
        return None

    def number(self, node: Node, key: str, *, optional: bool = False) -> float | None:
        """A positive number (int or float)."""
        if optional and is_null(node):
            return None
        if isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(_CONSTRUCTOR.construct_yaml_int(node) if node.tag == _INT
                          else _CONSTRUCTOR.construct_yaml_float(node))
            if value > 0 and value != float("inf"):
                return value
        self.bad(node, key, f"expected a positive number, got {describe(node)}")
        return None

    def choice(self, node: Node, key: str, choices: tuple[str, ...]) -> str | None:
        what = f"one of {', '.join(choices)}"
        value = self.text(node, key, what=what)
        if value is None:
            return None
        if value not in choices:
            self.bad(node, key, f"expected {what}, got {value!r}{suggest(value, choices)}")
            return None
        return value

    def duration(self, node: Node, key: str) -> timedelta | None:
        """``90m``, ``12h``, ``2d``, ``1d12h``, ``1w``, ``30s``."""
        what = "a duration like 90m, 12h, 2d or 1d12h"
        if isinstance(node, ScalarNode) and node.tag == _STR:
            match = _DURATION.fullmatch(node.value.strip().lower())
            if match and any(match.groups()):
                w, d, h, m, s = (int(g or 0) for g in match.groups())
                try:
                    return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)
                except OverflowError:
                    self.bad(node, key, f"expected {what}, got {describe(node)} (too long)")
                    return None
        hint = " (add a unit: m, h or d)" if isinstance(node, ScalarNode) and node.tag == _INT \
            else ""
        self.bad(node, key, f"expected {what}, got {describe(node)}{hint}")
        return None

    def timezone(self, node: Node, key: str) -> str | None:
        name = self.text(node, key, what="an IANA timezone name")
        if name is None:
            return None
        if not known_zone(name):
            self.bad(node, key, f"unknown timezone {name!r}{suggest_zone(name)}; use an IANA "
                     "name such as 'Europe/Berlin' or 'America/New_York'")
            return None
        return name


    # ------------------------------------------------------------------ domain values

    def email(self, node: Node, key: str) -> str | None:
        """A subscriber address, normalized by email-validator (domain lower-cased)."""
        value = self.text(node, key, what="an email address")
        if value is None:
            return None
        try:
            # No SMTPUTF8: the mailer writes ASCII envelopes and headers, so a non-ASCII local
            # part (jösé@...) would fail every send; refuse it here, with the line.
            return normalized_address(value)
        except EmailNotValidError as exc:
            hint = " (put the display name in name:)" if "<" in value else ""
            if not value.partition("@")[0].isascii():
                hint = (" (paper-digest sends without SMTPUTF8, so every send to it would "
                        "fail; use the subscriber's ASCII address)")
            self.bad(node, key, f"invalid email address {value!r}: {str(exc).rstrip('.')}{hint}")
            return None

    def sender(self, node: Node, key: str) -> str | None:
        """A From: value, ``addr`` or ``Name <addr>``, kept as written."""
        value = self.text(node, key, what='an address like "Paper Digest <digest@example.org>"')
        if value is None:
            return None
        # "Name <addr>" or a bare address; parseaddr() silently mangles broken ones.
        address = value[value.rfind("<") + 1:-1] if value.endswith(">") else value
        local, _, domain = address.rpartition("@")
        # digest@localhost is fine for a sender on a test box; email-validator wants a dot.
        check = f"{local}@localhost.localdomain" if domain.lower() == "localhost" else address
        try:
            validate_email(check, check_deliverability=False)
        except EmailNotValidError as exc:
            self.bad(node, key, f"invalid sender address {value!r}: {str(exc).rstrip('.')}")
            return None
        return value

    def schedule(self, node: Node, key: str) -> str | None:
        expr = self.text(node, key, what='a cron expression like "0 7 * * mon-fri"')
        if expr is None:
            return None
        error = _cron_error(expr)
        if error is not None:
            self.bad(node, key, f"invalid cron expression {expr!r}: {error}")
            return None
        return expr

    def path(self, node: Node, key: str, base: Path, *, kind: str) -> Path | None:
        """A path relative to ``base`` (``~`` expanded), checked for ``kind``: ``file`` and
        ``folder`` must exist as such; ``new folder`` and ``new file`` may be missing (they
        are created when needed) but must not exist as the other kind."""
        value = self.text(node, key, what="a path")
        if value is None:
            return None
        path = Path(os.path.normpath(base / Path(value).expanduser()))
        if kind == "file" and not path.is_file():
            self.bad(node, key, f"is a folder, expected a file: {path}" if path.is_dir()
                     else f"no such file: {path}")
        elif kind == "folder" and not path.is_dir():
            self.bad(node, key, f"is a file, expected a folder: {path}" if path.exists()
                     else f"no such folder: {path}")
        elif kind == "new folder" and path.exists() and not path.is_dir():
            self.bad(node, key, f"is a file, expected a folder: {path}")
        elif kind == "new file" and path.is_dir():
            self.bad(node, key, f"is a folder, expected a file: {path}")
        else:
            return path
        return None

    def env_name(self, node: Node, key: str) -> str | None:
        # Never echo the value: a user who pasted the secret itself here must not see it
        # printed (or logged by CI).
        if isinstance(node, ScalarNode) and node.tag == _STR \
                and _ENV_NAME.fullmatch(node.value.strip()):
            return str(node.value).strip()
        self.bad(node, key, "expected the NAME of an environment variable (letters, digits "
                 "and _, e.g. DIGEST_SMTP_PASSWORD), not the secret itself")
        return None

    def url(self, node: Node, key: str, *, schemes: tuple[str, ...]) -> str | None:
        what = "an " + " or ".join(f"{s}://" for s in schemes) + " URL"
        value = self.text(node, key, what=what)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in schemes or not parts.netloc or " " in value:
            self.bad(node, key, f"expected {what}, got {value!r}")
            return None
        return value

    def list_id(self, node: Node, key: str) -> str | None:
        value = self.text(node, key, what="a list id")
        if value is not None and not _LIST_ID.fullmatch(value):
            self.bad(node, key, "expected a list id like paper-digest.example.org (RFC 2919), "
                     f"got {value!r}")
            return None
        return value

    def term(self, node: Node, key: str, what: str = "a search term") -> str | None:
        value = self.text(node, key, what=what)
        problem = None if value is None else _term_problem(value)
        if problem is not None:
            self.bad(node, key, problem)
            return None
        return value

    def terms(self, node: Node, key: str) -> tuple[str, ...] | None:
        """A list of search terms (null or ``[]`` give ``()``)."""
        if is_null(node):
            return ()
        items = self.sequence(node, key, "a list of strings")
        if items is None:
            return None
        terms = [self.term(item, f"{key}[{index}]") for index, item in enumerate(items)]
        return tuple(t for t in terms if t is not None) if None not in terms else None

    def categories(self, node: Node, key: str) -> tuple[str, ...] | None:
        values = self.strings(node, key, what="a list of arXiv categories",
                              item="an arXiv category")
        if values is None:
            return None
        ok = True
        for index, value in enumerate(values):
            if not _CATEGORY.fullmatch(value):
                where = node.value[index] if isinstance(node, SequenceNode) else node
                plain = " ".join(value.casefold().split())
                hint = (f" (bioRxiv subjects are written with underscores: "
                        f"{plain.replace(' ', '_')!r})" if plain in BIORXIV_SUBJECTS else "")
                self.bad(where, f"{key}[{index}]",
                         f"expected an arXiv category like cs.LG or stat.ML, got {value!r}{hint}")
                ok = False
        return values if ok else None

    def boolean(self, node: Node, key: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return bool(_CONSTRUCTOR.construct_yaml_bool(node))
        self.bad(node, key, f"expected true or false, got {describe(node)}")
        return None

    def subjects(self, node: Node, key: str, known: frozenset[str] | None,
                 server: str) -> tuple[str, ...] | None:
        """bioRxiv/medRxiv subject names (any case, spaces or underscores) as ``cell_biology``;
        with ``known``, each must be one of them."""
        values = self.strings(node, key, what=f"a list of {server} subjects",
                              item=f"a {server} subject")
        if values is None:
            return None
        slugs: list[str] = []
        ok = True
        for index, value in enumerate(values):
            slug = "_".join(value.replace("_", " ").casefold().split())
            where = node.value[index] if isinstance(node, SequenceNode) else node
            plain = slug.replace("_", " ")
            if not _SUBJECT.fullmatch(slug) or (known is not None and plain not in known):
                names = sorted(s.replace(" ", "_") for s in known) if known else []
                hint = suggest(slug, names) if names else ""
                listing = f"; the subjects are: {', '.join(names)}" if known and not hint else ""
                self.bad(where, f"{key}[{index}]",
                         f"unknown {server} subject {value!r}{hint}{listing}")
                ok = False
            slugs.append(slug)
        return tuple(slugs) if ok else None


@lru_cache(maxsize=4096)
def _cron_error(expr: str) -> str | None:
    # The zone is checked on its own; a fixed one lets 10k subscribers share this cache.
    try:
        cron_trigger(expr, "UTC")
    except ValueError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=1024)
def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not a valid key ('../x', '')
        return False
    return True


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def suggest_zone(name: str) -> str:
    """The zone the user probably meant: same name in another case, a city without its
    region (``London``, ``new york``), or the closest spelling."""
    names = _zone_names()
    wanted = name.strip().lower().replace(" ", "_")
    guess = names.get(wanted)
    if guess is None:
        cities = sorted(zone for key, zone in names.items() if key.rsplit("/", 1)[-1] == wanted)
        guess = cities[0] if cities else None
    if guess is None:
        match = difflib.get_close_matches(wanted, list(names), n=1, cutoff=0.75)
        guess = names[match[0]] if match else None
    return f" (did you mean {guess!r}?)" if guess else ""
