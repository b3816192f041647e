"""CLI: ``digest summarize [FILE|-]``. Thin: parse JSON lines, call ``summarize``, print.

Input: one JSON object per line, ``{"id": ..., "abstract": ..., "title": ...}`` (title optional;
blank lines skipped). Output: one line per input object, in the same order,
``{"id": ..., "claims": [...]}``.

Every input line is checked before anything is written, so a malformed line (bad JSON, not an
object, a missing or non-string field) stops the command with ``FILE:LINE: message`` on stderr
and exit 1, and leaves no partial output: stdout gets nothing, and ``--output FILE`` is not
created or touched (it is written to a temporary file next to it and renamed at the end).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click

from digest.cli._base import main
from digest.errors import InputError
from digest.files import atomic_writer
from digest.models import Paper
from digest.summarize import summarize as summarize_paper
from digest.text import scrub_surrogates


def read_papers(lines: Iterable[bytes | str], source: str) -> list[Paper]:
    """Papers from JSON lines; the first bad line raises ``InputError`` with its number."""
    papers: list[Paper] = []
    for number, raw in enumerate(lines, start=1):
        try:  # decoded line by line so a bad byte is reported on its own line
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise InputError(source, "not UTF-8 text", number) from None
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(source, f"not valid JSON ({exc.msg}, column {exc.colno})",
                             number) from None
        except RecursionError:
            raise InputError(source, "not valid JSON (nested too deeply)", number) from None
        if not isinstance(item, dict):
            raise InputError(source, f"expected a JSON object, got {type(item).__name__}", number)
        paper_id = item.get("id")
        if isinstance(paper_id, int) and not isinstance(paper_id, bool):
            paper_id = str(paper_id)
        if not isinstance(paper_id, str) or not paper_id.strip():
            raise InputError(source, "id: missing or not a string", number)
        for key in ("abstract", "title"):
            if key == "abstract" and key not in item:
                raise InputError(source, "abstract: missing", number)
            if key in item and not isinstance(item[key], str):
                raise InputError(source, f"{key}: expected a string, got "
                                 f"{type(item[key]).__name__}", number)
        # an escaped half surrogate pair ("\ud800") would make the output unwritable
        papers.append(Paper(id=scrub_surrogates(paper_id),
                            title=scrub_surrogates(item.get("title", "")),
                            abstract=scrub_surrogates(item["abstract"])))
    return papers


def _write(papers: list[Paper], budget: int, out: IO[str]) -> None:
    for paper in papers:
        claims = list(summarize_paper(paper, budget=budget).claims)
        out.write(json.dumps({"id": paper.id, "claims": claims}, ensure_ascii=False) + "\n")


@main.command(epilog="""\b
Examples:
  digest summarize papers.jsonl
  echo '{"id": "1", "abstract": "We propose X. X is 2x faster."}' | digest summarize -
  digest summarize papers.jsonl --budget 280 --output claims.jsonl""")
@click.argument("source", metavar="[FILE|-]", default="-",
                type=click.File("rb"))
@click.option("--budget", type=click.IntRange(min=40), default=350, show_default=True,
              help="Characters for all of a paper's claims together.")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Write here (atomically) instead of stdout.")
def summarize(source: IO[bytes], budget: int, output: Path | None) -> None:
    """Print each paper's key claims: the headline, then up to two results with numbers.

    Reads JSON lines {"id", "abstract", "title"?} from FILE (or stdin for - or no FILE) and
    writes JSON lines {"id", "claims": [...]} in the same order. A malformed line stops the
    command before anything is written, with its line number.
    """
    name = str(getattr(source, "name", "-"))
    name = "<stdin>" if name in ("<stdin>", "-") or isinstance(getattr(source, "name", None),
                                                                int) else name
    papers = read_papers(source, name)
    if output is None:
        _write(papers, budget, sys.stdout)
        return
    try:
        with atomic_writer(output) as out:
            _write(papers, budget, out)
    except OSError as exc:
        raise InputError(output, f"cannot write here: {exc.strerror or exc}") from None
