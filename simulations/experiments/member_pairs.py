"""Paired TSTR of a run's published generator members, from its own generator alone up to all of them.

    python simulations/experiments/member_pairs.py runs/<run> [runs/<run> ...] [--seeds 0 1]

For runs of ``run_experiment.py`` with ``generator-members`` K > 1: samples each run's published generator (400 per
class, plainly, as ``cxr-evaluate`` draws them) from its first n generators for every n = 1 .. K (n = 1: the run's
own generator, what a run with one member publishes; members train independently of K, so the first n of a run with
K members are exactly what a run with n members publishes), trains the TSTR classifier of ``cxr-evaluate`` on each
with every ``--seed`` and tests it on the run's held-out patients (``split/holdout.csv`` in
``$CXR_SHARED_DATA/cxr128``). Prints one row per run and seed, then per n the means and the mean paired difference
to the own generator and to n - 1 members. All are post-processing of the run's DP outputs: the same epsilon.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.evaluation.classifier import TrainSettings, predict_proba, train_classifier
from cxr_fedsynth.common.evaluation.evaluate import synthetic_set
from cxr_fedsynth.common.evaluation.fidelity import within_class_diversity
from cxr_fedsynth.common.evaluation.utility import classification_metrics
from cxr_fedsynth.common.publish.artifacts import PublishedGenerator, load_generator

SAMPLES_PER_CLASS = 400


def tstr(published: PublishedGenerator, test: SiteImages, seed: int) -> tuple[float, float, list[float]]:
    """TSTR pneumonia-vs-normal and macro AUROC, and per-class diversity, of plain samples."""
    images, labels = synthetic_set(published, SAMPLES_PER_CLASS, seed=seed, keep=1.0)
    model = train_classifier(images, labels, len(published.classes), TrainSettings(seed=seed))
    metrics = classification_metrics(predict_proba(model, test.images), test.conditions, published.classes, seed=seed)
    diversity = [within_class_diversity(images[labels == i], seed=seed) for i in range(len(published.classes))]
    return metrics["pneumonia_vs_normal"]["auroc"], metrics["macro_auroc"], diversity


def first_members(published: PublishedGenerator, count: int) -> PublishedGenerator:
    """The publication as a run with ``count`` members would have made it: its first ``count`` generators."""
    return replace(published, members=published.members[: count - 1])


def _mean_difference(pairs: list[tuple[float, float]]) -> str:
    diffs = [b - a for a, b in pairs]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return f"{statistics.mean(diffs):+.3f} ({se:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    data = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()
    scores: dict[int, dict[tuple[str, int], tuple[float, float]]] = defaultdict(dict)  # n -> (run, seed) -> (pn, macro)
    print("| run | seed | generators n | pneumonia vs normal | macro | diversity |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for run in args.runs:
        published = load_generator(run)
        conditions = load_condition_set(published.card["condition_set"])
        test = load_labelled_images(
            data,
            conditions,
            labels=run / "split" / "holdout.csv",
            image_size=published.generator.arch.image_size,
            show_progress=False,
        )
        for seed in args.seeds:
            for count in range(1, len(published.generators) + 1):
                pn, macro, diversity = tstr(first_members(published, count), test, seed)
                scores[count][run.name, seed] = (pn, macro)
                print(
                    f"| {run.name} | {seed} | {count} | {pn:.3f} | {macro:.3f} | {' / '.join(f'{d:.2f}' for d in diversity)} |",
                    flush=True,
                )
    print("\n| generators n | measure | runs x seeds | mean | paired difference to n = 1 (s.e.) | to n - 1 (s.e.) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for count in sorted(scores):
        for name, k in (("pneumonia vs normal", 0), ("macro", 1)):
            keys = sorted(scores[count])
            row = [scores[count][key][k] for key in keys]
            to_own = _mean_difference([(scores[1][key][k], scores[count][key][k]) for key in keys]) if count > 1 else ""
            to_previous = (
                _mean_difference([(scores[count - 1][key][k], scores[count][key][k]) for key in keys])
                if count > 1
                else ""
            )
            print(f"| {count} | {name} | {len(row)} | {statistics.mean(row):.3f} | {to_own} | {to_previous} |")


if __name__ == "__main__":
    main()
