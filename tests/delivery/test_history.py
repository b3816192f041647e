"""The one rule for the history a selection uses, on a real SQLite ledger."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

from digest.delivery import selection_histories
from digest.delivery._history import edition_history
from digest.ledger import Ledger
from digest.models import Subscriber, Topic

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
TODAY, YESTERDAY = date(2026, 11, 25), date(2026, 11, 24)


def sub(email: str) -> Subscriber:
    return Subscriber(email, None, "UTC", "0 7 * * *", 5, (Topic("T", include=("x",)),))


def test_every_state_but_failed_counts_and_a_pending_edition_keeps_its_own_papers(
        tmp_path: Path) -> None:
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.begin("a@x.org", YESTERDAY, message_id="<1@x>", papers=("p1",), data=None, now=NOW)
        ledger.mark_sent("a@x.org", YESTERDAY, now=NOW)
        # today's edition was deferred: its papers are fixed and it will go out as it is
        ledger.begin("a@x.org", TODAY, message_id="<2@x>", papers=("p2",), data=None, now=NOW)
        ledger.mark_deferred("a@x.org", TODAY, now=NOW, code=451, error="later")
        ledger.begin("b@x.org", YESTERDAY, message_id="<3@x>", papers=("p3",), data=None, now=NOW)
        ledger.mark_deferred("b@x.org", YESTERDAY, now=NOW, code=451, error="later")
        ledger.begin("c@x.org", YESTERDAY, message_id="<4@x>", papers=("p4",), data=None, now=NOW)
        ledger.mark_failed("c@x.org", YESTERDAY, now=NOW, code=550, error="no such user")
        got = selection_histories([sub("A@x.org"), sub("b@x.org"), sub("c@x.org")], ledger, NOW)
        assert got == {"a@x.org": frozenset({"p1"}),  # p2 is today's own edition
                       "b@x.org": frozenset({"p3"}),  # an older deferred edition: left out
                       "c@x.org": frozenset()}  # a failed edition never went out
        forced = selection_histories([sub("a@x.org")], ledger, NOW, force=True)
        assert forced == {"a@x.org": frozenset({"p1"})}
        sent_today = ledger.get("a@x.org", TODAY)
        assert sent_today is not None
        assert edition_history(frozenset({"p1", "p2"}), sent_today) == frozenset({"p1"})
        assert edition_history(frozenset({"p1", "p2"}), None) == frozenset({"p1", "p2"})
