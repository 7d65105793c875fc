"""Paired TSTR of plain against guided sampling: the same generators, the same classifier seeds.

    python simulations/experiments/guided_sampling_pairs.py runs/<run> [runs/<run> ...] [--keep 1 0.5 0.25] [--seeds 0 1 2]

For runs of ``run_experiment.py``: samples each run's published generator at every ``--keep`` (the run's
discriminator from its checkpoint guides keep < 1), trains the TSTR classifier of ``cxr-evaluate`` on the samples
(400 per class) with every ``--seed`` and tests it on the run's held-out patients (``split/holdout.csv`` in
``$CXR_SHARED_DATA/cxr128``). Prints one row per run, seed and keep (TSTR pneumonia vs normal and macro AUROC,
within-class diversity), then per keep the means and the mean paired difference from the first keep. Sampling is
post-processing of the run's DP outputs, so every keep has the run's epsilon.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace
from pathlib import Path

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.evaluation.classifier import TrainSettings, predict_proba, train_classifier
from cxr_fedsynth.common.evaluation.evaluate import synthetic_set
from cxr_fedsynth.common.evaluation.fidelity import within_class_diversity
from cxr_fedsynth.common.evaluation.utility import classification_metrics
from cxr_fedsynth.common.publish.artifacts import load_discriminator, load_generator

SAMPLES_PER_CLASS = 400


def tstr(published, test, keep: float, seed: int) -> tuple[float, float, list[float]]:
    """TSTR pneumonia-vs-normal and macro AUROC, and per-class diversity, for one keep and seed."""
    classes = published.classes
    images, labels = synthetic_set(published, SAMPLES_PER_CLASS, seed=seed, keep=keep)
    model = train_classifier(images, labels, len(classes), TrainSettings(seed=seed))
    metrics = classification_metrics(predict_proba(model, test.images), test.conditions, classes, seed=seed)
    diversity = [within_class_diversity(images[labels == i], seed=seed) for i in range(len(classes))]
    return metrics["pneumonia_vs_normal"]["auroc"], metrics["macro_auroc"], diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    data = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()
    results: dict[float, list[tuple[float, float]]] = {keep: [] for keep in args.keep}
    print("| run | seed | keep | TSTR pneumonia vs normal | TSTR macro | within-class diversity |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for run in args.runs:
        published = load_generator(run)
        published = replace(
            published,
            discriminator=load_discriminator(run / "checkpoint" / "checkpoint.safetensors", published.generator.arch),
        )
        conditions = load_condition_set(published.card["condition_set"])
        test = load_labelled_images(
            data,
            conditions,
            labels=run / "split" / "holdout.csv",
            image_size=published.generator.arch.image_size,
            show_progress=False,
        )
        for seed in args.seeds:
            for keep in args.keep:
                pn, macro, diversity = tstr(published, test, keep, seed)
                results[keep].append((pn, macro))
                print(
                    f"| {run.name} | {seed} | {keep:g} | {pn:.3f} | {macro:.3f} | {' / '.join(f'{d:.2f}' for d in diversity)} |",
                    flush=True,
                )
    base = results[args.keep[0]]
    print(
        f"\n| keep | pairs | TSTR pneumonia vs normal, mean | paired difference from keep {args.keep[0]:g} (s.e.) | TSTR macro, mean | paired difference (s.e.) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for keep, rows in results.items():
        cells = []
        for k in (0, 1):
            diffs = [row[k] - b[k] for row, b in zip(rows, base)]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
            cells += [f"{statistics.mean(row[k] for row in rows):.3f}", f"{statistics.mean(diffs):+.3f} ({se:.3f})"]
        print(f"| {keep:g} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
