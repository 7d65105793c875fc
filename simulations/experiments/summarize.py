"""Print the results table of docs/results.md from the runs that run_experiment.py wrote.

    python simulations/experiments/summarize.py runs/ [name-prefix ...]

One row per run folder holding ``evaluation/evaluation.json``; runs repeated with ``--repeat`` (``-r2``,
``-r3``...) are also summarised together (mean and range over the repetitions) below the per-run rows.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

TSTR = "TSTR (train synthetic, test real)"
TRTS = "TRTS (train real, test synthetic)"  # absent from older evaluation files


def _row(evaluation: dict) -> dict[str, float]:
    tstr = evaluation["classifiers"][TSTR]
    diversity = [
        v["synthetic"] for v in evaluation["within_class_diversity"].values() if not math.isnan(v["synthetic"])
    ]
    return {
        "pneumonia_vs_normal": tstr["pneumonia_vs_normal"]["auroc"],
        "macro": tstr["macro_auroc"],
        "fd": evaluation["fidelity"]["overall"]["fid"],
        "two_sample": evaluation["classifier_two_sample_accuracy"],
        "two_sample_auroc": evaluation.get(
            "classifier_two_sample_auroc", math.nan
        ),  # absent from older evaluation files
        "diversity_min": min(diversity),
        "diversity_max": max(diversity),
        "epsilon": evaluation["generator"]["claimed_epsilon"] or math.inf,
        "trts": evaluation["classifiers"].get(TRTS, {}).get("pneumonia_vs_normal", {}).get("auroc", math.nan),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("prefixes", nargs="*", help="only runs whose name starts with one of these")
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for path in sorted(args.runs.glob("*/evaluation/evaluation.json")):
        name = path.parent.parent.name
        if not args.prefixes or name.startswith(tuple(args.prefixes)):
            rows[name] = _row(json.loads(path.read_text()))
    print(
        "| run | TSTR pneumonia vs normal | TSTR macro | TRTS pneumonia vs normal | FD | real-vs-synthetic acc. | AUROC | diversity | epsilon |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, r in rows.items():
        trts = "-" if math.isnan(r["trts"]) else f"{r['trts']:.3f}"
        two_sample_auroc = "-" if math.isnan(r["two_sample_auroc"]) else f"{r['two_sample_auroc']:.2f}"
        print(
            f"| {name} | {r['pneumonia_vs_normal']:.3f} | {r['macro']:.3f} | {trts} | {r['fd']:.1f} | {r['two_sample']:.2f} | {two_sample_auroc} | "
            f"{r['diversity_min']:.2f}-{r['diversity_max']:.2f} | {r['epsilon']:.2f} |"
        )
    groups: dict[str, list[dict[str, float]]] = {}
    for name, r in rows.items():
        groups.setdefault(re.sub(r"-r\d+$", "", name), []).append(r)
    repeated = {name: runs for name, runs in groups.items() if len(runs) > 1}
    if repeated:
        print("\n| setting | runs | TSTR pneumonia vs normal, mean (range) | TSTR macro, mean (range) |")
        print("| --- | ---: | --- | --- |")
        for name, runs in repeated.items():
            cells = []
            for key in ("pneumonia_vs_normal", "macro"):
                values = [r[key] for r in runs]
                cells.append(f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
            print(f"| {name} | {len(runs)} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
