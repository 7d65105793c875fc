"""Flower simulation cost: per-round time against the sites' own compute, for 10 and 100 simulated sites,
with the peak memory of the whole SuperLink process group (sampled from /proc). Each site's compute is
measured in-process on the same data first, so the ratio is taken in one run.
Usage: python -m bench.bench_flower_sim [--sites 10 100] [--rounds 2]"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from bench.common import write_result
from client.site_round import RunPrivacyState, Site, run_site_round
from common.artifacts import clean_state_dict
from common.experiment_config import ExperimentConfig
from common.models import build_models
from common.simulated_sites import read_run_dataset, split_records
from common.site_ledger import Budget
from tests.flower_processes import simulation_superlink

TINY = {"image-size": 32, "local-steps": 2, "g-steps": 2, "batch-size": 4, "g-batch-size": 8, "g-width": 8, "d-width": 8, "latent-dim": 16}


def _group_rss_mib(pgid: int) -> float:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            rss = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{entry}/status").read_text())
            total += int(rss.group(1)) if rss else 0
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


class PeakSampler(threading.Thread):
    """Samples the summed RSS of a process group every 0.5 s, keeping the peak."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid, self.peak, self._stop = pgid, 0.0, threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _group_rss_mib(self.pgid))
            time.sleep(0.5)

    def stop(self) -> float:
        self._stop.set()
        self.join()
        return self.peak


def site_compute_s(config: ExperimentConfig, sites: int, tmp: Path) -> float:
    """Seconds one site's round takes in-process (no Flower), averaged over a few sites."""
    per_site, _ = split_records(config, read_run_dataset(config).records, sites)
    g, d = build_models(config.architecture(4), seed=0)
    weights = {"generator": clean_state_dict(g), "discriminator": clean_state_dict(d)}
    times = []
    for k in range(min(3, sites)):
        site = Site(f"s{k}", per_site[k], tmp / f"l{k}.json", Budget(1e9, config.target_delta))
        start = time.perf_counter()
        run_site_round(config, site, global_weights=weights, run_id="bench", round_number=1, state=RunPrivacyState())
        times.append(time.perf_counter() - start)
    return min(times)


def one(sites: int, rounds: int, root: Path) -> dict:
    overrides = {**TINY, "num-server-rounds": rounds, "phantom-patients": max(200, 4 * sites), "cache-dir": str(root / "cache"), "output-dir": str(root / "out"), "run-name": f"sites{sites}"}
    config = ExperimentConfig.from_run_config(overrides)
    compute = site_compute_s(config, sites, root)
    run_config = " ".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}" for k, v in overrides.items())
    with simulation_superlink(root / f"flwr-{sites}") as superlink:
        sampler = PeakSampler(superlink.process.pid)
        sampler.start()
        start = time.perf_counter()
        result = superlink.flwr("run", "simulations/nih_split", "--stream", "--run-config", run_config, "--federation-config", f"num-supernodes={sites} client-resources-num-cpus=1", timeout=3000)
        wall = time.perf_counter() - start
        peak = sampler.stop()
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    metrics = pd.read_csv(root / "out" / f"sites{sites}" / "metrics.csv")
    round_s = float(metrics["time_s"].iloc[1:].mean()) if len(metrics) > 1 else float(metrics["time_s"].iloc[0])
    ideal = sites * compute / min(sites, os.cpu_count() or 1)
    return {"sites": sites, "rounds": rounds, "wall_s": wall, "round_s": round_s, "site_compute_s": compute,
            "ideal_round_s": ideal, "round_over_ideal": round_s / ideal, "overhead_per_site_round_s": (round_s - ideal) / sites,
            "peak_rss_mib": peak, "peak_rss_per_site_mib": peak / sites}


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
        print(f"{r['sites']} sites: round {r['round_s']:.1f}s vs sites' own compute {r['ideal_round_s']:.1f}s ({r['round_over_ideal']:.1f}x), "
              f"{r['overhead_per_site_round_s']:.2f}s overhead per site-round, peak RSS {r['peak_rss_mib']:.0f} MiB")
    print(write_result("flower_sim", {"rows": rows, "model": TINY}))


if __name__ == "__main__":
    main()
