"""Hospital deployment on loopback: a SuperLink with TLS + node authentication, hospitals joining with
``cxr-client``, a site dying mid-run, restarts that keep the privacy ledger, and refusals. Every process is
started by the test in its own process group and stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cxr_fedsynth.common.privacy.site_keys import create_site_key
from cxr_fedsynth.server.dev_certificates import create_dev_certificates
from tests.flower_processes import REPO_ROOT, free_port, secure_superlink, stop_process_group
from tests.privacy_audit.audit_fixtures import patient_groups

pytestmark = pytest.mark.slow
RUN = "public-data='' image-size=32 local-steps=2 g-steps=2 batch-size=8 g-width=8 d-width=8 latent-dim=16 round-timeout=90.0"
CLIENT = [sys.executable, "-c", "from cxr_fedsynth.client.cli import main; main()"]


def _client(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLIENT, *args], env=env, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _join_args(cxr128: Path, labels: Path, link, key: Path, name: str, ledger: Path, budget: float) -> list[str]:
    return [
        "--data",
        str(cxr128),
        "--labels",
        str(labels),
        "--superlink",
        link.address,
        "--root-certificates",
        str(link.ca),
        "--auth-key",
        str(key),
        "--site-name",
        name,
        "--ledger",
        str(ledger),
        "--budget-epsilon",
        str(budget),
        "--port",
        str(free_port()),
        "--cpu",
    ]


@pytest.fixture(scope="module")
def federation(cxr128_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("deploy")
    certs = create_dev_certificates(root / "certs", hosts=["localhost", "127.0.0.1"])
    keys = {name: root / f"{name}.key" for name in ("a", "b", "rogue")}
    for key in keys.values():
        create_site_key(key)
    labels = {}
    for name, rows in zip(("a", "b"), patient_groups(cxr128_dir, [48, 48], seed=5)):
        labels[name] = root / f"{name}.csv"
        rows[["Image Index", "Finding Labels", "Patient ID"]].to_csv(labels[name], index=False)
    with secure_superlink(root / "flwr", certs) as link:
        link.register(keys["a"].with_name("a.key.pub"))
        link.register(keys["b"].with_name("b.key.pub"))
        env = {**os.environ, "FLWR_DISABLE_UPDATE_CHECK": "1", "CXR_CACHE_DIR": str(root / "cache")}
        yield {"root": root, "link": link, "keys": keys, "labels": labels, "env": env, "cxr128": cxr128_dir}


def test_client_without_tls_is_refused_unless_insecure(federation) -> None:
    f = federation
    plain = subprocess.run(
        [
            *CLIENT,
            "--data",
            str(f["cxr128"]),
            "--labels",
            str(f["labels"]["a"]),
            "--superlink",
            f["link"].address,
            "--ledger",
            str(f["root"] / "x.json"),
        ],
        env=f["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 2 and "needs TLS and node authentication" in plain.stderr
    insecure = _client(
        f["env"],
        "--data",
        str(f["cxr128"]),
        "--labels",
        str(f["labels"]["a"]),
        "--superlink",
        f["link"].address,
        "--ledger",
        str(f["root"] / "x.json"),
        "--insecure",
        "--port",
        str(free_port()),
        log=f["root"] / "insecure.log",
    )
    try:
        insecure.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_process_group(insecure)
    text = (f["root"] / "insecure.log").read_text()
    assert "WARNING: --insecure" in text
    # A plain-HTTP SuperNode never gets a node ID from the TLS SuperLink.
    assert "SuperNode ID" not in text


def test_unregistered_key_is_refused(federation) -> None:
    f = federation
    rogue = _client(
        f["env"],
        *_join_args(
            f["cxr128"], f["labels"]["a"], f["link"], f["keys"]["rogue"], "rogue", f["root"] / "rogue.json", 10
        ),
        log=f["root"] / "rogue.log",
    )
    try:
        code = rogue.wait(timeout=120)
    finally:
        stop_process_group(rogue)
    log = (f["root"] / "rogue.log").read_text()
    assert code != 0 and "SuperNode ID" not in log, log[-2000:]


def test_two_hospitals_survive_a_dead_site_and_ledgers_survive_restarts(federation) -> None:
    f, link, root = federation, federation["link"], federation["root"]
    ledgers = {"a": root / "ledgers" / "a.json", "b": root / "ledgers" / "b.json"}
    clients = {
        name: _client(
            f["env"],
            *_join_args(f["cxr128"], f["labels"][name], link, f["keys"][name], f"hospital-{name}", ledgers[name], 10),
            log=root / f"client-{name}.log",
        )
        for name in ("a", "b")
    }
    try:
        link.wait_online(2)
        out = root / "out"
        run = subprocess.Popen(
            [
                "flwr",
                "run",
                "simulations/nih_split",
                "hospitalnet",
                "--stream",
                "--run-config",
                f"num-server-rounds=3 target-epsilon=4.0 output-dir='{out}' run-name='r1' {RUN}",
            ],
            cwd=REPO_ROOT,
            env=link.env,
            stdout=(root / "run1.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while not (out / "r1" / "metrics.csv").is_file() and time.monotonic() < deadline:
            time.sleep(1)
        stop_process_group(clients["b"])  # hospital B dies after round 1
        run.wait(timeout=600)
        card = json.loads((out / "r1" / "model_card.json").read_text())
        metrics = pd.read_csv(out / "r1" / "metrics.csv")
        assert card["rounds_completed"] == 3 and metrics["sites_failed"].sum() >= 1, (root / "run1.log").read_text()[
            -3000:
        ]
        assert metrics["sites_ok"].iloc[-1] == 1
        spent_b = json.loads(ledgers["b"].read_text())["entries"]
        assert [e["mechanism"] for e in spent_b][:2] == ["gaussian-patient-count", "dp-sgd"]
        assert 2 <= len(spent_b) <= 3  # the noisy count, round 1, and the round it died in if it had reserved it
        stop_process_group(clients["a"])

        # Restart both with the same ledgers: B continues its spend; A's new budget is too small for a round.
        spent_a = json.loads(ledgers["a"].read_text())["entries"][-1]["epsilon_after"]
        clients["a"] = _client(
            f["env"],
            *_join_args(
                f["cxr128"], f["labels"]["a"], link, f["keys"]["a"], "hospital-a", ledgers["a"], spent_a + 0.01
            ),
            log=root / "client-a2.log",
        )
        clients["b"] = _client(
            f["env"],
            *_join_args(f["cxr128"], f["labels"]["b"], link, f["keys"]["b"], "hospital-b", ledgers["b"], 10),
            log=root / "client-b2.log",
        )
        link.wait_online(2)
        entries_a = len(json.loads(ledgers["a"].read_text())["entries"])
        second = link.flwr(
            "run",
            "simulations/nih_split",
            "hospitalnet",
            "--stream",
            "--run-config",
            f"num-server-rounds=1 target-epsilon=4.0 output-dir='{out}' run-name='r2' {RUN}",
        )
        assert "hospital-a refused: privacy budget" in second.stdout, second.stdout[-3000:]
        assert len(json.loads(ledgers["a"].read_text())["entries"]) == entries_a, "a refused round must record nothing"
        runs_b = {e["run_id"] for e in json.loads(ledgers["b"].read_text())["entries"]}
        assert runs_b == {"r1", "r2"}
        budget = subprocess.run(
            [*CLIENT, "budget", "--ledger", str(ledgers["b"]), "--json"],
            capture_output=True,
            text=True,
            env=f["env"],
            timeout=60,
        )
        summary = json.loads(budget.stdout)
        assert set(summary["runs"]) == {"r1", "r2"} and summary["spent_epsilon"] > summary["runs"]["r1"]["epsilon"]
        assert json.loads((out / "r2" / "model_card.json").read_text())["sites"][0]["name"] == "hospital-b"
    finally:
        for process in clients.values():
            stop_process_group(process)
