"""Fidelity of synthetic images in the feature space of an encoder trained here on real images.

Frechet distance and KID (torchmetrics, with our encoder as the feature extractor: no Inception weights are
downloaded, so the numbers are comparable only with other runs using the same encoder), precision / recall /
density / coverage (Naeem et al. 2020, k = 5, blockwise neighbours), a classifier two-sample test, and
pixel-intensity histograms.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from cxr_fedsynth.common.evaluation.classifier import CompactCNN, TrainSettings, predict_proba, train_classifier
from cxr_fedsynth.common.evaluation.neighbours import nearest_neighbours
from cxr_fedsynth.common.evaluation.utility import auroc

PRDC_K = 5
#: optimiser steps of the two-sample classifier (as many as the TSTR classifier takes on 400 images per class)
TWO_SAMPLE_STEPS = 200


class FeatureAdapter(nn.Module):
    """torchmetrics hands uint8 batches [N, C, S, S] (C = 3 for its size probe); ``model.features`` wants one channel
    in [-1, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()[:, :1] / 127.5 - 1.0
        with torch.no_grad():
            return self.model.features(x).double()


def frechet_and_kid(real: np.ndarray, fake: np.ndarray, encoder: CompactCNN) -> dict[str, float]:
    """FID and KID (mean, std) between uint8 image sets [N, S, S] in the encoder's feature space."""
    feature = FeatureAdapter(encoder)
    fid = FrechetInceptionDistance(feature=feature, normalize=False)
    subset = max(2, min(len(real), len(fake), 100))
    kid = KernelInceptionDistance(feature=feature, subset_size=subset, normalize=False)
    for metric in (fid, kid):
        metric.update(torch.from_numpy(real).unsqueeze(1), real=True)
        metric.update(torch.from_numpy(fake).unsqueeze(1), real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def prdc(real_features: np.ndarray, fake_features: np.ndarray, *, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020)."""
    real_radius = nearest_neighbours(real_features, real_features, k=k + 1)[0][:, -1]  # k-th neighbour, self excluded
    fake_radius = nearest_neighbours(fake_features, fake_features, k=k + 1)[0][:, -1]
    fake_to_real_d, fake_to_real_i = nearest_neighbours(fake_features, real_features, k=min(len(real_features), 50))
    within = fake_to_real_d <= real_radius[fake_to_real_i]
    precision = float(within.any(1).mean())
    density = float(within.sum(1).mean() / k)
    real_to_fake_d, _ = nearest_neighbours(real_features, fake_features, k=1)
    recall_d, recall_i = nearest_neighbours(real_features, fake_features, k=min(len(fake_features), 50))
    recall = float((recall_d <= fake_radius[recall_i]).any(1).mean())
    coverage = float((real_to_fake_d[:, 0] <= real_radius).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def two_sample_test(real: np.ndarray, fake: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """A classifier telling real from synthetic, trained on one half and rated on the other: accuracy and AUROC.

    0.5 is ideal (indistinguishable), 1.0 means every held-out image was told apart. The classifier takes
    ``TWO_SAMPLE_STEPS`` optimiser steps whatever the sample size: with a few epochs on a few hundred images it stays
    untrained and predicts one side for all, and its accuracy is then just that side's share of the held-out half.
    """
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    real, fake = real[rng.permutation(len(real))[:n]], fake[rng.permutation(len(fake))[:n]]
    images = np.concatenate([real, fake])
    labels = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
    order = rng.permutation(2 * n)
    train, test = order[:n], order[n:]
    settings = TrainSettings(epochs=math.ceil(TWO_SAMPLE_STEPS / math.ceil(n / TrainSettings.batch_size)), seed=seed)
    scores = predict_proba(train_classifier(images[train], labels[train], 2, settings), images[test])[:, 1]
    return {"accuracy": float(((scores > 0.5) == labels[test]).mean()), "auroc": auroc(scores, labels[test])}


def within_class_diversity(images: np.ndarray, *, pairs: int = 2000, seed: int = 0) -> float:
    """Mean absolute per-pixel difference between random pairs (images in [0, 1]); real CXRs: about 0.16."""
    if len(images) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(images), pairs), rng.integers(0, len(images), pairs)
    keep = a != b
    x = images.astype(np.float32) / 255.0
    return float(np.abs(x[a[keep]] - x[b[keep]]).mean())


def intensity_histogram(images: np.ndarray, bins: int = 32) -> list[float]:
    hist, _ = np.histogram(images, bins=bins, range=(0, 255), density=True)
    return [float(v) for v in hist]
