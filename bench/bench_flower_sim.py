"""Flower simulation cost: per-round time against the sites' own compute, for 10 and 100 simulated sites,
with the peak rise in the machine's used memory during the run (Ray starts its own process groups, so the
whole machine is sampled from /proc/meminfo; run it on an otherwise idle machine). Each site's compute is
measured in-process on the same data first (warm cache, second call), so the ratio is taken in one run.
Usage: python -m bench.bench_flower_sim [--sites 10 100] [--rounds 2]"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from bench.common import write_result
from cxr_fedsynth.client.site_round import RunPrivacyState, Site, run_site_round, site_plan
from cxr_fedsynth.common.data.simulated_sites import read_run_dataset, split_records
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.site_policy import SitePolicy
from cxr_fedsynth.common.publish.artifacts import clean_state_dict
from tests.flower_processes import simulation_superlink

TINY = {
    "image-size": 32,
    "local-steps": 2,
    "g-steps": 2,
    "batch-size": 4,
    "g-batch-size": 8,
    "g-width": 8,
    "d-width": 8,
    "latent-dim": 16,
}


def used_memory_mib() -> float:
    """MemTotal - MemAvailable of the whole machine."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024


class PeakSampler(threading.Thread):
    """Samples the machine's used memory every 0.5 s, keeping the peak rise over the starting level."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.baseline, self.peak, self._stopping = used_memory_mib(), 0.0, threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            self.peak = max(self.peak, used_memory_mib() - self.baseline)
            time.sleep(0.5)

    def stop(self) -> float:
        self._stopping.set()
        self.join()
        return self.peak


def site_compute_s(config: ExperimentConfig, sites: int, tmp: Path) -> float:
    """Seconds one site's round takes in-process (no Flower): best warm round over a few sites."""
    per_site = split_records(config, read_run_dataset(config).records, sites).sites
    g, d = build_models(config.architecture(4), seed=0)
    weights = {"generator": clean_state_dict(g), "discriminator": clean_state_dict(d)}
    plan = site_plan(config, SitePolicy())
    times = []
    for k in range(min(3, sites)):
        policy = SitePolicy(budget_epsilon=1e9, max_run_epsilon=config.target_epsilon)
        site = Site(f"s{k}", per_site[k], tmp / f"l{k}.json", policy)
        # Round 1 fills the cache and plans the noise (once per run, as in a real run); round 2 is timed.
        _, state = run_site_round(
            config, site, global_weights=weights, run_id="bench", round_number=1, state=RunPrivacyState(), plan=plan
        )
        for round_number in (2, 3, 4):
            start = time.perf_counter()
            run_site_round(
                config, site, global_weights=weights, run_id="bench", round_number=round_number, state=state, plan=plan
            )
            times.append(time.perf_counter() - start)
    return min(times)


def site_compute_in_child(overrides: dict, sites: int, tmp: Path) -> float:
    """:func:`site_compute_s` in a fresh interpreter, so nothing left in this process skews it."""
    code = (
        "import json, sys; from pathlib import Path; from bench.bench_flower_sim import site_compute_s;"
        "from cxr_fedsynth.common.experiment_config import ExperimentConfig;"
        f"print(site_compute_s(ExperimentConfig.from_run_config(json.loads(sys.argv[1])), {sites}, Path({str(tmp)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(overrides)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return float(out.stdout.strip().splitlines()[-1])


def one(sites: int, rounds: int, root: Path) -> dict:
    overrides = {
        **TINY,
        "num-server-rounds": rounds,
        "phantom-patients": max(200, 4 * sites),
        "cache-dir": str(root / "cache"),
        "output-dir": str(root / "out"),
        "run-name": f"sites{sites}",
    }
    (root / f"site-{sites}").mkdir()
    compute = site_compute_in_child(overrides, sites, root / f"site-{sites}")
    run_config = " ".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}" for k, v in overrides.items())
    with simulation_superlink(root / f"flwr-{sites}") as superlink:
        sampler = PeakSampler()
        sampler.start()
        start = time.perf_counter()
        result = superlink.flwr(
            "run",
            "simulations/nih_split",
            "--stream",
            "--run-config",
            run_config,
            "--federation-config",
            f"num-supernodes={sites} client-resources-num-cpus=1",
            timeout=3000,
        )
        wall = time.perf_counter() - start
        peak = sampler.stop()
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    metrics = pd.read_csv(root / "out" / f"sites{sites}" / "metrics.csv")
    round_s = float(metrics["time_s"].iloc[1:].mean()) if len(metrics) > 1 else float(metrics["time_s"].iloc[0])
    ideal = sites * compute / min(sites, os.cpu_count() or 1)
    return {
        "sites": sites,
        "rounds": rounds,
        "wall_s": wall,
        "round_s": round_s,
        "site_compute_s": compute,
        "ideal_round_s": ideal,
        "round_over_ideal": round_s / ideal,
        "overhead_per_site_round_s": (round_s - ideal) / sites,
        "peak_memory_rise_mib": peak,
        "peak_memory_per_site_mib": peak / sites,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-flower-"))
    try:
        rows = [one(n, args.rounds, root) for n in args.sites]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        print(
            f"{r['sites']} sites: round {r['round_s']:.1f}s vs sites' own compute {r['ideal_round_s']:.1f}s ({r['round_over_ideal']:.1f}x), "
            f"{r['overhead_per_site_round_s']:.2f}s overhead per site-round, peak memory rise {r['peak_memory_rise_mib']:.0f} MiB"
        )
    print(write_result("flower_sim", {"rows": rows, "model": TINY}))


if __name__ == "__main__":
    main()
