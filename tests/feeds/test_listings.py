"""The listing parsers on the recordings: arXiv RSS announce types and days, bioRxiv/medRxiv
records (one per version) to papers (one per DOI), and dates read as dates."""

from __future__ import annotations

import json
from datetime import date

import paths
import pytest

from digest.errors import FeedError
from digest.feeds._rss import parse_listing
from digest.feeds._rxiv import latest, parse_day, parse_details

FIXTURES = paths.FIXTURES


def test_rss_listing_counts_what_it_leaves_out() -> None:
    listing = parse_listing((FIXTURES / "arxiv_rss.xml").read_bytes(), "rss")
    assert listing.day == date(2026, 9, 24)
    assert (len(listing.papers), listing.crosses, listing.replaced) == (2, 1, 1)
    assert listing.skip_days == ("Sunday", "Saturday")
    empty = parse_listing((FIXTURES / "arxiv_rss_physics_2025-12-31_empty.xml").read_bytes(), "x")
    assert empty.papers == () and empty.day == date(2025, 12, 31)


def test_rss_that_is_not_rss_or_is_cut() -> None:
    with pytest.raises(FeedError, match="not an RSS feed"):
        parse_listing((FIXTURES / "arxiv_api.atom.xml").read_bytes(), "x")
    with pytest.raises(FeedError, match="malformed XML"):
        parse_listing((FIXTURES / "arxiv_rss.xml").read_bytes()[:3000], "x")


def test_dates_are_dates_not_strings() -> None:
    # TideDra/zotero-arxiv-daily #272: "2026-6-30" sorted after "2026-07-15" as a string
    assert "2026-6-30" > "2026-07-15"
    assert parse_day("2026-6-30") < parse_day("2026-07-15")
    assert parse_day(" 2026-06-30 ") == date(2026, 6, 30)
    with pytest.raises(ValueError):
        parse_day("30/06/2026")


def test_versions_become_one_paper_with_the_latest_text() -> None:
    data = json.loads((FIXTURES / "biorxiv_details_doi_10.1101_2022.09.11.507474.json")
                      .read_bytes())
    page = parse_details(data, "x")
    assert [r.version for r in page.records] == [1, 2] and page.total is None
    (paper,) = latest(page.records)
    assert paper.id == "10.1101/2022.09.11.507474" and paper.listed == date(2023, 2, 4)
    assert "Littner, E." in paper.authors  # v2's authors
    assert latest(reversed(page.records)) == (paper,)  # whatever the order, v2 wins
    only_new = latest(page.records[1:], revisions=False)  # v2 alone: a revision, left out
    assert only_new == ()


def test_details_headers_numbers_or_strings_and_statuses() -> None:
    data = json.loads((FIXTURES / "medrxiv_details_2026-09-15.json").read_bytes())
    page = parse_details(data, "x")
    assert (page.status, page.count, page.total, len(page.records)) == ("ok", 72, 72, 3)
    assert latest(page.records, subjects=("Cardiovascular Medicine",))[0].categories == (
        "cardiovascular_medicine",)
    none = parse_details(json.loads((FIXTURES / "biorxiv_details_no_posts_found.json")
                                    .read_bytes()), "x")
    assert (none.status, none.records) == ("no posts found", ())
    with pytest.raises(FeedError, match="the API answered: Server not recognized"):
        parse_details({"messages": [{"status": "Server not recognized"}], "collection": []}, "x")
