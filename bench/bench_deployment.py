"""A deployed federation's time per round at 64 and 128 px, side by side in one run.

A real SuperLink on loopback and two hospitals joined with ``cxr-client`` (each a SuperNode with its own ledger
and half of cxr128's non-NIH patients; the NIH rows are the public set), then ``flwr run simulations/nih_split``
once per size with the default settings except a short public pretraining (it does not change a round's cost)
and 4 rounds. Reported: each size's median time of rounds 2-4 from the run's metrics.csv (round 1 also carries
the feature release), and the ratio to the smallest size. Every process is stopped by PID.
Usage: python -m bench.bench_deployment [--data ../shared/data/cxr128] [--sizes 64 128] [--rounds 4]"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.common import split_public, write_result
from tests.flower_processes import REPO_ROOT, free_port, insecure_superlink, stop_process_group

CLIENT = [sys.executable, "-c", "from cxr_fedsynth.client.cli import main; main()"]
PUBLIC_STEPS = 50


def split_tables(data: Path, tmp: Path) -> tuple[Path, list[Path]]:
    """public.csv (NIH rows) and two hospitals' tables (the other patients, halved by patient)."""
    private = split_public(data, tmp)
    patients = sorted(set(private["Patient ID"]))
    sites = []
    for k, chosen in enumerate((set(patients[0::2]), set(patients[1::2]))):
        path = tmp / f"site-{k}.csv"
        private[private["Patient ID"].isin(chosen)].to_csv(path, index=False)
        sites.append(path)
    return tmp / "public.csv", sites


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr128"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    data = args.data.resolve()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        public, sites = split_tables(data, tmp)
        with insecure_superlink(tmp / "flwr") as link:
            clients = []
            try:
                for k, labels in enumerate(sites):
                    log = (tmp / f"hospital-{k}.log").open("w")
                    command = [
                        *CLIENT, "--data", str(data), "--labels", str(labels), "--superlink", link.address,
                        "--insecure", "--site-name", f"hospital-{k}", "--ledger", str(tmp / f"ledger-{k}.json"),
                        "--budget-epsilon", str(10 * len(args.sizes)), "--cache-dir", str(tmp / f"cache-{k}"),
                        "--port", str(free_port()), "--cpu",
                    ]  # fmt: skip
                    clients.append(
                        subprocess.Popen(
                            command, env=link.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    )
                link.wait_online(len(sites), timeout=120)
                per_round = {size: run_at(link, size, args.rounds, data, public, tmp) for size in args.sizes}
            finally:
                for process in clients:
                    stop_process_group(process)
    smallest = min(per_round)
    result = {
        "data": str(data),
        "hospitals": len(sites),
        "rounds": args.rounds,
        "median_round_s": per_round,
        f"ratio_to_{smallest}px": {size: round(t / per_round[smallest], 2) for size, t in per_round.items()},
    }
    print(result)
    print(f"written {write_result('deployment', result)}")


def run_at(link, size: int, rounds: int, data: Path, public: Path, tmp: Path) -> float:
    """One deployed run at ``size`` px; its median seconds per round after the first."""
    config = (
        f"image-size={size} num-server-rounds={rounds} public-data='{data}' public-labels='{public}' "
        f"public-steps={PUBLIC_STEPS} output-dir='{tmp / 'out'}' run-name='deploy-{size}px'"
    )
    result = link.flwr("run", str(REPO_ROOT / "simulations" / "nih_split"), "loopback", "--stream",
                       "--run-config", config, timeout=3600)  # fmt: skip
    metrics = tmp / "out" / f"deploy-{size}px" / "metrics.csv"
    if not metrics.is_file():
        raise RuntimeError(f"the {size} px run published nothing:\n{(result.stdout + result.stderr)[-3000:]}")
    table = pd.read_csv(metrics)
    if len(table) < rounds or table["sites_ok"].min() < 2:
        raise RuntimeError(f"the {size} px run lost a hospital:\n{table.to_string()}")
    return round(float(table["time_s"].iloc[1:].median()), 2)


if __name__ == "__main__":
    main()
