"""How far can matching class means carry pneumonia vs normal? Linear probes on the images' 8 x 8 cell means.

    python simulations/experiments/cell_probe.py runs/<run> [runs/<run> ...] [--release-epsilon 5]

On the split of the first run (``split/train.csv``, ``split/holdout.csv`` and ``split/public.csv`` from
``$CXR_SHARED_DATA/cxr128``), every image becomes its 64 cell means (the raw form of the release's pixel block),
and a linear score w.x is rated by its pneumonia-vs-normal AUROC on the held-out patients:

- real data: w = the class-mean difference d (all that matching class means conveys when G's own spread is
  ignored), and w = (C + lambda I)^-1 d with C the real within-class covariance (what the second moments add);
- each run: d from its synthetic samples (400 per class, plain sampling, as ``cxr-evaluate`` draws them), with
  the identity, with the synthetic within-class covariance (the metric a classifier trained on G's samples
  learns), with that covariance shrunk by lambda 10 (G's spread made nearly isotropic) and with the real
  covariance (lambda 3); beside the run's TSTR from ``evaluation/evaluation.json``;
- a DP release of the within-class covariance: the sites' per-patient second moments about the public mean,
  clipped to norm ``--clip``, Gaussian noise at the release's noise multiplier for ``--release-epsilon`` per site
  (4 sites), shrunk by lambda: the metric G could be asked to match at that cost.
Offline analysis of the private images: a diagnostic, not part of a run.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.evaluation.evaluate import synthetic_set
from cxr_fedsynth.common.gan.feature_matching import pixel_cells
from cxr_fedsynth.common.privacy.accounting import plan_noise_multiplier
from cxr_fedsynth.common.publish.artifacts import load_generator

GRID = 8
SHRINKAGE = (0.01, 1.0, 3.0, 10.0)  # lambda, in units of the covariance's mean eigenvalue


def cell_means(images: np.ndarray) -> np.ndarray:
    """[N, GRID * GRID] cell means of uint8 images, in [0, 1]."""
    return pixel_cells(torch.from_numpy(images.astype(np.float64) / 255.0)[:, None], GRID, statistics="mean").numpy()


def auroc(positives: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of ``scores`` for the boolean ``positives``."""
    return float(binary_auroc(torch.from_numpy(scores), torch.from_numpy(positives.astype(np.int64))))


def within_class_cov(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Covariance of the rows about their own class's mean."""
    return np.cov(np.concatenate([x[labels == c] - x[labels == c].mean(0) for c in np.unique(labels)]).T)


def lda(diff: np.ndarray, cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """(cov + shrinkage * mean eigenvalue * I)^-1 diff."""
    return np.linalg.solve(cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov)), diff)


def pneumonia_vs_normal(
    x: np.ndarray, labels: np.ndarray, normal: int, pneumonia: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the two classes and whether each is pneumonia."""
    rows = (labels == normal) | (labels == pneumonia)
    return x[rows], labels[rows] == pneumonia


def dp_covariance(
    patients: np.ndarray,
    labels: np.ndarray,
    centre: np.ndarray,
    *,
    clip: float,
    noise: float,
    sites: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Within-class covariance from a simulated Gaussian release of the patients' second moments about ``centre``
    (each row clipped to norm ``clip``: sensitivity clip^2 per patient; noise std noise * clip^2 per entry and site);
    the exact class means' part is subtracted (the release of the means already carries it)."""
    z = patients - centre
    z = z * np.minimum(1.0, clip / np.linalg.norm(z, axis=1, keepdims=True))
    noise_sum = sum(np.triu(rng.normal(0.0, noise * clip**2, (z.shape[1],) * 2)) for _ in range(sites))
    second = z.T @ z + noise_sum + np.triu(noise_sum, 1).T
    means = sum(
        (labels == c).sum() * np.outer(z[labels == c].mean(0), z[labels == c].mean(0)) for c in np.unique(labels)
    )
    return (second - means) / len(z)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument(
        "--release-epsilon", type=float, default=5.0, help="epsilon per site of the simulated covariance release"
    )
    parser.add_argument("--clip", type=float, default=1.0)
    args = parser.parse_args()
    data = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()
    conditions = load_condition_set("coarse")
    normal, pneumonia = conditions.names.index("No Finding"), conditions.names.index("Pneumonia")
    split = args.runs[0] / "split"
    train, test, public = (
        load_labelled_images(data, conditions, labels=split / f"{name}.csv", image_size=64, show_progress=False)
        for name in ("train", "holdout", "public")
    )
    x_test, y_test = pneumonia_vs_normal(cell_means(test.images), test.conditions, normal, pneumonia)
    train_cells = cell_means(train.images)
    x_train, y_train = pneumonia_vs_normal(train_cells, train.conditions, normal, pneumonia)
    real_diff = x_train[y_train].mean(0) - x_train[~y_train].mean(0)
    real_cov = within_class_cov(x_train, y_train)
    print("real cell means, pneumonia vs normal AUROC on the held-out patients:")
    print(f"  class-mean difference: {auroc(y_test, x_test @ real_diff):.3f}")
    print(
        "  with the real within-class covariance, lambda "
        + ", ".join(f"{s:g}: {auroc(y_test, x_test @ lda(real_diff, real_cov, s)):.3f}" for s in SHRINKAGE)
    )

    print(
        "synthetic class-mean difference d of each run | TSTR | cos(d, real d) | |d| / |real d| | AUROC with identity, synthetic cov, synthetic cov (lambda 10), real cov (lambda 3)"
    )
    synthetic_diffs = []
    for run in args.runs:
        published = load_generator(run)
        images, labels = synthetic_set(published, 400, seed=0, keep=1.0)
        x_syn, y_syn = pneumonia_vs_normal(cell_means(images), labels, normal, pneumonia)
        diff = x_syn[y_syn].mean(0) - x_syn[~y_syn].mean(0)
        synthetic_diffs.append(diff)
        tstr = json.loads((run / "evaluation" / "evaluation.json").read_text())["classifiers"][
            "TSTR (train synthetic, test real)"
        ]["pneumonia_vs_normal"]["auroc"]
        cos = diff @ real_diff / np.linalg.norm(diff) / np.linalg.norm(real_diff)
        synthetic_cov = within_class_cov(x_syn, y_syn)
        scores = [
            x_test @ diff,
            x_test @ lda(diff, synthetic_cov, SHRINKAGE[0]),
            x_test @ lda(diff, synthetic_cov, 10.0),
            x_test @ lda(diff, real_cov, 3.0),
        ]
        print(
            f"  {run.name}: {tstr:.3f} | {cos:.2f} | {np.linalg.norm(diff) / np.linalg.norm(real_diff):.2f} | "
            + " ".join(f"{auroc(y_test, s):.3f}" for s in scores)
        )

    patient_index = np.unique(np.asarray(train.patient_ids), return_inverse=True)[1]
    patients = np.stack([train_cells[patient_index == i].mean(0) for i in range(patient_index.max() + 1)])
    patient_labels = np.array([train.conditions[patient_index == i][0] for i in range(patient_index.max() + 1)])
    noise = plan_noise_multiplier(target_epsilon=args.release_epsilon, delta=1e-5, sample_rate=1.0, steps=1)
    public_mean = cell_means(public.images).mean(0)
    rng = np.random.default_rng(0)
    print(
        f"DP covariance release (epsilon {args.release_epsilon:g} per site, noise {noise:.2f}, clip {args.clip:g}, 4 sites), mean over the runs' d and 5 noise draws:"
    )
    for shrinkage in SHRINKAGE:
        values = [
            auroc(
                y_test,
                x_test
                @ lda(
                    d,
                    dp_covariance(patients, patient_labels, public_mean, clip=args.clip, noise=noise, sites=4, rng=rng),
                    shrinkage,
                ),
            )
            for _ in range(5)
            for d in synthetic_diffs
        ]
        exact = np.mean([auroc(y_test, x_test @ lda(d, real_cov, shrinkage)) for d in synthetic_diffs])
        print(f"  lambda {shrinkage:g}: {np.mean(values):.3f} (exact real covariance: {exact:.3f})")


if __name__ == "__main__":
    main()
