"""send_all over a StreamedConfig (config.open_config on a big file): the shards read their share
of the spilled subscribers themselves, apply the schedule, and ask the ledger per address,
against a real aiosmtpd server and a real SQLite ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from smtp_server import SmtpTestServer
from test_service import make_papers

from digest.config import open_config
from digest.config._load import STREAM_ABOVE_BYTES
from digest.config._spill import SpilledSubscribers
from digest.delivery import send_all
from digest.ledger import open_ledger

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)  # a Wednesday
SUNDAYS = {f"r{i}@example.org" for i in range(0, 24, 4)}  # "0 7 * * sun": not due today


def _write(path: Path, port: int) -> None:
    entries = "".join(
        f"  - email: r{i}@example.org\n"
        f"    schedule: \"0 7 * * {'sun' if f'r{i}@example.org' in SUNDAYS else '*'}\"\n"
        "    topics: [attention, diffusion, retrieval]\n" for i in range(24))
    # Padding past the size from which subscribers are streamed, without thousands of them.
    padding = "".join(f"  line {i}: {'x' * 60}\n" for i in range(STREAM_ABOVE_BYTES // 60))
    path.write_text(
        'settings:\n  sender: "Paper Digest <digest@example.org>"\n  database: digest.db\n'
        f"  delivery: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, security: none, "
        f"connections: 2}}\nx-padding:\n{padding}subscribers:\n{entries}", encoding="utf-8")


def test_shards_send_a_spilled_list_once_each_with_schedules_and_preferences(
        tmp_path: Path) -> None:
    paused, one_paper = "r1@example.org", "r2@example.org"
    with SmtpTestServer() as server:
        _write(tmp_path / "subscribers.yaml", server.port)
        with open_ledger(tmp_path / "digest.db") as ledger:
            ledger.create()
            ledger.set_preferences(paused, paused_until=NOW.date() + timedelta(days=30),
                                   max_papers=None, now=NOW)
            ledger.set_preferences(one_paper, paused_until=None, max_papers=1, now=NOW)
        with open_config(tmp_path / "subscribers.yaml", environ={}) as config:
            assert isinstance(config.subscribers, SpilledSubscribers)
            counts: list[int] = []
            report = send_all(config, make_papers(), NOW, processes=2, environ={},
                              counted=counts.append)
            assert counts == [18]
            assert (report.sent, report.paused, report.not_due, report.failed) == (17, 1, 6, 0)
            expected = {f"r{i}@example.org" for i in range(24)} - SUNDAYS - {paused}
            received = [m.rcpt_tos[0] for m in server.messages]
            assert sorted(received) == sorted(expected)  # each once
            # The next day: what each one got is in their history (asked per address); only
            # the one who asked for one paper a day has papers left.
            later = send_all(config, make_papers(), NOW + timedelta(days=1), processes=2,
                             environ={})
            assert (later.sent, later.nothing_new, later.paused) == (1, 16, 1)
            assert server.messages[-1].rcpt_tos == (one_paper,)
            assert server.count == 18
            only = send_all(config, make_papers(), NOW, only="R5@example.org", processes=2,
                            environ={}, force=True)
            assert (only.sent, only.not_due) == (1, 0)
        with open_ledger(tmp_path / "digest.db") as ledger:
            row = ledger.get(one_paper, NOW.date())
            assert row is not None and len(row.papers) == 1
            row = ledger.get("r3@example.org", NOW.date())
            assert row is not None and len(row.papers) == 3


def test_who_is_due_is_counted_from_the_schedules_read_without_reading_the_list_back(
        tmp_path: Path) -> None:
    from digest.delivery._batch import _Due, due

    zones = ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "America/New_York"]
    schedules = ["0 7 * * *", "0 7 * * mon-fri", "0 7 * * sun", "30 6 * * sat,sun", "0 9 1 * *"]
    entries = "".join(
        f"  - email: r{i}@example.org\n    timezone: {zones[i % 5]}\n"
        f"    schedule: \"{schedules[i // 5 % 5]}\"\n    topics: [attention]\n"
        for i in range(60))
    padding = "".join(f"  line {i}: {'x' * 60}\n" for i in range(STREAM_ABOVE_BYTES // 60))
    (tmp_path / "subscribers.yaml").write_text(
        'settings:\n  sender: "Paper Digest <digest@example.org>"\n'
        f"x-padding:\n{padding}subscribers:\n{entries}", encoding="utf-8")
    with open_config(tmp_path / "subscribers.yaml", environ={}) as config:
        assert isinstance(config.subscribers, SpilledSubscribers)
        assert config.schedules is not None and sum(config.schedules.values()) == 60
        assert config.schedules[("UTC", "0 7 * * *")] == 3
        # every hour of a week and a month's first day, across the date line
        for hours in [*range(0, 24 * 8, 5), 24 * 6 + 11]:
            now = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc) + timedelta(hours=hours)
            for wanted in (_Due(now), _Due(now, ignore_schedule=True)):
                assert wanted.count(config.subscribers, config.schedules) == wanted.count(
                    config.subscribers), (now, wanted)
            assert _Due(now).count(config.subscribers, config.schedules) == len(due(config, now))
        only = _Due(NOW, only="r7@example.org")  # one named address: read, not counted
        assert only.count(config.subscribers, config.schedules) == 1
