"""``cxr-server``: operator helpers (development certificates). The server itself runs as a Flower ServerApp."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.server.dev_certificates import create_dev_certificates


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operator tools for a cxr-fedsynth federation."""


@cli.command("certs")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost", "127.0.0.1"),
    show_default=True,
    help="Names/IPs the SuperLink is reached at.",
)
def certs_command(out_dir: Path, hosts: tuple[str, ...]) -> None:
    """Create a development CA and a SuperLink TLS certificate (ca.crt, server.pem, server.key)."""
    paths = create_dev_certificates(out_dir, hosts=list(hosts))
    click.echo(
        f"CA {paths['ca']} (give it to every site); SuperLink certificate {paths['cert']} and key {paths['key']}"
    )


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
