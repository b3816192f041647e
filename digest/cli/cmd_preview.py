"""CLI: ``digest preview``. Thin: parse, call one library function (digest.preview), print."""

from __future__ import annotations

import webbrowser
from datetime import datetime, timezone
from pathlib import Path

import click

from digest.cli._base import config_option, is_loopback, main, papers_option, parse_now


@main.command("preview")
@config_option
@papers_option
@click.argument("emails", nargs=-1, metavar="[EMAIL]...")
@click.option("--subscriber", "-s", "subscribers", multiple=True, metavar="EMAIL",
              help="Preview only this subscriber (repeatable; default: everyone).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("preview"), show_default=True, help="Folder for the files.")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the (first) HTML file in the default browser.")
@click.option("--now", "now_text", metavar="ISO",
              help="Pretend it is this time (default: now), e.g. 2026-11-25T07:00Z.")
@click.option("--serve", is_flag=True,
              help="Run a local web server showing every subscriber's email, re-rendered "
                   "when the config or a template changes.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface for --serve (keep it local unless you mean it).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port for --serve.")
def preview(config_path: Path, papers_path: Path | None, emails: tuple[str, ...],
            subscribers: tuple[str, ...], out_dir: Path, open_browser: bool,
            now_text: str | None, serve: bool, host: str, port: int) -> None:
    """Write each subscriber's next email as .html, .txt and the full .eml message.

    Nothing is sent and nothing is recorded.

    \b
    Examples:
      digest preview --config subscribers.example.yaml ada@example.org --open
      digest preview --out /tmp/preview --now 2026-11-25T07:00Z
      digest preview --serve            # then open http://127.0.0.1:8025/
    """
    from digest import preview as lib  # the MJML engine loads only for this command

    now = parse_now(now_text)
    if serve:
        state = lib.PreviewState(config_path, papers_path, now)
        state.refresh()
        if state.error is not None:
            click.echo(f"warning: {state.error}", err=True)
        if not is_loopback(host):
            click.echo(f"warning: --host {host} shows every subscriber's email to anyone who "
                       "can reach this machine; only requests naming an IP address or this "
                       "machine's name are answered", err=True)
        try:
            server = lib.PreviewServer(state, host, port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}")
        click.echo(f"Serving previews at {server.url} (Ctrl-C to stop)")
        with server:
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
        return
    previews = lib.load_previews(config_path, papers_path, now or datetime.now(timezone.utc),
                                 emails + subscribers)
    paths = lib.write_previews(previews, out_dir)
    for p in previews:
        note = f"  ({p.note})" if p.note else ""
        click.echo(f"{p.subscriber.email}: {p.rendered.subject}{note}")
        stem = out_dir / lib.file_stem(p.subscriber.email)
        for suffix in (".html", ".txt", ".eml"):
            click.echo(f"  {stem.with_name(stem.name + suffix)}")
    if open_browser and paths:
        webbrowser.open(paths[0].resolve().as_uri())
