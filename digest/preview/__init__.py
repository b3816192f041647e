"""The preview stage: the next email of each subscriber as files or on a local web server.

Edge (files, HTTP server). May import every stage but the CLI.
"""

from __future__ import annotations

from digest.preview._preview import (
    PreviewServer,
    PreviewState,
    file_stem,
    load_previews,
    write_previews,
)

__all__ = ["PreviewServer", "PreviewState", "file_stem", "load_previews", "write_previews"]
