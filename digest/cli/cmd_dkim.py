"""CLI: ``digest dkim keygen``. Thin: parse, make the key pair, write it, print the DNS record
to publish and the ``settings.dkim`` lines to add."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import click

from digest.cli._base import main

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _labels(value: str, what: str, dots: bool) -> str:
    parts = value.rstrip(".").split(".")
    if not value.isascii() or not all(_LABEL.fullmatch(p) for p in parts) or (
            dots and len(parts) < 2):
        raise click.BadParameter(f"not {what}: {value!r}")
    return value.rstrip(".").lower()


@main.group()
def dkim() -> None:
    """DKIM signing keys (settings.dkim)."""


@dkim.command(epilog="""\b
Examples:
  digest dkim keygen --domain example.org --selector digest2026
  digest dkim keygen --domain example.org --selector digest2026e --type ed25519 --out keys/

\b
Then publish the printed TXT record in your domain's DNS and add to settings:
  dkim: {domain: example.org, selector: digest2026, private_key_file: dkim/digest2026.private}""")
@click.option("--domain", "-d", required=True, help="The signing domain (d=): your From domain.")
@click.option("--selector", "-s", required=True, help="The selector (s=), e.g. digest2026.")
@click.option("--type", "kind", type=click.Choice(["rsa", "ed25519"]), default="rsa",
              show_default=True, help="rsa is what every receiver checks; ed25519 (RFC 8463) "
              "is an optional second signature.")
@click.option("--bits", type=click.IntRange(min=2048, max=4096), default=2048,
              show_default=True, help="RSA key size (receivers need at least 2048).")
@click.option("--out", "-o", "folder", type=click.Path(path_type=Path, file_okay=False),
              default=Path("dkim"), show_default=True, help="Folder for the key files.")
@click.option("--force", is_flag=True, help="Overwrite existing key files of this selector.")
def keygen(domain: str, selector: str, kind: Literal["rsa", "ed25519"], bits: int,
           folder: Path, force: bool) -> None:
    """Make a DKIM key pair: FOLDER/SELECTOR.private (readable by you only) and
    FOLDER/SELECTOR.txt, the DNS TXT record to publish (also printed)."""
    from digest.delivery import generate_key, write_key_pair  # not at start-up: it loads smtplib

    domain = _labels(domain, "a domain name such as example.org", dots=True)
    selector = _labels(selector, "a selector (letters, digits, hyphens)", dots=False)
    files = write_key_pair(folder, selector, domain, generate_key(kind, bits), force=force)
    click.echo(f"wrote {files.private_key} (mode 0600) and {files.record_file}", err=True)
    click.echo("Publish this TXT record in the DNS of " + domain + ":", err=True)
    click.echo(files.record)
    block = "ed25519: {selector: %s, private_key_file: %s}" % (selector, files.private_key) \
        if kind == "ed25519" else \
        f"dkim: {{domain: {domain}, selector: {selector}, private_key_file: {files.private_key}}}"
    click.echo(f"Then add under settings: (inside dkim: for an ed25519 key)\n  {block}", err=True)
