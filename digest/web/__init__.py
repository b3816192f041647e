"""The web stage: ``digest serve``, the small web app behind the links in every email (RFC 8058
one-click unsubscribe and its confirm page, the preferences page, every sent edition in a
browser, a per-subscriber Atom feed), meant to sit behind the admin's HTTPS reverse proxy at
``settings.base_url``.

Edge (HTTP server, sockets, SQLite through the ledger). May import: models, errors, config, ledger,
compose (the tokens and the one spelling of every URL). Starlette and uvicorn load only here.
"""

from __future__ import annotations

from digest.web._app import create_app, listen, serve, utc_now
from digest.web._state import WebState

__all__ = ["WebState", "create_app", "listen", "serve", "utc_now"]
