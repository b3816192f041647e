"""build_digest: the sender's identity the email's masthead and footer show."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from digest.compose import build_digest
from digest.models import Selection, Settings, Subscriber, Topic

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
SUB = Subscriber(email="ada@example.org", name="Ada", timezone="UTC", schedule="0 7 * * *",
                 max_papers=5, topics=(Topic("ml", ("ml",)),))


@pytest.mark.parametrize("sender,publisher,address", [
    ("Paper Digest <digest@example.org>", "Paper Digest", "digest@example.org"),
    ('"Lab, Reading Group" <lab@example.org>', "Lab, Reading Group", "lab@example.org"),
    ("digest@example.org", None, "digest@example.org"),
])
def test_the_digest_names_its_sender(sender: str, publisher: str | None, address: str) -> None:
    d = build_digest(Selection(SUB, ()), {}, NOW.date(), NOW, Settings(sender=sender))
    assert (d.publisher, d.sender_address) == (publisher, address)
    assert d.archive_url is None  # no archive to link to without base_url
