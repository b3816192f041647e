"""Where the tests' files live: everything under the checkout, nothing beside it.

Recorded payloads and the seed papers are copies kept in ``tests/fixtures/`` (see its README).
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "recorded"
HANDMADE = TESTS / "fixtures" / "handmade"
SEED = TESTS / "fixtures" / "seed_papers.json"
