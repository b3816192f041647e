"""The render stage: ``Digest`` -> subject, HTML (Jinja2 + MJML compiled once per shape) and text.

Pure given the templates. May import: models, errors, text.
"""

from __future__ import annotations

from digest.render._renderer import Renderer, left_out, stock_templates

__all__ = ["Renderer", "left_out", "stock_templates"]
