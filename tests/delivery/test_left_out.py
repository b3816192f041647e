"""The matches an edition leaves out ("N more matched") are frozen before its message leaves:
a deferred send that a later run replays from the stored bytes still has them (the page
for a send without ``base_url``: tests/web/test_serve.py). Real aiosmtpd, real SQLite, the real
renderer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from smtp_server import SmtpTestServer

from digest.delivery import RetryPolicy, send_all
from digest.ledger import Ledger
from digest.models import Config, Paper, Settings, Subscriber, Topic

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ENV = {"DIGEST_UNSUBSCRIBE_SECRET": "s" * 40}
NO_RETRY = RetryPolicy(retries=0, sleep=lambda s: None)


def papers() -> tuple[Paper, ...]:
    return tuple(Paper(id=f"2611.0000{n}", title=f"Diffusion study {n}",
                       abstract="We study diffusion models.", authors=("A. Author",),
                       url=f"https://arxiv.org/abs/2611.0000{n}") for n in range(1, 6))


def config(tmp_path: Path, server: SmtpTestServer, base_url: str | None) -> Config:
    settings = Settings(sender="Paper Digest <digest@example.org>",
                        database=tmp_path / "digest.db", delivery="smtp",
                        smtp=server.smtp_settings(), base_url=base_url,
                        unsubscribe_secret_env="DIGEST_UNSUBSCRIBE_SECRET")
    sub = Subscriber(email="ada@example.org", name="Ada", timezone="UTC",
                     schedule="0 7 * * *", max_papers=2,
                     topics=(Topic(name="Diffusion", include=("diffusion",)),))
    return Config(path=tmp_path / "subscribers.yaml", settings=settings, subscribers=(sub,))


def test_a_replayed_deferred_send_keeps_the_matches_it_left_out(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "451 4.3.0 Try again later", times=1)
        cfg = config(tmp_path, server, "https://digest.example.org")
        first = send_all(cfg, papers(), NOW, environ=ENV, retry=NO_RETRY)
        assert first.deferred == 1
        ledger = Ledger(cfg.settings.database)
        assert ledger.archived_left_out("ada@example.org", NOW.date()) is None  # not sent
        # an hour on, with other papers in the feed: the stored message goes, as it was
        later = send_all(cfg, papers()[::-1][:1], NOW + timedelta(hours=1), environ=ENV,
                         retry=NO_RETRY)
        assert later.sent == 1 and server.count == 1
        missed = ledger.archived_left_out("ada@example.org", NOW.date())
        assert missed is not None
        assert [m.paper_id for m in missed] == ["2611.00003", "2611.00004", "2611.00005"]
        assert [m.url for m in missed] == [f"https://arxiv.org/abs/{m.paper_id}" for m in missed]
        assert {m.tags for m in missed} == {("Diffusion \u00b7 in title",)}
        body = server.messages[0].message.get_body(("plain",))
        assert body is not None and "3 more matched; see them all:" in body.get_content()

