"""The config stage: ``subscribers.yaml`` -> ``Config``, every problem at once as
``file:line: key.path: message``.

Edge (reads the file and the environment). May import: models, errors, cron.
"""

from __future__ import annotations

from digest.config._load import load_config, open_config

__all__ = ["load_config", "open_config"]
