"""How many synthetic images per class the TSTR classifier should train on: TSTR against the count.

    python simulations/experiments/synthetic_count.py runs/default-eps10 [runs/default-eps10-r2 ...]
        [--counts 400,1200,2400] [--on holdout|test]

For each run and count, ``cxr-evaluate``'s TSTR alone: the same draw of the published generator, the same
classifier and training settings, tested on the run's validation patients (``--on test`` only for a count already
chosen). Prints one row per run and count, then the mean per count: pneumonia vs normal AUROC and macro AUROC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from run_experiment import DATA, EVALUATIONS  # the script beside this one (run as a script, its folder is on sys.path)

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.evaluation.classifier import TrainSettings, predict_proba, train_classifier
from cxr_fedsynth.common.evaluation.evaluate import EvaluationRequest, synthetic_set
from cxr_fedsynth.common.evaluation.utility import classification_metrics
from cxr_fedsynth.common.publish.artifacts import load_generator


def tstr(run: Path, counts: list[int], on: str) -> dict[int, tuple[float, float]]:
    """Pneumonia vs normal and macro AUROC of the TSTR classifier at each synthetic count."""
    published = load_generator(run)
    request = EvaluationRequest(generator_dir=run, real_train=DATA, real_test=DATA, show_progress=False)
    real = request.read(
        DATA,
        run / "split" / f"{on}.csv",
        load_condition_set(published.card["condition_set"]),
        published.image_size,
    )
    settings = TrainSettings(epochs=request.epochs, seed=request.seed)
    figures = {}
    for count in counts:
        images, labels = synthetic_set(published, count, seed=request.seed, keep=published.sampling_keep)
        model = train_classifier(images, labels, len(published.classes), settings)
        metrics = classification_metrics(
            predict_proba(model, real.images), real.conditions, published.classes, seed=request.seed
        )
        figures[count] = (metrics["pneumonia_vs_normal"]["auroc"], metrics["macro_auroc"])
        print(
            f"{run.name}: {count} per class: pneumonia vs normal {figures[count][0]:.3f}, "
            f"macro {figures[count][1]:.3f}",
            flush=True,
        )
    return figures


def _standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of run_experiment.py")
    parser.add_argument("--counts", default="400,1200,2400", help="synthetic images per class, comma-separated")
    parser.add_argument("--on", choices=sorted(EVALUATIONS), default="holdout")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    table = [tstr(run, counts, args.on) for run in args.runs]
    for count in counts:
        pn, macro = np.array([row[count] for row in table]).T
        print(
            f"{count} per class, mean of {len(table)} run(s): pneumonia vs normal {pn.mean():.3f} +- {_standard_error(pn):.3f}, "
            f"macro {macro.mean():.3f} +- {_standard_error(macro):.3f}"
        )


if __name__ == "__main__":
    main()
