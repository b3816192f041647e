"""Feeds: every recorded fixture, the error fixtures, bad inputs, dedupe, ids, the normalized
JSON round trip, the bundled sample, papers_for on files, and the ``digest fetch`` CLI.
Live HTTP paths are in test_feeds_http.py."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
from datetime import date, datetime, timezone
from pathlib import Path

import paths
import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.errors import FeedError
from digest.feeds import (
    load_papers,
    merge_papers,
    papers_for,
    sample_papers,
    write_papers,
)
from digest.feeds._parse import arxiv_id, parse_payload, title_id
from digest.models import FeedSettings, Paper, Settings

REPO = Path(__file__).resolve().parents[2]
FIXTURES = paths.FIXTURES
SEED = paths.SEED
OURS = paths.HANDMADE
UTC = timezone.utc

# every recorded fixture that holds papers, with how many it yields
PAPER_FIXTURES = {
    "hf_daily_papers.json": 9,
    "hf_daily_papers_2026-08-03_no_ai_fields.json": 3,
    "hf_daily_papers_2024-10-25_legacy.json": 2,
    "arxiv_api.atom.xml": 5,
    "arxiv_api_search_testing_m10.atom.xml": 10,
    "arxiv_api_oldstyle_id_affiliation.atom.xml": 1,
    "arxiv_rss.xml": 4,
    "arxiv_rss_cs.LG.xml": 3,
    "semantic_scholar_search.json": 5,
    "semantic_scholar_batch.json": 2,  # 3 withheld abstracts and one null are skipped
    "biorxiv_details_doi_10.1101_2022.09.11.507474.json": 1,  # two versions, one paper
    "medrxiv_details_2026-09-15.json": 3,
}


def by_id(papers: tuple[Paper, ...]) -> dict[str, Paper]:
    return {p.id: p for p in papers}


def test_the_fixture_list_covers_every_recorded_file() -> None:
    recorded = {p.name for p in FIXTURES.iterdir() if p.suffix in (".json", ".xml")}
    errors = {"arxiv_api_empty.atom.xml", "arxiv_api_error_400.atom.xml",
              "arxiv_rss_physics_2025-12-31_empty.xml", "biorxiv_details_no_posts_found.json"}
    assert recorded == set(PAPER_FIXTURES) | errors


@pytest.mark.parametrize("name", sorted(PAPER_FIXTURES))
def test_every_fixture_loads_with_titles_abstracts_and_ids(name: str) -> None:
    papers = load_papers(FIXTURES / name)
    assert len(papers) == PAPER_FIXTURES[name]
    for p in papers:
        assert p.id and p.title and p.abstract
        assert not re.search(r"v\d+$", p.id), p.id  # never a version
        assert "\n" not in p.title and "  " not in p.title
        assert "\n" not in p.abstract and p.abstract == p.abstract.strip()
        assert p.published is None or p.published.tzinfo is not None


def test_hf_2026_fields_come_from_the_right_places() -> None:
    papers = by_id(load_papers(FIXTURES / "hf_daily_papers.json"))
    evo = papers["2606.13681"]
    assert evo.upvotes == 118 and evo.comments == 3  # paper.upvotes, top-level numComments
    # the list day is paper.submittedOnDailyAt; the top-level publishedAt (2026-06-10T20:00Z,
    # US Eastern labelled Z) must not leak into either date
    assert evo.listed == date(2026, 6, 12)
    assert evo.published == datetime(2026, 6, 11, tzinfo=UTC)
    assert evo.code_url == "https://github.com/Aiden0526/EvoArena"
    assert evo.project_url == "https://aiden0526.github.io/EvoArena/"
    assert evo.ai_summary and evo.ai_summary.startswith("EvoArena benchmark")
    assert evo.ai_keywords[:3] == ("large language model agents", "EvoArena", "EvoMem")
    assert evo.url == "https://arxiv.org/abs/2606.13681"
    assert evo.pdf_url == "https://arxiv.org/pdf/2606.13681"
    assert evo.hf_url == "https://huggingface.co/papers/2606.13681"
    assert evo.source == "huggingface"
    # a hidden author only hid the paper from their HF profile: still an author, in order
    z = papers["2606.12575"]
    assert z.authors[3] == "Dengyang Jiang" and len(z.authors) == 10
    assert papers["2606.00467"].upvotes == 0 and papers["2606.00467"].code_url is None


def test_hf_without_ai_fields() -> None:
    papers = by_id(load_papers(FIXTURES / "hf_daily_papers_2026-08-03_no_ai_fields.json"))
    assert all(p.ai_summary is None and p.ai_keywords == () for p in papers.values())
    assert papers["2607.28229"].published == datetime(2026, 7, 30, 14, 0, 27, tzinfo=UTC)
    assert {p.listed for p in papers.values()} == {date(2026, 8, 3)}


def test_hf_2024_legacy_shape() -> None:
    papers = by_id(load_papers(FIXTURES / "hf_daily_papers_2024-10-25_legacy.json"))
    p = papers["2410.17243"]
    assert p.title == ("Breaking the Memory Barrier: Near Infinite Batch Size Scaling for "
                       "Contrastive Loss")
    assert p.abstract.startswith("Contrastive loss is a powerful approach for representation "
                                 "learning, where larger batch sizes")
    assert p.upvotes == 64 and p.comments == 3
    assert p.listed is None  # no submittedOnDailyAt, and top-level publishedAt is never used
    fetched = parse_payload((FIXTURES / "hf_daily_papers_2024-10-25_legacy.json").read_bytes(),
                            "live", listed=date(2024, 10, 25))
    assert {q.listed for q in fetched} == {date(2024, 10, 25)}


def test_arxiv_atom_entries() -> None:
    papers = by_id(load_papers(FIXTURES / "arxiv_api.atom.xml"))
    mana = papers["2606.13677"]
    assert mana.categories == ("cs.RO", "cs.AI", "cs.CV", "cs.LG")  # primary first
    assert mana.pdf_url == "https://arxiv.org/pdf/2606.13677"
    assert mana.url == "https://arxiv.org/abs/2606.13677"
    assert mana.published == datetime(2026, 6, 11, 17, 59, 49, tzinfo=UTC)
    assert mana.authors == ("Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu")
    assert "(<1 minute per tool)" in mana.abstract  # &lt; decoded
    assert mana.project_url == "https://zhaohengyin.github.io/mana"
    assert papers["2606.13591"].categories[0] == "cs.AI"  # cross-listed: primary differs
    gf = papers["2606.13501"]
    assert "by up to 6.01$\\times$, reduces" in gf.abstract  # LaTeX kept, `\n  ` folded
    assert gf.source == "arxiv"


def test_arxiv_versions_and_old_style_ids() -> None:
    testing = by_id(load_papers(FIXTURES / "arxiv_api_search_testing_m10.atom.xml"))
    assert "2005.14124" in testing and "2204.08348" in testing  # from v2 / v3 entries
    old = load_papers(FIXTURES / "arxiv_api_oldstyle_id_affiliation.atom.xml")[0]
    assert old.id == "astro-ph/0601001"
    assert old.url == "https://arxiv.org/abs/astro-ph/0601001"
    assert old.abstract.startswith("We derive the frequencies")
    assert old.authors[0] == "Andrew Gould" and old.categories == ("astro-ph",)


def test_arxiv_empty_feed_is_zero_papers() -> None:
    assert load_papers(FIXTURES / "arxiv_api_empty.atom.xml") == ()


def test_arxiv_error_entry_is_a_feed_error_with_arxivs_message() -> None:
    path = FIXTURES / "arxiv_api_error_400.atom.xml"
    with pytest.raises(FeedError) as err:
        load_papers(path)
    assert str(err.value) == f"{path}: arXiv API error: incorrect id format for abc"


def test_arxiv_rss() -> None:
    papers = load_papers(FIXTURES / "arxiv_rss.xml")
    assert [p.id for p in papers] == ["2609.26811", "2609.26820", "2205.06398", "2009.13987"]
    first, _, cross, replaced = papers
    assert first.abstract.startswith("Local learning trains each layer")  # prefix stripped
    assert "Announce Type" not in first.abstract and first.authors == ("Fabien Polly",)
    assert cross.authors == ("Pritam Dey", "Zhengwu Zhang", "David B. Dunson")
    assert cross.categories == ("stat.ME", "stat.AP", "stat.ML")
    assert replaced.listed == date(2026, 9, 24) and replaced.published is None
    assert replaced.source == "arxiv-rss" and replaced.url == "https://arxiv.org/abs/2009.13987"


def test_semantic_scholar_is_read_and_withheld_abstracts_are_skipped(
        caplog: pytest.LogCaptureFixture) -> None:
    search = load_papers(FIXTURES / "semantic_scholar_search.json")
    assert search[0].id == "2103.14030" and search[0].source == "semantic-scholar"
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        batch = load_papers(FIXTURES / "semantic_scholar_batch.json")
    assert all(p.id.startswith("t-") for p in batch)
    skipped = [r.getMessage() for r in caplog.records]
    assert [re.findall(r"item \[(\d+)\]", m) for m in skipped] == [["0"], ["1"], ["3"], ["5"]]
    assert "missing 'abstract'" in skipped[0]


def test_seed_list_gets_stable_title_ids() -> None:
    papers = load_papers(SEED)
    assert len(papers) == 81
    assert all(re.fullmatch(r"t-[0-9a-f]{12}", p.id) for p in papers)
    assert [p.id for p in load_papers(SEED)] == [p.id for p in papers]
    assert papers[0].id == title_id(papers[0].title)


def test_title_ids_ignore_case_and_wrapping_but_not_words() -> None:
    assert title_id("Attention Is All\n  You Need") == title_id("attention is all you need")
    assert title_id("Attention Is All You Need") != title_id("Attention Is Not All You Need")
    assert title_id("x") == "t-11f6ad8ec52a"  # pinned: ids are stored in ledgers, never change


@pytest.mark.parametrize("raw, want", [
    ("2606.13677", "2606.13677"), ("2606.13677v12", "2606.13677"),
    ("http://arxiv.org/abs/2606.13677v1", "2606.13677"), ("arXiv:0704.0001", "0704.0001"),
    ("https://arxiv.org/pdf/2606.13677v2.pdf", "2606.13677"),
    ("astro-ph/0601001v1", "astro-ph/0601001"), ("math.GT/0309136", "math.GT/0309136"),
    ("t-0123456789ab", None), ("not an id", None), ("2606.1", None)])
def test_arxiv_id(raw: str, want: str | None) -> None:
    assert arxiv_id(raw) == want


def test_one_bad_item_is_skipped_with_a_warning_naming_it(
        caplog: pytest.LogCaptureFixture) -> None:
    path = OURS / "one_bad_item.json"
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        papers = load_papers(path)
    assert [p.title for p in papers] == ["A First Paper", "A Third Paper"]
    assert papers[1].id == "2401.00001" and papers[1].abstract == "Wrapped abstract text."
    assert papers[1].upvotes == 4 and papers[0].source == "file"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: item [1] skipped: missing 'abstract'",
        f"{path}: item [3] skipped: 'upvotes' must be int, got \"many\""]


def test_one_bad_hf_item_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    path = OURS / "hf_one_bad_item.json"
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        papers = load_papers(path)
    assert [p.id for p in papers] == ["2606.00001"]
    assert papers[0].listed == date(2026, 6, 12)
    assert caplog.records[0].getMessage() == f"{path}: item [1] skipped: missing 'paper.id'"


@pytest.mark.parametrize("name, message", [
    ("malformed.json", "malformed JSON at line 2, column 35: Unterminated string starting at"),
    ("malformed.xml", "malformed XML at line 5, column 1: no element found"),
    ("not_a_feed.xml", "unrecognized format: XML root <html> is neither an arXiv Atom feed "
                       "nor RSS"),
    ("all_bad.json", "no usable papers: item [0]: missing 'abstract' (and 2 more)"),
])
def test_bad_files_raise_feed_errors_naming_the_file(name: str, message: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = OURS / name
    with pytest.raises(FeedError) as err:
        load_papers(path)
    assert str(err.value).startswith(f"{path}: {message}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("payload, message", [
    (b"", "empty file"), (b"   \n", "empty file"),
    (b'{"error": "Invalid date"}', "the feed returned an error: Invalid date"),
    (b'{"title": "x"}', "unrecognized format: expected a JSON list of papers (got an object"),
    (b'"just a string"', "unrecognized format"), (b"title,abstract\n", "unrecognized format"),
    (b'[{"title": "\xff"}]', "not UTF-8 text"),
])
def test_unreadable_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=re.escape(f"where.json: {message}")):
        parse_payload(payload, "where.json")


def test_missing_file_is_a_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="nope.json: cannot read: No such file"):
        load_papers(tmp_path / "nope.json")


def test_dedupe_across_huggingface_and_arxiv_keeps_the_richer_record() -> None:
    hf = load_papers(FIXTURES / "hf_daily_papers.json")
    arxiv = load_papers(OURS / "arxiv_overlap.atom.xml")
    merged = merge_papers(hf, arxiv)
    assert len(merged) == len(hf)  # the overlap is one paper, not two
    msa = by_id(merged)["2606.13392"]
    assert msa.source == "huggingface" and msa.upvotes == 103  # HF is the richer record
    assert msa.title == "MiniMax Sparse Attention"
    assert msa.categories == ("cs.LG", "cs.CL")  # filled from arXiv
    assert msa.published == datetime(2026, 6, 11, 13, 45, 10, tzinfo=UTC)  # arXiv's precise time
    assert msa.listed == date(2026, 6, 12) and msa.ai_summary
    assert merge_papers(arxiv, hf) == merge_papers(arxiv, hf)
    assert by_id(merge_papers(arxiv, hf))["2606.13392"] == msa  # order does not change the record


def test_title_only_copy_merges_into_the_arxiv_record() -> None:
    merged = merge_papers(load_papers(OURS / "title_only.json"),
                          load_papers(OURS / "arxiv_overlap.atom.xml"))
    assert [p.id for p in merged] == ["2606.13392"]
    assert merged[0].categories == ("cs.LG", "cs.CL")


def test_normalized_json_round_trips_every_field(tmp_path: Path) -> None:
    papers = merge_papers(load_papers(FIXTURES / "hf_daily_papers.json"),
                          load_papers(FIXTURES / "arxiv_api.atom.xml"),
                          load_papers(FIXTURES / "arxiv_rss.xml"), load_papers(SEED))
    out = tmp_path / "papers.json"
    write_papers(papers, out)
    assert load_papers(out) == papers
    first = json.loads(out.read_text(encoding="utf-8"))[0]
    assert list(first) == [f for f in Paper.__dataclass_fields__]  # every field, in order
    assert first["published"] == "2026-05-30T00:00:00Z" and first["listed"] == "2026-06-12"


def test_write_papers_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "papers.json"
    out.write_text("old", encoding="utf-8")
    write_papers(sample_papers()[:3], out)
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["papers.json"]
    out.chmod(0o640)
    write_papers(sample_papers()[:1], out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the old file's mode, not mkstemp's 0600
    fresh = tmp_path / "fresh.json"
    write_papers(sample_papers()[:1], fresh)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # like open(), not 0600
    with pytest.raises(FeedError, match="cannot write"):
        write_papers(sample_papers(), tmp_path / "missing-dir" / "papers.json")


def test_write_papers_into_a_fifo_writes_through_it_and_keeps_it(tmp_path: Path) -> None:
    # a device or FIFO (/dev/null, /dev/stdout) must be written to, never renamed over
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_papers(sample_papers()[:2], fifo)
    reader.join(timeout=10)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert len(json.loads(received[0])) == 2


def test_write_papers_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("[]", encoding="utf-8")
    link = tmp_path / "papers.json"
    link.symlink_to(real)
    write_papers(sample_papers()[:2], link)
    assert link.is_symlink() and len(load_papers(real)) == 2


def test_bundled_sample_is_the_seed_list_with_real_ids_links_and_authors() -> None:
    sample = sample_papers()
    seed = load_papers(SEED)
    assert [(p.title, p.abstract) for p in sample] == [(p.title, p.abstract) for p in seed]
    assert len(sample) == 81 and {p.source for p in sample} == {"sample"}
    for p in sample:
        assert re.fullmatch(r"\d{4}\.\d{4,5}", p.id), p.id
        assert p.url == f"https://arxiv.org/abs/{p.id}" and p.pdf_url == f"https://arxiv.org/pdf/{p.id}"
        assert p.hf_url == f"https://huggingface.co/papers/{p.id}"
        assert p.authors, p.id
    assert sum(p.published is not None for p in sample) >= 50
    assert sum(bool(p.categories) for p in sample) >= 30


def test_papers_for_files_and_sample(tmp_path: Path) -> None:
    now = datetime(2026, 6, 12, 6, 0, tzinfo=UTC)
    hf = FIXTURES / "hf_daily_papers.json"
    assert papers_for(Settings(), hf, now) == load_papers(hf)  # --papers wins
    assert papers_for(Settings(), None, now) == sample_papers()  # the default feed
    settings = Settings(feed=FeedSettings(source="file", path=FIXTURES / "arxiv_rss.xml"))
    assert len(papers_for(settings, None, now)) == 4
    with pytest.raises(FeedError, match="needs a path"):
        papers_for(Settings(feed=FeedSettings(source="file")), None, now)


# --------------------------------------------------------------------------- the CLI


def test_cli_fetch_file_to_stdout() -> None:
    result = CliRunner().invoke(
        main, ["fetch", "--source", "file", "--path", str(FIXTURES / "hf_daily_papers.json"),
               "--out", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data) == 9 and data[0]["id"] == "2606.00467"
    expected = load_papers(FIXTURES / "hf_daily_papers.json")
    assert parse_payload(result.stdout.encode(), "-") == expected
    assert "9 papers from" in result.stderr


def test_cli_fetch_merges_files_into_an_out_file(tmp_path: Path) -> None:
    out = tmp_path / "papers.json"
    result = CliRunner().invoke(main, ["fetch", "-p", str(FIXTURES / "hf_daily_papers.json"),
                                       "-p", str(OURS / "arxiv_overlap.atom.xml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(load_papers(out)) == 9
    assert result.stderr.strip().endswith(f"-> {out}")


def test_cli_fetch_sample() -> None:
    result = CliRunner().invoke(main, ["fetch", "--source", "sample"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 81


def test_cli_fetch_bad_file_is_one_line_and_exit_1() -> None:
    result = CliRunner().invoke(main, ["fetch", "--path", str(OURS / "malformed.json")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {OURS / 'malformed.json'}: malformed JSON at line 2")
    assert "Traceback" not in result.output and result.stdout == ""


def test_cli_fetch_file_without_path_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["fetch", "--source", "file"])
    assert result.exit_code == 2 and "--source file needs --path FILE" in result.stderr


def test_cli_fetch_path_with_a_live_source_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["fetch", "--source", "arxiv", "--path", str(SEED)])
    assert result.exit_code == 2 and "--path is for --source file" in result.stderr


def test_cli_fetch_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["fetch", "--help"])
    assert result.exit_code == 0 and "digest fetch --source arxiv --date" in result.stdout


def test_a_lone_surrogate_in_a_title_without_id_does_not_abort_the_feed() -> None:
    """JSON may escape half of a surrogate pair ("\\ud800"): Python then holds a string that
    cannot be encoded. The paper is kept (with U+FFFD in its place), its id derived."""
    payload = json.dumps([
        {"title": "Broken \ud800 title", "abstract": "We study \udfff things."},
        {"id": "2611.00002", "title": "Fine", "abstract": "We are fine."}]).encode("ascii")
    papers = by_id(parse_payload(payload, "s.json"))
    (derived,) = [p for pid, p in papers.items() if pid.startswith("t-")]
    assert derived.title == "Broken \ufffd title" and "\ufffd" in derived.abstract
    derived.title.encode("utf-8")  # never raises downstream
    assert derived.id == title_id("Broken \ufffd title")
    assert "2611.00002" in papers


def test_deeply_nested_json_is_a_feed_error_not_a_recursion_error() -> None:
    payload = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(FeedError, match="nested too deeply"):
        parse_payload(payload, "deep.json")
