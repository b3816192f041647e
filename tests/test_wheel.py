"""The built wheel carries the stock templates and the sample data, and a plain (non-editable)
install finds them: build the wheel, look inside, then import the package from the extracted
wheel in a fresh interpreter (no source tree on its path) and render an email with it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ("digest.mjml", "_base.mjml", "_paper.mjml", "digest.txt", "subject.txt")


def test_wheel_ships_templates_and_data_and_they_are_found(tmp_path: Path) -> None:
    # --no-isolation: use the hatchling already installed, never the network
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                    "--outdir", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("paper_digest-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in TEMPLATES:
            assert f"digest/templates/{name}" in names
        assert "digest/data/sample_papers.json" in names
        assert "digest/data/vocabulary.json" in names  # the selection's vocabulary
        assert "digest/render/__init__.py" in names and "digest/render/_shapes.py" in names
        # Alembic finds the ledger migrations by path: they must ship, though not a package
        assert "digest/ledger/migrations/env.py" in names
        assert "digest/ledger/migrations/versions/0001_baseline.py" in names
        assert "digest/ledger/migrations/sqlite_head.sql" in names  # a new ledger's schema
        site = tmp_path / "site"
        zf.extractall(site)

    script = textwrap.dedent("""
        import sys
        from datetime import date, datetime, timezone
        from pathlib import Path
        import digest, digest.render as r
        from digest.models import (Digest, DigestItem, Paper, Pick, Rank, Reason, Subscriber,
                                   Summary, Topic)
        site = Path(sys.argv[1])
        assert Path(digest.__file__).is_relative_to(site), digest.__file__
        assert r.stock_templates() == site / "digest" / "templates", r.stock_templates()
        paper = Paper(id="2411.01234", title="Packaged Paper", abstract="x")
        item = DigestItem(Pick(paper, ("T",), (Reason("T", "packaged", "title"),), Rank(1, 1, 0)),
                          Summary(paper.id, paper.title, "It works."))
        sub = Subscriber("a@example.org", None, "UTC", "0 7 * * *", 5, (Topic("T"),))
        d = Digest(sub, date(2026, 11, 25), datetime(2026, 11, 25, tzinfo=timezone.utc),
                   (item,), unsubscribe_mailto="mailto:d@example.org")
        out = r.Renderer().render(d)
        assert "Packaged Paper" in out.html and out.subject.startswith("1 new paper on T")
        from digest.feeds import sample_papers
        assert len(sample_papers()) == 81
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install's .pth entry
    run = subprocess.run([sys.executable, "-c", script, str(site)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
