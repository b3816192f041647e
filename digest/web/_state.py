"""What the web server knows: the config (re-read when the file changes; a broken edit keeps the
last good one), the ledger, and the token index over every address the YAML or the ledger
knows. May import config, ledger, compose (the token index and links), models and errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from digest.compose import Links, TokenIndex, links_for
from digest.config import load_config
from digest.errors import DigestError, InputError, TokenError
from digest.ledger import open_ledger
from digest.models import Config, Subscriber

log = logging.getLogger(__name__)

_REINDEX_SECONDS = 60.0  # an unknown token re-reads the ledger's addresses at most this often
# (a config edit re-reads them at once; this only catches another process's new rows, and
# keeps a flood of forged tokens from scanning the deliveries table more than once a minute)


@dataclass(frozen=True)
class Who:
    """The subscriber a valid token names."""

    email: str
    subscriber: Subscriber | None  # None: the YAML no longer lists the address
    links: Links


class WebState:
    """Config, ledger and tokens for the app; thread-safe (requests run in a thread pool)."""

    def __init__(self, config_path: Path, *, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], datetime]) -> None:
        self.config_path = config_path
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp = self._mtime()
        self.config = load_config(config_path, environ=self.environ)
        self.base_url, self.secret = self._check(self.config)
        self.host = str(urlsplit(self.base_url).hostname).lower()
        self.path = urlsplit(self.base_url).path.rstrip("/")
        self.ledger = open_ledger(self.config.settings.database)
        self._people: dict[str, Subscriber] = {}
        self._index = TokenIndex(self.secret)
        self._indexed_at = 0.0
        self._reindex()

    def _check(self, config: Config) -> tuple[str, str]:
        settings = config.settings
        if not settings.base_url:
            raise InputError(config.path, "digest serve needs settings.base_url (the https "
                             "address your reverse proxy serves it at)")
        name = settings.unsubscribe_secret_env
        secret = self.environ.get(name) if name else None
        if not secret:  # load_config already said which; this is for a base_url-less edit
            raise InputError(config.path, "digest serve needs settings.unsubscribe_secret_env "
                             "naming a set environment variable")
        return settings.base_url, secret

    def _mtime(self) -> float:
        try:
            return self.config_path.stat().st_mtime_ns
        except OSError:
            return -1

    def _reindex(self) -> None:
        self._people = {s.email.lower(): s for s in self.config.subscribers}
        index = TokenIndex(self.secret, self._people)
        index.add(self.ledger.known_addresses())
        self._index, self._indexed_at = index, time.monotonic()

    def refresh(self) -> None:
        """Re-read the config if its file changed (a stat per request)."""
        stamp = self._mtime()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                config = load_config(self.config_path, environ=self.environ)
                base_url, secret = self._check(config)
            except DigestError as exc:
                log.warning("config edit ignored, the last good one stays: %s", exc)
                return
            if base_url != self.base_url:
                log.warning("base_url changed to %s: restart digest serve to follow it", base_url)
            self.config, self.secret = config, secret
            self._reindex()

    def who(self, token: str) -> Who | None:
        """The subscriber ``token`` names, or None (forged, tampered, unknown)."""
        self.refresh()
        try:
            email = self._index.resolve(token)
        except TokenError:
            with self._lock:
                if time.monotonic() - self._indexed_at < _REINDEX_SECONDS:
                    return None
                self._reindex()  # someone new may have got mail since
            try:
                email = self._index.resolve(token)
            except TokenError:
                return None
        return Who(email, self._people.get(email), links_for(self.base_url, email, self.secret))

    def list_name(self) -> str:
        sender = self.config.settings.sender
        name = sender.rsplit("<", 1)[0].strip().strip('"') if "<" in sender else ""
        return name or "Paper Digest"

    def close(self) -> None:
        self.ledger.close()
