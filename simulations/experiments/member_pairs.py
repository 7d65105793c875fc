"""Paired TSTR of a run's published generator members against its own generator alone.

    python simulations/experiments/member_pairs.py runs/<run> [runs/<run> ...] [--seeds 0 1]

For runs of ``run_experiment.py`` with ``generator-members`` > 1: samples each run's published generator (400 per
class, plainly, as ``cxr-evaluate`` draws them) once from all its members and once from the run's own generator
only (the generator a run with one member publishes: the same rounds, DP noise and release), trains the TSTR
classifier of ``cxr-evaluate`` on each with every ``--seed`` and tests it on the run's held-out patients
(``split/holdout.csv`` in ``$CXR_SHARED_DATA/cxr128``). Prints one row per run and seed, then the means and the mean
paired difference. Both are post-processing of the run's DP outputs: the same epsilon.
"""
from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace
from pathlib import Path

from common.artifacts import load_generator
from common.conditions import load_condition_set
from common.evaluation.classifier import TrainSettings, predict_proba, train_classifier
from common.evaluation.evaluate import synthetic_set
from common.evaluation.fidelity import within_class_diversity
from common.evaluation.utility import classification_metrics
from common.site_data import load_labelled_images

SAMPLES_PER_CLASS = 400


def tstr(published, test, seed: int) -> tuple[float, float, list[float]]:
    """TSTR pneumonia-vs-normal and macro AUROC, and per-class diversity, of plain samples."""
    images, labels = synthetic_set(published, SAMPLES_PER_CLASS, seed=seed, keep=1.0)
    model = train_classifier(images, labels, len(published.classes), TrainSettings(seed=seed))
    metrics = classification_metrics(predict_proba(model, test.images), test.conditions, published.classes, seed=seed)
    diversity = [within_class_diversity(images[labels == i], seed=seed) for i in range(len(published.classes))]
    return metrics["pneumonia_vs_normal"]["auroc"], metrics["macro_auroc"], diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    data = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()
    rows: list[tuple[float, float, float, float]] = []
    print("| run | seed | members | own: pneumonia vs normal | macro | diversity | members: pneumonia vs normal | macro | diversity |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for run in args.runs:
        published = load_generator(run)
        conditions = load_condition_set(published.card["condition_set"])
        test = load_labelled_images(data, conditions, labels=run / "split" / "holdout.csv", image_size=published.generator.arch.image_size, show_progress=False)
        for seed in args.seeds:
            own, mixed = tstr(replace(published, members=()), test, seed), tstr(published, test, seed)
            rows.append((own[0], own[1], mixed[0], mixed[1]))
            cells = [f"{pn:.3f} | {macro:.3f} | {' / '.join(f'{d:.2f}' for d in div)}" for pn, macro, div in (own, mixed)]
            print(f"| {run.name} | {seed} | {len(published.generators)} | {cells[0]} | {cells[1]} |", flush=True)
    print("\n| measure | pairs | own generator, mean | all members, mean | paired difference (s.e.) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, k in (("pneumonia vs normal", 0), ("macro", 1)):
        diffs = [row[k + 2] - row[k] for row in rows]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        print(f"| {name} | {len(rows)} | {statistics.mean(r[k] for r in rows):.3f} | {statistics.mean(r[k + 2] for r in rows):.3f} | {statistics.mean(diffs):+.3f} ({se:.3f}) |")


if __name__ == "__main__":
    main()
