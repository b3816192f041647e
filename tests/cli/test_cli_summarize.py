"""``digest summarize``: JSON lines in, JSON lines out, errors with line numbers, exit codes."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from click.testing import CliRunner

from digest.cli import main
from digest.models import Paper
from digest.summarize import summarize

SEED: list[dict[str, str]] = json.loads(
    resources.files("digest").joinpath("data", "sample_papers.json").read_text("utf-8"))


def seed_lines(n: int, *, titles: bool = True) -> str:
    rows = [{"id": f"seed-{i}", "abstract": p["abstract"], **({"title": p["title"]} if titles
                                                              else {})}
            for i, p in enumerate(SEED[:n])]
    return "".join(json.dumps(r) + "\n" for r in rows)


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["summarize", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_file_in_stdout_out_in_order(tmp_path: Path) -> None:
    source = tmp_path / "papers.jsonl"
    source.write_text(seed_lines(8), "utf-8")
    code, out, err = run(str(source))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [f"seed-{i}" for i in range(8)]
    assert set(rows[0]) == {"id", "claims"}
    for i, row in enumerate(rows):
        expected = summarize(Paper(id=f"seed-{i}", title=SEED[i]["title"],
                                   abstract=SEED[i]["abstract"]))
        assert row["claims"] == list(expected.claims)
        assert 1 <= len(row["claims"]) <= 3


def test_stdin_with_dash_and_by_default_title_optional() -> None:
    lines = seed_lines(3, titles=False)
    code, out, _ = run("-", stdin=lines)
    assert code == 0
    assert len(out.splitlines()) == 3
    code2, out2, _ = run(stdin=lines)
    assert code2 == 0 and out2 == out


def test_budget_option() -> None:
    code, out, _ = run("--budget", "120", stdin=seed_lines(10))
    assert code == 0
    for line in out.splitlines():
        assert sum(len(c) for c in json.loads(line)["claims"]) <= 120
    code, _, err = run("--budget", "5", stdin=seed_lines(1))
    assert code == 2 and "--budget" in err


def test_unicode_kept_readable_and_empty_abstract() -> None:
    stdin = (json.dumps({"id": "a", "abstract": r"We propose a Fr\'echet method."}) + "\n\n"
             + json.dumps({"id": 7, "abstract": ""}) + "\n")
    code, out, _ = run(stdin=stdin)
    assert code == 0
    assert out == ('{"id": "a", "claims": ["We propose a Fréchet method."]}\n'
                   '{"id": "7", "claims": []}\n')


def test_malformed_line_names_its_number_and_writes_nothing(tmp_path: Path) -> None:
    good = seed_lines(2)
    cases = {
        "{not json\n": "not valid JSON",
        "[1, 2]\n": "expected a JSON object, got list",
        '{"abstract": "x"}\n': "id: missing or not a string",
        '{"id": "x"}\n': "abstract: missing",
        '{"id": "x", "abstract": 3}\n': "abstract: expected a string, got int",
        '{"id": "x", "abstract": "y", "title": null}\n': "title: expected a string, got NoneType",
    }
    for bad, message in cases.items():
        source = tmp_path / "papers.jsonl"
        source.write_text(good + "\n" + bad + good, "utf-8")  # the bad line is line 4
        code, out, err = run(str(source))
        assert code == 1
        assert out == ""  # every line is checked before the first is written
        assert err == f"error: {source}:4: {message}" + err.split(message, 1)[1]
        assert "Traceback" not in err

        target = tmp_path / "claims.jsonl"
        code, _, err = run(str(source), "--output", str(target))
        assert code == 1 and not target.exists()
        assert list(tmp_path.iterdir()) == [source]  # no temporary file left behind


def test_stdin_error_is_named_stdin() -> None:
    code, out, err = run(stdin='{"id": "1", "abstract": "A b c d."}\n{oops\n')
    assert (code, out) == (1, "")
    assert err.startswith("error: <stdin>:2: not valid JSON")


def test_output_file_is_replaced_atomically(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(seed_lines(4), "utf-8")
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", "utf-8")
    code, out, _ = run(str(source), "-o", str(target))
    assert code == 0 and out == ""
    assert [json.loads(line)["id"] for line in target.read_text("utf-8").splitlines()] == \
        ["seed-0", "seed-1", "seed-2", "seed-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_unwritable_output_and_missing_input(tmp_path: Path) -> None:
    code, _, err = run("-o", str(tmp_path / "no" / "such" / "dir.jsonl"), stdin=seed_lines(1))
    assert code == 1 and "cannot write here" in err and "Traceback" not in err
    code, _, err = run(str(tmp_path / "missing.jsonl"))
    assert code == 2 and "No such file or directory" in err


def test_not_utf8(tmp_path: Path) -> None:
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(b'{"id": "1", "abstract": "ok"}\n{"id": "2", "abstract": "caf\xe9"}\n')
    code, out, err = run(str(source))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {source}:2: not UTF-8 text")


def test_help_has_an_example() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "digest summarize papers.jsonl" in out


def test_deeply_nested_json_line_is_a_clean_error() -> None:
    code, out, err = run("-", stdin='{"id": "x", "abstract": ' + "[" * 100_000 + "\n")
    assert code == 1 and "nested too deeply" in err and "Traceback" not in err, err
    line = json.dumps({"id": "x", "title": "Lone \ud800", "abstract": "We test \udfff it."})
    code, out, err = run("-", stdin=line + "\n")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["id"] == "x"
