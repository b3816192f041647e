"""Where the tests' files live: everything under the checkout, nothing beside it.

Recorded payloads and the seed papers are copies kept in ``tests/fixtures/`` (see its README).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "recorded"
HANDMADE = TESTS / "fixtures" / "handmade"
SEED = TESTS / "fixtures" / "seed_papers.json"
DATASETS = TESTS / "fixtures" / "datasets"


def dataset_records(*names: str) -> Iterator[dict[str, Any]]:
    """The records of the JSON-lines samples in ``fixtures/datasets`` (SciTLDR, CSAbstruct)."""
    for name in names:
        for line in (DATASETS / name).read_text("utf-8").splitlines():
            yield json.loads(line)
