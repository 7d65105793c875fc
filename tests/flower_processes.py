"""Start and stop the test's own Flower processes (by PID, in their own process group), never anyone else's."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(home: Path, http_port: int, control_port: int) -> dict[str, str]:
    """Environment for the flwr CLI and a SuperLink private to one test."""
    env = os.environ.copy()
    env.update(
        {
            "FLWR_HOME": str(home),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(http_port),
            "FLWR_LOCAL_CONTROL_API_PORT": str(control_port),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "RAY_DEDUP_LOGS": "0",
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        }
    )
    return env


def wait_healthy(process: subprocess.Popen, url: str, log: Path, *, verify: object = True, timeout: float = 60) -> None:
    """Poll a SuperLink's /health until it answers; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {process.returncode}: see {log}")
        try:
            if httpx.get(url, timeout=0.5, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"flower-superlink did not become healthy in {timeout:.0f} s: see {log}")
        time.sleep(0.3)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group we created, then SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


@dataclass
class LocalSuperLink:
    """A simulation SuperLink on loopback that ``flwr run`` finds through the local connection."""

    env: dict[str, str]
    http_port: int
    process: subprocess.Popen

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["flwr", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def run_status(self, run_id: str) -> str:
        """The run's final status as the SuperLink records it (flwr run --stream exits 0 even on failure)."""
        listing = self.flwr("list", "--run-id", run_id, "--format", "json", timeout=60)
        runs = json.loads(listing.stdout)["runs"]
        return str(runs[0]["status"])


@contextmanager
def simulation_superlink(home: Path) -> Iterator[LocalSuperLink]:
    """Start ``flower-superlink --simulation`` the way ``flwr run`` would, and always stop it."""
    http_port, control_port = free_port(), free_port()
    env = flower_env(home, http_port, control_port)
    home.mkdir(parents=True, exist_ok=True)
    command = [
        "flower-superlink",
        "--insecure",
        "--simulation",
        "--isolation",
        "subprocess",
        "--control-api-address",
        f"127.0.0.1:{control_port}",
        "--host",
        "127.0.0.1",
        "--port",
        str(http_port),
        "--database",
        str(home / "state.db"),
    ]
    log = (home / "superlink.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(process, f"http://127.0.0.1:{http_port}/health", home / "superlink.log")
        yield LocalSuperLink(env, http_port, process)
    finally:
        stop_process_group(process)
        log.close()


@dataclass
class SecureSuperLink:
    """A deployment SuperLink (TLS and SuperNode authentication, or insecure), reachable as ``connection``."""

    env: dict[str, str]
    address: str
    ca: Path
    process: subprocess.Popen
    connection: str

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["flwr", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def register(self, public_key: Path) -> None:
        result = self.flwr("supernode", "register", str(public_key), self.connection, timeout=60)
        if "registered successfully" not in result.stdout:
            raise RuntimeError(result.stdout + result.stderr)

    def wait_online(self, count: int = 1, timeout: float = 90) -> None:
        """Wait until ``count`` SuperNodes are online; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listing = self.flwr("supernode", "list", self.connection, "--format", "json", timeout=60)
            try:
                nodes = json.loads(listing.stdout)["nodes"]
            except (json.JSONDecodeError, KeyError):
                nodes = []
            if sum(1 for n in nodes if n.get("status") == "online") >= count:
                return
            time.sleep(1)
        raise AssertionError(f"{count} SuperNode(s) did not come online: {listing.stdout[-1000:]}")


@contextmanager
def _deployment_superlink(
    home: Path, connection: str, *, options: list[str], connection_toml: str, certs: dict[str, Path] | None
) -> Iterator[SecureSuperLink]:
    """Start a deployment ``flower-superlink`` on a free loopback port, reachable as ``connection``; stopped by PID."""
    port = free_port()
    env = flower_env(home, free_port(), free_port())
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{connection}"\n\n[superlink.{connection}]\n'
        f'address = "127.0.0.1:{port}"\n{connection_toml}\n'
    )
    command = [
        "flower-superlink", *options, "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port), "--database", str(home / "state.db"),
    ]  # fmt: skip
    log = (home / "superlink.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    scheme, verify = ("https", ssl.create_default_context(cafile=str(certs["ca"]))) if certs else ("http", True)
    try:
        wait_healthy(process, f"{scheme}://127.0.0.1:{port}/health", home / "superlink.log", verify=verify)
        yield SecureSuperLink(env, f"127.0.0.1:{port}", certs["ca"] if certs else Path(), process, connection)
    finally:
        stop_process_group(process)
        log.close()


def secure_superlink(home: Path, certs: dict[str, Path]) -> AbstractContextManager[SecureSuperLink]:
    """A SuperLink with TLS + SuperNode authentication, reachable as connection ``hospitalnet``."""
    options = [
        "--ssl-ca-certfile", str(certs["ca"]), "--ssl-certfile", str(certs["cert"]), "--ssl-keyfile", str(certs["key"]),
        "--enable-supernode-auth",
    ]  # fmt: skip
    toml = f'root-certificates = "{certs["ca"]}"'
    return _deployment_superlink(home, "hospitalnet", options=options, connection_toml=toml, certs=certs)


def insecure_superlink(home: Path) -> AbstractContextManager[SecureSuperLink]:
    """A SuperLink without TLS (for tests of what a site does, not of the transport), as connection ``loopback``."""
    return _deployment_superlink(
        home, "loopback", options=["--insecure"], connection_toml="insecure = true", certs=None
    )
