"""Realism figures in the self-supervised encoder's space, each beside its real-vs-real control.

The real held-out images are split in two halves by patient, A and B. Every figure compares A with the
synthetic images (as many as B holds) and, as the control, A with B: the control is what a perfect generator
scores with this many images. Figures: Frechet distance (torchmetrics, the encoder as feature extractor),
precision / recall / density / coverage, a linear-probe two-sample test (logistic regression on the frozen
features, 5-fold cross-validated AUROC: 0.5 = indistinguishable) and the trained-CNN two-sample test. Given real
X-rays of other patients from another source (the public set), the same figures for them are the reference of
what real images of another population score. The synthetic images (and the other-source ones) are drawn
several times; the encoder's figures are means over the draws, so one lucky or unlucky draw of about a hundred
images does not decide them, and each draw's figures are kept beside the mean. The CNN two-sample test trains a
classifier per comparison and runs on the first draw only.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchmetrics.image.fid import FrechetInceptionDistance

from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.evaluation import fidelity
from cxr_fedsynth.common.evaluation.classifier import embed
from cxr_fedsynth.common.evaluation.realism_encoder import RealismEncoder

PROBE_FOLDS = 5
MIN_IMAGES_PER_HALF = 10
DEFAULT_DRAWS = 5  # synthetic (and other-source) draws the figures are averaged over


def frechet_distance(a: np.ndarray, b: np.ndarray, encoder: RealismEncoder) -> float:
    """Frechet distance between uint8 image sets [N, S, S] in the encoder's features."""
    metric = FrechetInceptionDistance(feature=fidelity.FeatureAdapter(encoder), normalize=False)
    metric.update(torch.from_numpy(a).unsqueeze(1), real=True)
    metric.update(torch.from_numpy(b).unsqueeze(1), real=False)
    return float(metric.compute())


def linear_probe_auroc(a_features: np.ndarray, b_features: np.ndarray, *, seed: int = 0) -> float:
    """Cross-validated AUROC of a logistic regression telling set A from set B on frozen features."""
    x = np.concatenate([a_features, b_features])
    y = np.r_[np.zeros(len(a_features)), np.ones(len(b_features))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(PROBE_FOLDS, shuffle=True, random_state=seed)
    scores = cross_val_predict(probe, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def patient_halves(patient_ids: list[str], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves of the images, split by patient (no patient in both)."""
    patients = sorted(set(patient_ids))
    chosen = set(np.random.default_rng(seed).permutation(patients)[: len(patients) // 2].tolist())
    in_a = np.array([p in chosen for p in patient_ids])
    a, b = np.flatnonzero(in_a), np.flatnonzero(~in_a)
    if min(len(a), len(b)) < MIN_IMAGES_PER_HALF:
        raise DataError(
            f"realism figures need at least {2 * MIN_IMAGES_PER_HALF} held-out images of 2+ patients "
            f"(got halves of {len(a)} and {len(b)}); give a larger --real-test"
        )
    return a, b


def encoder_figures(a: np.ndarray, b: np.ndarray, encoder: RealismEncoder, *, seed: int = 0) -> dict[str, float]:
    """The figures in the encoder's features of uint8 set ``b`` against ``a``: Frechet distance, precision /
    recall / density / coverage and the linear probe."""
    a_features, b_features = embed(encoder, a), embed(encoder, b)
    return {
        "frechet_distance": frechet_distance(a, b, encoder),
        **fidelity.prdc(a_features, b_features),
        "linear_probe_auroc": linear_probe_auroc(a_features, b_features, seed=seed),
    }


def _over_draws(a: np.ndarray, draws: list[np.ndarray], encoder: RealismEncoder, *, seed: int) -> tuple[dict, list]:
    """The encoder's figures of every draw against ``a``, their means, and the CNN test on the first draw."""
    per_draw = [encoder_figures(a, drawn, encoder, seed=seed) for drawn in draws]
    cnn = fidelity.two_sample_test(a, draws[0], seed=seed)
    return {**mean_figures(per_draw), "cnn_two_sample_auroc": cnn["auroc"]}, per_draw


def class_mix_counts(available: np.ndarray, wanted: np.ndarray) -> dict[int, int]:
    """Images per class that keep ``wanted``'s class mix and fit in ``available`` (both class-index arrays)."""
    classes, counts = np.unique(wanted, return_counts=True)
    scale = min(1.0, *(np.sum(available == c) / n for c, n in zip(classes, counts)))
    return {int(c): int(n * scale) for c, n in zip(classes, counts)}


def pick_per_class(labels: np.ndarray, counts: dict[int, int], *, seed: int = 0) -> np.ndarray:
    """Random indices into ``labels`` with ``counts[c]`` of each class c."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in counts.items()])


def mean_figures(draws: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's mean over the draws."""
    return {key: float(np.mean([draw[key] for draw in draws])) for key in draws[0]}


def realism_figures(
    real: np.ndarray,
    real_labels: np.ndarray,
    patient_ids: list[str],
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    encoder: RealismEncoder,
    *,
    other_source: np.ndarray | None = None,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> dict[str, dict]:
    """Figures of A vs synthetic (``synthetic``) and of A vs B (``real_control``) for uint8 sets [N, S, S]. Both
    compared sets are drawn with B's class mix and the same size, so only how the images look can tell them apart.
    ``other_source`` (real images of other patients, e.g. the public set) adds ``other_source_real``: A vs as many
    of them, drawn at random (their class mix is their own). The synthetic and other-source figures are means over
    ``draws`` independent draws (the CNN test: the first draw's); ``draws`` holds each draw's encoder figures."""
    if real.shape[1:] != synthetic.shape[1:]:
        raise DataError(f"real images are {real.shape[1:]} px, synthetic {synthetic.shape[1:]}: compare at one size")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    a, b = patient_halves(patient_ids, seed=seed)
    counts = class_mix_counts(synthetic_labels, real_labels[b])
    if sum(counts.values()) < MIN_IMAGES_PER_HALF:
        raise DataError("too few synthetic images of some class to match the real class mix: raise --samples-per-class")
    control = real[b][pick_per_class(real_labels[b], counts, seed=seed)]
    drawn = [synthetic[pick_per_class(synthetic_labels, counts, seed=seed + k)] for k in range(draws)]
    synthetic_figures, synthetic_draws = _over_draws(real[a], drawn, encoder, seed=seed)
    figures = {
        "synthetic": synthetic_figures,
        "real_control": _over_draws(real[a], [control], encoder, seed=seed)[0],
        "images": {"real_a": int(len(a)), "compared": int(sum(counts.values()))},
        "draws": {"synthetic": synthetic_draws},
    }
    if other_source is not None:
        if other_source.shape[1:] != real.shape[1:]:
            raise DataError(f"other-source images are {other_source.shape[1:]} px, real {real.shape[1:]}")
        count = min(figures["images"]["compared"], len(other_source))
        drawn = [
            other_source[np.random.default_rng(seed + k).choice(len(other_source), count, replace=False)]
            for k in range(draws)
        ]
        figures["other_source_real"], figures["draws"]["other_source_real"] = _over_draws(
            real[a], drawn, encoder, seed=seed
        )
        figures["images"]["other_source"] = int(count)
    return figures
