"""``digest --help`` and file-only commands never load the heavy edges (httpx, smtplib, MJML):
a stage's public face must keep its lazy imports lazy."""

from __future__ import annotations

import subprocess
import sys


def fresh(code: str) -> str:
    """What ``code`` prints in a new interpreter (the imports of this one do not count)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


def test_importing_the_cli_loads_no_network_or_mjml_library() -> None:
    code = ("import sys, digest.cli\n"
            "print(sorted(m for m in ('httpx', 'smtplib', 'mjml', 'celery', 'psycopg')"
            " if m in sys.modules))")
    assert fresh(code) == "[]"


def test_help_loads_no_command_module() -> None:
    code = ("import sys\nfrom click.testing import CliRunner\nfrom digest.cli import main\n"
            "result = CliRunner().invoke(main, ['--help'])\n"
            "assert result.exit_code == 0 and 'validate' in result.output, result.output\n"
            "print(sorted(m for m in sys.modules if m.startswith('digest.cli.cmd_')"
            " or m in ('yaml', 'rich', 'sqlite3', 'apscheduler')))")
    assert fresh(code) == "[]"


def test_fetch_papers_is_still_reachable_through_the_feeds_face() -> None:
    import digest.feeds as feeds

    assert callable(feeds.fetch_papers)
    assert "fetch_papers" in feeds.__all__


def test_a_send_without_the_semantic_layer_never_loads_numpy() -> None:
    """numpy and the embeddings load with the first subscriber that uses ``about`` or
    feedback (65 ms of every ``digest send``'s start otherwise); the selector still selects."""
    code = ("import sys\nfrom digest.delivery import send_all\nfrom digest.feeds import "
            "sample_papers\nfrom digest.models import Subscriber, Topic\n"
            "from digest.selection import Selector\n"
            "sub = Subscriber(email='a@example.org', name='A', timezone='UTC', "
            "schedule='0 7 * * *', max_papers=5,\n"
            "                 topics=(Topic(name='t', include=('diffusion',)),))\n"
            "assert Selector(sample_papers()).select(sub).picks\n"
            "print('numpy' in sys.modules)")
    assert fresh(code) == "False"
