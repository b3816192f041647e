"""The render stage: ``Digest`` -> subject, HTML (Jinja2 + MJML compiled once per shape) and text.

Pure given the templates. May import: models, errors.
"""

from __future__ import annotations

from digest.render._renderer import Renderer, stock_templates

__all__ = ["Renderer", "stock_templates"]
