"""Start this hospital's Flower SuperNode: validate the folder, enforce TLS + node authentication, write the
site's policy, then hand the site's own settings (data path, ledger, policy file, device) to the ClientApp through
the node config. The SuperNode runs every ClientApp through ``client.trusted_clientapp``, which refuses FABs the
policy does not trust."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from cxr_fedsynth.client.trusted_clientapp import POLICY_ENV
from cxr_fedsynth.common.atomic import write_text_atomic
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.privacy.site_policy import SitePolicy

SUPERNODE = "flower-supernode"
CLIENTAPP_RUNNER = "flwr-clientapp"


def site_dir(site_name: str) -> Path:
    """``$XDG_CONFIG_HOME/cxr-fedsynth/<site>/``: the site's ledger and policy, never in the data folder."""
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "cxr-fedsynth" / site_name


def default_ledger(site_name: str) -> Path:
    return site_dir(site_name) / "ledger.json"


@dataclass(frozen=True)
class JoinSettings:
    """Everything needed to start the SuperNode."""

    data_dir: Path
    superlink: str
    site_name: str
    ledger: Path
    policy: SitePolicy
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
        for label, folder in (("the privacy ledger", self.ledger.parent), ("the site policy", self.policy_path.parent)):
            if folder.resolve().is_relative_to(self.data_dir.resolve()):
                raise ConfigError(f"{folder}: {label} must not live inside the data folder {self.data_dir}")

    @property
    def policy_path(self) -> Path:
        """Where the effective policy is written for the SuperNode: beside the ledger, readable by the site only."""
        return self.ledger.with_name(f"{self.ledger.stem}.policy.yaml")

    @property
    def runner_dir(self) -> Path:
        """The folder put first on the SuperNode's PATH: it holds the site's checked ClientApp runner."""
        return self.ledger.with_name(f"{self.ledger.stem}.bin")

    def write_policy(self) -> None:
        """Write the effective policy (0600) and the ClientApp runner the SuperNode starts."""
        write_text_atomic(self.policy_path, yaml.safe_dump(self.policy.to_mapping(), sort_keys=False), private=True)
        runner = self.runner_dir / CLIENTAPP_RUNNER
        script = f"#!{sys.executable}\nfrom cxr_fedsynth.client.trusted_clientapp import main\n\nmain()\n"
        write_text_atomic(runner, script, private=True)
        runner.chmod(0o700)

    def environment(self) -> dict[str, str]:
        """The SuperNode's environment: the checked runner first on PATH, the policy file named."""
        path = f"{self.runner_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, POLICY_ENV: str(self.policy_path), "FLWR_DISABLE_UPDATE_CHECK": "1"}

    def node_config(self) -> str:
        """The SuperNode's --node-config string (values quoted; paths absolute)."""
        values = {
            "data-path": str(self.data_dir.resolve()),
            "labels": str(self.labels.resolve()) if self.labels else "",
            "site-name": self.site_name,
            "ledger": str(self.ledger.resolve()),
            "policy": str(self.policy_path.resolve()),
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
    settings.ledger.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.write_policy()
    command = settings.command()
    if settings.insecure:
        click.secho(
            "WARNING: --insecure: no TLS and no node authentication. Use only on a local test network.",
            fg="yellow",
            err=True,
        )
    click.echo(
        f"site {settings.site_name}: joining {settings.superlink}; privacy ledger {settings.ledger} (budget epsilon "
        f"{settings.policy.budget_epsilon}, delta {settings.policy.budget_delta}, at most {settings.policy.max_run_epsilon} "
        f"per run); policy {settings.policy_path}",
        err=True,
    )
    os.execve(command[0], command, settings.environment())
