"""Start this hospital's Flower SuperNode: validate the folder, enforce TLS + node authentication, then hand
the site's own settings (data path, ledger, budget, device) to the ClientApp through the node config."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from cxr_fedsynth.common.errors import ConfigError

SUPERNODE = "flower-supernode"


def default_ledger(site_name: str) -> Path:
    """``$XDG_CONFIG_HOME/cxr-fedsynth/<site>/ledger.json``: beside the site's config, never in the data folder."""
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "cxr-fedsynth" / site_name / "ledger.json"


@dataclass(frozen=True)
class JoinSettings:
    """Everything needed to start the SuperNode."""

    data_dir: Path
    superlink: str
    site_name: str
    ledger: Path
    budget_epsilon: float
    budget_delta: float
    labels: Path | None = None
    root_certificates: Path | None = None
    auth_key: Path | None = None
    insecure: bool = False
    device: str = "auto"
    patient_pattern: str | None = None
    port: int = 9094

    def validate(self) -> None:
        """Refuse unsafe or inconsistent settings before anything starts."""
        if not self.insecure and (self.root_certificates is None or self.auth_key is None):
            raise ConfigError(
                "joining a federation needs TLS and node authentication: pass --root-certificates CA.pem and "
                "--auth-key KEY (ask the operator for the CA; create a key with 'cxr-client keygen'), or --insecure "
                "for a local test network only"
            )
        for label, path in (("--root-certificates", self.root_certificates), ("--auth-key", self.auth_key)):
            if path is not None and not path.is_file():
                raise ConfigError(f"{path}: {label} file not found")
        if self.ledger.resolve().is_relative_to(self.data_dir.resolve()):
            raise ConfigError(
                f"{self.ledger}: the privacy ledger must not live inside the data folder {self.data_dir}; choose another --ledger"
            )
        if self.budget_epsilon <= 0 or not 0 < self.budget_delta < 1:
            raise ConfigError("--budget-epsilon must be > 0 and --budget-delta in (0, 1)")

    def node_config(self) -> str:
        """The SuperNode's --node-config string (values quoted; paths absolute)."""
        values = {
            "data-path": str(self.data_dir.resolve()),
            "labels": str(self.labels.resolve()) if self.labels else "",
            "site-name": self.site_name,
            "ledger": str(self.ledger.resolve()),
            "budget-epsilon": self.budget_epsilon,
            "budget-delta": self.budget_delta,
            "device": self.device,
            "patient-pattern": self.patient_pattern or "",
        }
        parts = []
        for key, value in values.items():
            if isinstance(value, str):
                if '"' in value:
                    raise ConfigError(f"{key} {value!r} contains a double quote, which the node config cannot carry")
                parts.append(f'{key}="{value}"')
            else:
                parts.append(f"{key}={value!r}")
        return " ".join(parts)

    def command(self) -> list[str]:
        """The flower-supernode command line."""
        executable = shutil.which(SUPERNODE)
        if executable is None:
            raise ConfigError(
                f"{SUPERNODE} not found on PATH; install cxr-fedsynth in this environment (pip install -e .)"
            )
        command = [
            executable,
            "--superlink",
            self.superlink,
            "--port",
            str(self.port),
            "--node-config",
            self.node_config(),
        ]
        if self.insecure:
            command.append("--insecure")
        else:
            command += [
                "--root-certificates",
                str(self.root_certificates),
                "--auth-supernode-private-key",
                str(self.auth_key),
            ]
        return command


def start_supernode(settings: JoinSettings) -> None:
    """Replace this process with the SuperNode (signals reach it directly; its exit code is ours)."""
    settings.validate()
    settings.ledger.parent.mkdir(parents=True, exist_ok=True)
    command = settings.command()
    if settings.insecure:
        click.secho(
            "WARNING: --insecure: no TLS and no node authentication. Use only on a local test network.",
            fg="yellow",
            err=True,
        )
    click.echo(
        f"site {settings.site_name}: joining {settings.superlink}; privacy ledger {settings.ledger} (budget epsilon {settings.budget_epsilon}, delta {settings.budget_delta})",
        err=True,
    )
    env = {**os.environ, "FLWR_DISABLE_UPDATE_CHECK": "1"}
    os.execve(command[0], command, env)
