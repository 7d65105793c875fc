"""A hostile server against a real site: a SuperLink and a SuperNode (started by ``cxr-client``) on loopback, and
ServerApps under the test's control that try to switch DP off, overspend, shrink the noise, release twice, send a
NaN discriminator, read real-image statistics, choose the site's paths and run changed client code. Every attack is
refused or gains nothing, the ledger records exactly what was spent, and the site still serves an honest run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from flwr.cli.build import build_fab_from_disk

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.plan import COUNT_NOISE_MULTIPLIER, PrivacyPlan
from cxr_fedsynth.common.protocol import PROTECTION
from tests.flower_processes import free_port, insecure_superlink, stop_process_group
from tests.privacy_audit.audit_fixtures import patient_groups

pytestmark = pytest.mark.slow
HOSTILE_APP = Path(__file__).resolve().parent / "hostile_app"
CLIENT = [sys.executable, "-c", "from cxr_fedsynth.client.cli import main; main()"]
#: Changed client code: were it run at the site, it could read the images; here it only leaves a marker.
EVIL_CLIENT = """from pathlib import Path

from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg, context):
    Path({marker!r}).write_text("ran")
    raise RuntimeError("changed client code ran at the site")
"""


#: The site's patients, and the minimum DP-SGD noise its policy accepts: one step at epsilon 10 (little-noise) is
#: under it whatever the noisy patient count, the sequence's 40 steps are over it on every plausible draw.
PATIENTS, MIN_NOISE = 40, 0.6
BASE = {"public-data": ""}  # every hostile app's run config starts from the app's own, then this
LITTLE_NOISE = {"num-server-rounds": 1, "local-steps": 1}
SEQUENCE = {"public-data": "/never/read", "allow-non-chest": True}


def _make_app(root: Path, name: str, config: dict, *, clientapp: str | None = None, extra: dict | None = None) -> Path:
    """A copy of the hostile app with its own run config (and, for one attack, its own client code)."""
    app = root / "apps" / name
    shutil.copytree(HOSTILE_APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    project = (app / "pyproject.toml").read_text()
    values = {"run-name": name, **config}
    for key, value in values.items():
        line = f"{key} = {json.dumps(value) if isinstance(value, str) else str(value).lower()}"
        kept = [row for row in project.splitlines() if not row.startswith(f"{key} =")]
        project = "\n".join(kept) + f"\n{line}"
    if clientapp:
        project = project.replace('clientapp = "cxr_fedsynth.client.app:app"', f'clientapp = "{clientapp}"')
    (app / "pyproject.toml").write_text(project + "\n")
    for file, text in (extra or {}).items():
        (app / file).write_text(text)
    return app


def _fab_hash(app: Path) -> str:
    return hashlib.sha256(build_fab_from_disk(app)).hexdigest()


@pytest.fixture(scope="module")
def attacks(cxr128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    out, marker, site_cache = root / "out", root / "changed-client-ran", root / "site-cache"
    labels = root / "site.csv"
    rows = patient_groups(cxr128_dir, [PATIENTS], seed=11)[0]
    rows[["Image Index", "Finding Labels", "Patient ID"]].to_csv(labels, index=False)
    base = {"output-dir": str(out), **BASE}
    apps = {
        "dp-off": _make_app(root, "dp-off", {**base, "dp": False}),
        "over-cap": _make_app(root, "over-cap", {**base, "target-epsilon": 50.0}),
        "little-noise": _make_app(root, "little-noise", {**base, **LITTLE_NOISE}),
        "changed-client": _make_app(
            root,
            "changed-client",
            base,
            clientapp="evil_client:app",
            extra={"evil_client.py": EVIL_CLIENT.format(marker=str(marker))},
        ),
        "sequence": _make_app(
            root,
            "sequence",
            {**base, **SEQUENCE, "cache-dir": str(root / "evil-cache")},
        ),
    }
    policy = root / "site-policy.yaml"  # the hostile apps carry server code: the site reviewed and pinned them
    trusted = [_fab_hash(app) for name, app in apps.items() if name != "changed-client"]
    site_policy = {"trusted-fab-hashes": trusted, "cache-dir": str(site_cache), "min-noise-multiplier": MIN_NOISE}
    policy.write_text(yaml.safe_dump(site_policy))
    ledger = root / "site" / "ledger.json"
    with insecure_superlink(root / "flwr") as link:
        env = {**os.environ, "FLWR_DISABLE_UPDATE_CHECK": "1"}
        site = subprocess.Popen(
            [
                *CLIENT,
                "--data",
                str(cxr128_dir),
                "--labels",
                str(labels),
                "--superlink",
                link.address,
                "--insecure",
                "--site-name",
                "hospital",
                "--ledger",
                str(ledger),
                "--policy",
                str(policy),
                "--port",
                str(free_port()),
                "--cpu",
            ],
            env=env,
            stdout=(root / "site.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            link.wait_online()
            runs = {name: _run(link, app) for name, app in apps.items()}
        finally:
            stop_process_group(site)
    results = {name: json.loads(p.read_text()) for name in apps if (p := out / f"{name}.json").is_file()}
    entries = json.loads(ledger.read_text())["entries"] if ledger.is_file() else []
    return {
        "root": root,
        "runs": runs,
        "results": results,
        "ledger": entries,
        "marker": marker,
        "site_log": (root / "site.log").read_text(),
        "site_cache": site_cache,
    }


def _run(link, app: Path) -> str:
    result = link.flwr("run", str(app), "loopback", "--stream", timeout=300)
    return result.stdout + result.stderr


def _ledger(attacks: dict, run: str) -> list[str]:
    return [e["mechanism"] for e in attacks["ledger"] if e["run_id"] == run]


def _hostile_plan(run_config: dict) -> PrivacyPlan:
    """The privacy plan a site that allows the feature release makes for a hostile app's run config."""
    project = tomllib.loads((HOSTILE_APP / "pyproject.toml").read_text())
    values = {**project["tool"]["flwr"]["app"]["config"], **BASE, **run_config}
    config = ExperimentConfig.from_run_config({k: v for k, v in values.items() if k in ExperimentConfig.keys()})
    return config.privacy_plan(releases=True)


def test_the_sites_minimum_noise_refuses_little_noise_and_accepts_the_sequence_on_every_draw() -> None:
    """The noisy patient count (std COUNT_NOISE_MULTIPLIER) sets the sample rate and so the noise: the outcomes the
    tests below expect must not depend on the draw."""
    little, sequence = _hostile_plan(LITTLE_NOISE), _hostile_plan(SEQUENCE)
    counts = (1, PATIENTS, PATIENTS + 15 * COUNT_NOISE_MULTIPLIER)  # the more patients, the lower the rate and noise
    little_noise = [little.dp_sgd(n).noise_multiplier for n in counts]
    sequence_noise = [sequence.dp_sgd(n).noise_multiplier for n in counts]
    assert little_noise == sorted(little_noise, reverse=True) and little_noise[0] < MIN_NOISE
    assert sequence_noise == sorted(sequence_noise, reverse=True) and sequence_noise[-1] > MIN_NOISE


def test_the_run_config_cannot_switch_dp_off(attacks) -> None:
    train = attacks["results"]["dp-off"]["train"]
    assert train["outcome"] == "refused" and train["reason"] == "site refused: ConfigError (details in the site's log)"
    assert "unknown run-config key(s) ['dp']" in attacks["site_log"] and _ledger(attacks, "dp-off") == []


def test_a_request_over_the_sites_cap_is_refused(attacks) -> None:
    train = attacks["results"]["over-cap"]["train"]
    assert train["outcome"] == "refused" and "epsilon 50.0, over the site's cap 10.0" in train["reason"]
    assert _ledger(attacks, "over-cap") == []


def test_a_plan_with_too_little_noise_is_refused(attacks) -> None:
    train = attacks["results"]["little-noise"]["train"]
    assert train["outcome"] == "refused" and "under the site's minimum" in train["reason"]
    assert _ledger(attacks, "little-noise") == ["gaussian-patient-count"], "only the noisy count was spent"


def test_changed_client_code_is_refused_before_it_runs(attacks) -> None:
    assert not attacks["marker"].exists(), "the changed client code must never be imported"
    assert "changed-client" in attacks["results"], attacks["runs"]["changed-client"][-3000:]
    train = attacks["results"]["changed-client"]["train"]
    assert train["outcome"] == "error" and "FabRefused" in train["error"] and "carries code" in train["error"]
    assert (
        "refused: it carries code (evil_client.py" in attacks["site_log"] and _ledger(attacks, "changed-client") == []
    )


def test_one_release_per_run_nan_weights_and_unknown_mechanisms_are_refused(attacks) -> None:
    seq = attacks["results"]["sequence"]
    assert seq["release"]["outcome"] == "ok" and "feature-sums" in seq["release"]["keys"], seq["release"]
    assert set(seq["release"]["keys"]) <= set(PROTECTION), "the release carries only protected values"
    assert seq["second-release"]["outcome"] == "refused" and "one per run" in seq["second-release"]["reason"]
    assert seq["nan-discriminator"]["outcome"] == "refused" and "non-finite" in seq["nan-discriminator"]["reason"]
    assert seq["evaluate"]["outcome"] == "refused" and "unknown mechanism" in seq["evaluate"]["reason"]
    assert seq["garbage"] == {
        **seq["garbage"],
        "outcome": "refused",
        "reason": "site error (details in the site's log)",
    }


def test_no_real_image_statistic_or_count_leaves_and_the_site_keeps_working(attacks) -> None:
    train = attacks["results"]["sequence"]["train"]
    assert train["outcome"] == "ok", f"after every attack the site still serves an honest request: {train}"
    assert set(train["keys"]) <= set(PROTECTION) and "discriminator" in train["keys"]
    assert not {"real-score", "d-loss", "aux-accuracy", "num-examples", "sample-rate"} & set(train["metrics"])
    assert train["metrics"]["epsilon"] == 10.0, "the approved bound, not an accountant value that depends on N"
    assert _ledger(attacks, "sequence") == ["gaussian-patient-count", "gaussian-class-feature-sums", "dp-sgd"]


def test_server_chosen_paths_are_ignored_and_the_cache_is_private(attacks) -> None:
    assert not (attacks["root"] / "evil-cache").exists(), "the site caches where its own policy says"
    cached = list((attacks["site_cache"] / "images").glob("*.npz"))
    assert cached and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached)
    assert stat.S_IMODE((attacks["site_cache"] / "images").stat().st_mode) == 0o700
