"""Near-copies of training images among generated samples, and distance to closest record (DCR).

Copies (Carlini et al. 2023): a sample is a copy when its distance to the nearest training image is below
``ratio`` (1/3) of its mean distance to its ``k`` nearest training images; also reported: the
nearest/second-nearest ratio (NNDR) and exact or near-exact matches.
DCR: distances synthetic->train against holdout->train, and the share of synthetic samples closer to train
than to an equal-size holdout set (about 0.5 when the generator does not favour its training data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxr_fedsynth.common.evaluation.neighbours import nearest_neighbours

COPY_RATIO = 1 / 3
NEIGHBOURS = 50
#: In embedding space a copy must be closer to train than this quantile of unseen patients' nearest distances.
UNSEEN_FLOOR_QUANTILE = 0.01
#: RMS difference per pixel (images in [0, 1]) under which two images count as near-exact matches.
NEAR_EXACT_RMS = 0.01


@dataclass
class CopyReport:
    """Copy detection in one feature space."""

    space: str
    samples: int
    copies: int
    copy_rate: float
    min_ratio: float
    median_nndr: float
    copy_indices: list[int]
    nearest_train: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DcrReport:
    """Distance-to-closest-record comparison (pixel space)."""

    synthetic_to_train: list[float]
    holdout_to_train: list[float]
    median_synthetic: float
    median_holdout: float
    share_closer_to_train: float
    share_ci: tuple[float, float]
    exact_matches: int
    exact_match_rate: float

    def to_dict(self) -> dict:
        return asdict(self)


def find_copies(
    generated: np.ndarray,
    train: np.ndarray,
    *,
    space: str,
    ratio: float = COPY_RATIO,
    k: int = NEIGHBOURS,
    unseen: np.ndarray | None = None,
) -> CopyReport:
    """Carlini-style copies of ``train`` rows among ``generated`` rows (both [N, D] features).

    With ``unseen`` (features of non-member patients), a copy must also be nearer its training image than 99%
    of unseen patients are to theirs: real patients set the floor of natural similarity. Used for learned
    embeddings, where the pixel-space ratio alone flags look-alike patients.
    """
    distances, indices = nearest_neighbours(generated, train, k=max(2, min(k, len(train))))
    d1 = distances[:, 0]
    ratios = d1 / np.maximum(distances.mean(1), 1e-12)
    nndr = d1 / np.maximum(distances[:, 1], 1e-12)
    is_copy = ratios < ratio
    if unseen is not None:
        floor = float(np.quantile(nearest_neighbours(unseen, train, k=1)[0][:, 0], UNSEEN_FLOOR_QUANTILE))
        is_copy &= d1 < floor
    copies = np.flatnonzero(is_copy)
    return CopyReport(
        space=space,
        samples=len(generated),
        copies=int(len(copies)),
        copy_rate=float(len(copies) / max(1, len(generated))),
        min_ratio=float(ratios.min()) if len(ratios) else float("nan"),
        median_nndr=float(np.median(nndr)) if len(nndr) else float("nan"),
        copy_indices=[int(i) for i in copies[:100]],
        nearest_train=[int(indices[i, 0]) for i in copies[:100]],
    )


def distance_to_closest_record(
    generated: np.ndarray, train: np.ndarray, holdout: np.ndarray, *, seed: int = 0, rounds: int = 50
) -> DcrReport:
    """DCR of synthetic and holdout rows to train, and the closer-to-train share with a bootstrap CI.

    Each bootstrap round redraws the equal-size train and holdout reference sets as well as the synthetic
    rows: correlated synthetic samples (a collapsed generator) must not make the interval look precise.
    """
    rng = np.random.default_rng(seed)
    size = min(len(train), len(holdout))

    def share(syn: np.ndarray, train_rows: np.ndarray, holdout_rows: np.ndarray) -> tuple[float, np.ndarray]:
        to_train = nearest_neighbours(syn, train[train_rows], k=1)[0][:, 0]
        to_holdout = nearest_neighbours(syn, holdout[holdout_rows], k=1)[0][:, 0]
        return float((to_train < to_holdout).mean()), to_train

    point, syn_train = share(
        generated, rng.choice(len(train), size, replace=False), rng.choice(len(holdout), size, replace=False)
    )
    boot = [
        share(
            generated[rng.integers(0, len(generated), len(generated))],
            rng.choice(len(train), size, replace=False),
            rng.integers(0, len(holdout), size),
        )[0]
        for _ in range(rounds)
    ]
    hold_train = nearest_neighbours(holdout, train, k=1)[0][:, 0]
    nearest_any = nearest_neighbours(generated, train, k=1)[0][:, 0]
    exact = nearest_any / np.sqrt(generated.shape[1]) < NEAR_EXACT_RMS
    return DcrReport(
        synthetic_to_train=[float(v) for v in syn_train],
        holdout_to_train=[float(v) for v in hold_train],
        median_synthetic=float(np.median(syn_train)),
        median_holdout=float(np.median(hold_train)),
        share_closer_to_train=point,
        share_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
        exact_matches=int(exact.sum()),
        exact_match_rate=float(exact.mean()),
    )
