"""CLI: ``digest fetch``. Thin: parse, call the feeds library, write our normalized JSON list."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import cast

import click
from rich.console import Console

from digest.cli._base import main
from digest.feeds import (
    WALK_BACK_DAYS,
    load_papers,
    merge_papers,
    papers_to_json,
    sample_papers,
    write_papers,
)
from digest.models import FeedSettings, FeedSource, Paper

SOURCES = ("huggingface", "arxiv", "arxiv_rss", "biorxiv", "medrxiv", "file", "sample")
LISTINGS = ("arxiv_rss", "biorxiv", "medrxiv")


@main.command("fetch")
@click.option("--source", "-s", type=click.Choice(SOURCES), default=None,
              help="Where to read papers. Default: file when --path is given, else huggingface.")
@click.option("--date", "-d", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              metavar="YYYY-MM-DD",
              help="The day's list to fetch (UTC). Default: today, walking back over empty days.")
@click.option("--walk-back", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help=f"If the day has no papers, try up to DAYS earlier days. "
                   f"Default: 0 with --date, else {WALK_BACK_DAYS}.")
@click.option("--path", "-p", "paths", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A papers file for --source file (any supported format; repeat to merge).")
@click.option("--category", "categories", multiple=True, metavar="CAT",
              help="arXiv category for --source arxiv or arxiv_rss, or a bioRxiv/medRxiv "
                   "subject such as cell_biology (repeatable). Default for arXiv: "
                   f"{' '.join(FeedSettings().categories)}; for bioRxiv/medRxiv: all.")
@click.option("--cross", is_flag=True,
              help="With --source arxiv_rss (always the latest announcement, whatever --date "
                   "says): also the day's cross-lists from other archives.")
@click.option("--limit", type=click.IntRange(min=1, max=2000), default=None,
              help="At most this many papers from a live source. Default: 100, or 2000 for a "
                   "day's listing (arxiv_rss, biorxiv, medrxiv).")
@click.option("--out", "-o", default="-", show_default=True, metavar="FILE|-",
              help="Write the JSON list here (atomically), or '-' for standard output.")
def fetch(source: str | None, day: datetime | None, walk_back: int | None,
          paths: tuple[Path, ...], categories: tuple[str, ...], cross: bool, limit: int | None,
          out: str) -> None:
    """Fetch papers and save them as our normalized JSON list.

    The output is one JSON object per paper with every field (id, title, abstract, authors,
    url, published, listed, categories, upvotes, source, pdf_url, hf_url, code_url,
    project_url, ai_summary, ai_keywords, comments, feeds); dates are ISO 8601. Any command's
    --papers option reads it back. Papers seen in several inputs appear once (same arXiv id).

    \b
    Examples:
      digest fetch --out papers.json                 # today's Hugging Face list
      digest fetch --source arxiv --date 2026-06-11 --category cs.CL
      digest fetch --source arxiv_rss --category cs.LG --category stat.ML --cross
      digest fetch --source biorxiv --category neuroscience --date 2026-06-30
      digest fetch --path hf.json --path arxiv.xml --out -   # convert and merge files
    """
    source = source or ("file" if paths else "huggingface")
    if paths and source != "file":
        raise click.UsageError("--path is for --source file")
    err = Console(stderr=True)
    papers: tuple[Paper, ...]
    where = source
    if source == "file":
        if not paths:
            raise click.UsageError("--source file needs --path FILE")
        papers = merge_papers(*(load_papers(p) for p in paths))
        where = ", ".join(str(p) for p in paths)
    elif source == "sample":
        papers = sample_papers()
    elif source in LISTINGS:
        from digest.feeds import fetch_one  # httpx only for live sources

        asked = day.date() if day else datetime.now(timezone.utc).date()
        back = walk_back if walk_back is not None else (0 if day else WALK_BACK_DAYS)
        cats = tuple(categories) or (FeedSettings().categories if source == "arxiv_rss" else ())
        feed = FeedSettings(source=cast(FeedSource, source), categories=cats, cross=cross,
                            limit=limit or 2000)
        with err.status(f"fetching {source} papers for {asked.isoformat()}..."):
            papers, report = fetch_one(feed, asked, walk_back=0 if source == "arxiv_rss"
                                       else back)
        where = f"{source} for {report.day.isoformat() if report.day else asked.isoformat()}"
        if report.reason:
            where += f" ({report.reason})"
    else:
        from digest.feeds import fetch_papers  # httpx only for live sources

        wanted: date = day.date() if day else datetime.now(timezone.utc).date()
        back = walk_back if walk_back is not None else (0 if day else WALK_BACK_DAYS)
        with err.status(f"fetching {source} papers for {wanted.isoformat()}..."):
            fetched = fetch_papers(source, wanted, walk_back=back, limit=limit or 100,
                                   categories=categories or FeedSettings().categories)
        papers = fetched.papers
        where = f"{source} for {fetched.day.isoformat()}"
    if out == "-":
        click.echo(papers_to_json(papers), nl=False)
    else:
        write_papers(papers, Path(out))
    click.echo(f"{len(papers)} papers from {where}" + ("" if out == "-" else f" -> {out}"),
               err=True)
