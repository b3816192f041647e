"""CLI: ``digest serve`` and ``digest prefs export``. Thin: parse, call the web stage or the
ledger, print."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli._base import config_option, is_loopback, main
from digest.config import load_config
from digest.ledger import open_ledger


@main.command("serve", epilog="""\b
Examples:
  digest serve --config subscribers.yaml
  digest serve --port 9000      # behind a proxy that forwards https://<base_url host>

\b
The proxy must pass the Host header on (nginx: proxy_set_header Host $host);
any other Host is answered 400.""")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (keep it local; the HTTPS proxy faces the world).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
def serve(config_path: Path, host: str, port: int) -> None:
    """Serve the web pages behind the links in every email, at settings.base_url.

    One-click unsubscribe (RFC 8058) and its confirm page, the preferences page, past
    editions and an Atom feed."""
    from digest import web  # starlette and uvicorn load only for this command

    state = web.WebState(config_path, clock=web.utc_now)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not only this machine: digest serve is "
                   "meant to sit behind an HTTPS reverse proxy on 127.0.0.1", err=True)
    try:
        sock = web.listen(host, port)
    except OSError as exc:
        state.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"Serving {state.base_url} on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        web.serve(state, sock)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn already shut down gracefully
        pass
    finally:
        sock.close()
        state.close()


@main.group("prefs")
def prefs() -> None:
    """What subscribers chose on the preferences page of digest serve."""


@prefs.command("export", epilog="""\b
Examples:
  digest prefs export --config subscribers.yaml
  digest prefs export > changed.jsonl""")
@config_option
def export(config_path: Path) -> None:
    """One JSON line per subscriber who changed something (pause, papers per digest,
    unsubscribed on the web), beside what the YAML says. The YAML is not changed."""
    config = load_config(config_path)
    with open_ledger(config.settings.database) as ledger:
        chosen = {p.email: p for p in ledger.all_preferences()}
        web_unsubscribed = {e for e in ledger.suppressed()
                            if ledger.suppression_source(e) == "web"}
    for email in sorted(set(chosen) | web_unsubscribed):
        sub = config.subscriber(email)
        p = chosen.get(email)
        line: dict[str, object] = {"email": email, "in_yaml": sub is not None}
        if p is not None and p.paused_until is not None:
            line["paused_until"] = p.paused_until.isoformat()
        if p is not None and p.max_papers is not None:
            line["max_papers"] = p.max_papers
            line["yaml_max_papers"] = sub.max_papers if sub else None
        if email in web_unsubscribed:
            line["unsubscribed"] = True
        if p is not None and p.updated is not None:
            line["updated"] = p.updated.isoformat()
        click.echo(json.dumps(line, ensure_ascii=False))
