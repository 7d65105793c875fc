"""Membership-inference attacks on a released generator. Every score: higher = more likely a member.

- GAN-Leaks full black-box (Chen et al. 2020): -min_j ||x - g_j||; calibrated: d_min(x, ref) - d_min(x, gen).
- Monte-Carlo (Hilprecht et al. 2019): share of generated samples within an eps-ball of x, eps = median of the
  candidates' nearest-generated distances.
- DOMIAS (van Breugel et al. 2023): log p_gen(x) - log p_ref(x), Gaussian KDEs in a low-dimensional PCA of
  the embedding.
- LOGAN white-box (Hayes et al. 2019): the discriminator's real/fake score D(x, y).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import gaussian_kde

from cxr_fedsynth.common.evaluation.neighbours import count_within, nearest_neighbours
from cxr_fedsynth.common.gan.models import Discriminator

DOMIAS_DIMS = 5


def gan_leaks(candidates: np.ndarray, generated: np.ndarray) -> np.ndarray:
    return -nearest_neighbours(candidates, generated, k=1)[0][:, 0]


def gan_leaks_calibrated(candidates: np.ndarray, generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (
        nearest_neighbours(candidates, reference, k=1)[0][:, 0]
        - nearest_neighbours(candidates, generated, k=1)[0][:, 0]
    )


def monte_carlo(candidates: np.ndarray, generated: np.ndarray) -> np.ndarray:
    nearest = nearest_neighbours(candidates, generated, k=1)[0][:, 0]
    radius = float(np.median(nearest))
    return count_within(candidates, generated, radius) / len(generated)


def _pca(fit_on: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    mean = fit_on.mean(0)
    _, _, vt = np.linalg.svd(fit_on - mean, full_matrices=False)
    return mean, vt[: min(dims, vt.shape[0])]


def domias(
    candidates: np.ndarray, generated: np.ndarray, reference: np.ndarray, *, dims: int = DOMIAS_DIMS
) -> np.ndarray:
    mean, basis = _pca(np.concatenate([generated, reference]), dims)
    project = lambda x: ((x - mean) @ basis.T).T  # noqa: E731  [dims, n] as scipy wants
    p_gen = gaussian_kde(project(generated)).logpdf(project(candidates))
    p_ref = gaussian_kde(project(reference)).logpdf(project(candidates))
    return p_gen - p_ref


def logan(
    candidates: torch.Tensor, labels: torch.Tensor, discriminator: Discriminator, *, batch: int = 256
) -> np.ndarray:
    """White-box LOGAN on images in [-1, 1] [N, 1, S, S] with their class labels."""
    discriminator.eval()
    scores = []
    with torch.no_grad():
        for start in range(0, len(candidates), batch):
            score, _ = discriminator(candidates[start : start + batch], labels[start : start + batch])
            scores.append(score)
    return torch.cat(scores).numpy()


def patient_level(scores: np.ndarray, patients: list[str], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One score per patient (the max over their images: the attacker's best image) and its membership."""
    order: dict[str, int] = {}
    best: list[float] = []
    member: list[int] = []
    for score, patient, label in zip(scores, patients, labels):
        if patient not in order:
            order[patient] = len(best)
            best.append(float(score))
            member.append(int(label))
        else:
            best[order[patient]] = max(best[order[patient]], float(score))
    return np.array(best), np.array(member)
