"""The one atomic writer: whole file or old file, permissions as ``open`` gives, devices and
symlinks kept, private files 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from digest.files import atomic_write, atomic_writer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "[]\n")
        atomic_write(tmp_path / "b.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == 0o644 and mode(tmp_path / "b.bin") == 0o644
    assert (tmp_path / "a.json").read_text() == "[]\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_existing_mode_is_kept_and_private_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write(path, "new")
    assert mode(path) == 0o640 and path.read_text() == "new"
    atomic_write(tmp_path / "key", "secret", private=True)
    assert mode(tmp_path / "key") == 0o600


def test_a_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_symlink_is_kept_and_its_file_updated(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_device_is_written_in_place(tmp_path: Path) -> None:
    atomic_write(Path(os.devnull), "ignored")
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()


def test_summarize_output_is_not_0600(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "abstract": "We propose X. It improves Y by 5%."}\n')
    out = tmp_path / "out.jsonl"
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["summarize", str(source), "--output", str(out)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o644 and '"id": "a"' in out.read_text()
