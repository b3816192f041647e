"""SpamAssassin (Debian's package, rules as shipped, local tests only: ``spamassassin -t -L``)
on the digests ``digest send`` really writes for the example config, DKIM-signed: each scores at
most 0.5 and no rule adds points (rules that only inform, at 0.0 or below, may hit).

Skipped only when SpamAssassin is missing and CI is not "true" (``scripts/setup-dev`` installs
it when run as root, so in CI this must run)."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.delivery import generate_key

SPAMASSASSIN = shutil.which("spamassassin")
if SPAMASSASSIN is None and os.environ.get("CI") != "true":
    pytest.skip("spamassassin is not installed (scripts/setup-dev installs it as root)",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.M)


def _report(message: bytes, home: Path) -> tuple[float, dict[str, float], str]:
    assert SPAMASSASSIN is not None, "spamassassin must be installed in CI (scripts/setup-dev)"
    out = subprocess.run([SPAMASSASSIN, "-t", "-L"], input=message, capture_output=True,
                         timeout=120, check=True, env={**os.environ, "HOME": str(home)}).stdout
    text = out.decode("utf-8", "replace")
    details = text.split("Content analysis details:", 1)
    assert len(details) == 2, text[-2000:]
    found = re.match(r"\s*\((-?\d+(?:\.\d+)?) points", details[1])
    assert found, details[1][:500]
    score = float(found.group(1))
    rules = {name: float(points) for points, name in _RULE.findall(details[1])}
    return score, rules, details[1]


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The example config's digests as ``digest send`` writes them into the outbox, signed."""
    folder = tmp_path_factory.mktemp("spam")
    (folder / "dkim.private").write_bytes(generate_key("rsa").private_key)
    text = (ROOT / "subscribers.example.yaml").read_text(encoding="utf-8")
    text = text.replace("settings:\n", "settings:\n  dkim: {domain: example.org, selector: s1, "
                        "private_key_file: dkim.private}\n", 1)
    config = folder / "subscribers.yaml"
    config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["send", "--config", str(config), "--ignore-schedule",
                                       "--now", "2026-11-25T07:00Z"])
    assert result.exit_code == 0, result.output
    files = sorted((folder / "outbox" / "new").iterdir())
    assert len(files) >= 2
    return [f.read_bytes() for f in files]


def test_generated_digests_score_low_with_no_rule_adding_points(
        sent: list[bytes], tmp_path: Path) -> None:
    # the longest and the shortest email: SpamAssassin takes ~1.5 s a message
    chosen = sorted(sent, key=len)
    for message in (chosen[-1], chosen[0]):
        assert b"DKIM-Signature:" in message
        score, rules, details = _report(message, tmp_path)
        assert score <= 0.5, details
        assert {name: pts for name, pts in rules.items() if pts > 0} == {}, details
        assert "HTML_FONT_LOW_CONTRAST" not in rules  # the old white-on-white preheader


def test_the_check_can_fail(tmp_path: Path, sent: list[bytes]) -> None:
    """The same message with the old white-on-white hidden preheader scores above zero."""
    parsed = email.message_from_bytes(max(sent, key=len), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    html = parsed.get_body(("html",))
    assert isinstance(html, EmailMessage)
    source = html.get_content()
    html.set_content(source.replace('class="preheader" style="',  # after "<div" and a space
                                    'class="preheader" style="color:#ffffff;'),  # or a LF
                     subtype="html")
    white = parsed.as_bytes()
    assert b"color:#ffffff;display:none" in white.replace(b"=\n", b"")
    score, rules, details = _report(white, tmp_path)
    assert rules.get("HTML_FONT_LOW_CONTRAST", 0) > 0 and score > 0.5, details
