"""Where the project's shared data lives: ``../shared/data`` beside the checkout (as in CI),
or ``$DIGEST_SHARED_DATA``. Tests name their files through here, never an absolute path."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DIGEST_SHARED_DATA", REPO.parent / "shared" / "data"))
FIXTURES = DATA / "fixtures"
SEED = DATA / "seed_papers.json"
