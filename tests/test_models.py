"""Value types: a delivery's outcome is a typed value, never read back from prose."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from digest.models import Delivery, Outcome


def test_outcome_follows_the_state_unless_given() -> None:
    d = Delivery(email="a@x.org", edition=date(2026, 1, 1), state="sent")
    assert d.outcome is Outcome.SENT
    assert Delivery(email="a@x.org", edition=date(2026, 1, 1), state="deferred").outcome \
        is Outcome.DEFERRED
    dup = replace(d, outcome=Outcome.POSSIBLE_DUPLICATE, detail="anything at all")
    assert dup.outcome is Outcome.POSSIBLE_DUPLICATE


def test_a_skip_must_say_why() -> None:
    with pytest.raises(ValueError, match="needs its outcome"):
        Delivery(email="a@x.org", edition=date(2026, 1, 1), state="skipped")
    skip = Delivery(email="a@x.org", edition=date(2026, 1, 1), state="skipped",
                    outcome=Outcome.ALREADY_SENT, detail="prose may change")
    assert skip.outcome is Outcome.ALREADY_SENT
