"""Print the results tables of docs/results.md from the runs that run_experiment.py wrote.

    python simulations/experiments/summarize.py runs/ [name-prefix ...] [--on holdout|test]

One row per setting: runs repeated with ``--repeat`` (``-r2``, ``-r3``...) are summarised together as mean and
standard error over the repetitions (shown where the runs differ: the baselines and the controls do not depend on
the generator). Utility: pneumonia vs normal AUROC of TSTR and
of the consortium's alternatives (DP-SGD on the real images from scratch and after public pretraining, the public
set alone); realism: the self-supervised encoder's figures with their real-vs-real control and the public real
X-rays' (another source) figures.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

from run_experiment import (  # the script beside this one (run as a script, its folder is on sys.path)
    EVALUATIONS,
    REPEAT_SUFFIX,
)

from cxr_fedsynth.common.evaluation.evaluate import DP_SGD_DIRECT, PUBLIC_ONLY, PUBLIC_PRETRAINED_DP_SGD, TSTR

UTILITY = {"TSTR": TSTR, "DP-SGD": DP_SGD_DIRECT, "public + DP-SGD": PUBLIC_PRETRAINED_DP_SGD, "public": PUBLIC_ONLY}
REALISM = {"FD": "frechet_distance", "precision": "precision", "recall": "recall", "probe": "linear_probe_auroc"}


def _pneumonia_vs_normal(classifiers: dict, prefix: str) -> float:
    found = [v for k, v in classifiers.items() if k.startswith(prefix)]
    return found[0]["pneumonia_vs_normal"]["auroc"] if found else math.nan


def _row(evaluation: dict) -> dict[str, float]:
    classifiers = evaluation["classifiers"]
    row = {label: _pneumonia_vs_normal(classifiers, prefix) for label, prefix in UTILITY.items()}
    row["TSTR macro"] = classifiers[TSTR]["macro_auroc"]
    realism = evaluation.get("realism") or {}
    for label, key in REALISM.items():
        row[label] = realism.get("synthetic", {}).get(key, math.nan)
        row[f"{label} control"] = realism.get("real_control", {}).get(key, math.nan)
        row[f"{label} other source"] = realism.get("other_source_real", {}).get(key, math.nan)
    return row


def _cell(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    mean = statistics.mean(values)
    if len(set(values)) < 2:  # one run, or a figure that does not depend on the run (a baseline, a control)
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("prefixes", nargs="*", help="only runs whose name starts with one of these")
    parser.add_argument("--on", choices=sorted(EVALUATIONS), default="holdout", help="which evaluation to read")
    args = parser.parse_args()
    groups: dict[str, list[dict[str, float]]] = {}
    for path in sorted(args.runs.glob(f"*/{EVALUATIONS[args.on]}/evaluation.json")):
        name = path.parent.parent.name
        if not args.prefixes or name.startswith(tuple(args.prefixes)):
            groups.setdefault(re.sub(REPEAT_SUFFIX, "", name), []).append(_row(json.loads(path.read_text())))
    columns = [*UTILITY, "TSTR macro"]
    print(f"Pneumonia vs normal AUROC on the {args.on} patients (mean ± standard error over runs):\n")
    print("| setting | runs | " + " | ".join(columns) + " |")
    print("| --- | ---: |" + " ---: |" * len(columns))
    for name, runs in groups.items():
        print(f"| {name} | {len(runs)} | " + " | ".join(_cell([r[c] for r in runs]) for c in columns) + " |")
    print("\nRealism in the self-supervised encoder (synthetic / real-vs-real control / public real X-rays):\n")
    print("| setting | " + " | ".join(REALISM) + " |")
    print("| --- |" + " ---: |" * len(REALISM))
    for name, runs in groups.items():
        cells = [
            " / ".join(_cell([r[f"{c}{part}"] for r in runs]) for part in ("", " control", " other source"))
            for c in REALISM
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
