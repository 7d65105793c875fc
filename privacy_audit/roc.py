"""Attack evaluation: ROC, AUC with a bootstrap CI, TPR at low FPR, advantage, empirical epsilon lower bound.

The lower bound uses the DP hypothesis-testing inequalities TPR <= e^eps FPR + delta and
(1 - FPR) <= e^eps (1 - TPR) + delta with Clopper-Pearson intervals (Jagielski et al. 2020): at each of a fixed
grid of thresholds, eps >= log((TPR_low - delta) / FPR_high); the confidence level is Bonferroni-corrected over
the grid, so the reported bound holds with the stated confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import beta
from torchmetrics.functional.classification import binary_auroc, binary_roc

LOW_FPRS = (0.001, 0.01)
THRESHOLD_GRID = 50


@dataclass
class AttackResult:
    """How well an attack separates members (label 1) from non-members (label 0)."""

    name: str
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: dict[str, float]
    advantage: float
    empirical_epsilon: float
    members: int
    non_members: int
    roc_fpr: list[float]
    roc_tpr: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR and TPR over every threshold (higher score = more likely a member)."""
    fpr, tpr, _ = binary_roc(torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long))
    return fpr.numpy(), tpr.numpy()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(binary_auroc(torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR reachable with FPR <= target (0 when no threshold is that strict)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def bootstrap_auc_ci(
    scores: np.ndarray, labels: np.ndarray, *, rounds: int = 200, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC, resampling members and non-members separately."""
    rng = np.random.default_rng(seed)
    pos, neg = scores[labels == 1], scores[labels == 0]
    values = []
    for _ in range(rounds):
        p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        values.append(auc(np.concatenate([p, n]), np.concatenate([np.ones(len(p)), np.zeros(len(n))])))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Two-sided (1 - alpha) Clopper-Pearson interval of a binomial proportion."""
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def empirical_epsilon(scores: np.ndarray, labels: np.ndarray, *, delta: float, confidence: float = 0.95) -> float:
    """Lower bound on epsilon that the attack demonstrates (0 when it demonstrates nothing)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 1, THRESHOLD_GRID + 2)[1:-1]))
    alpha = (1 - confidence) / max(1, len(thresholds))
    best = 0.0
    for t in thresholds:
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        tpr_low, _ = clopper_pearson(tp, len(pos), alpha)
        _, fpr_high = clopper_pearson(fp, len(neg), alpha)
        # Pessimistic ends only (TPR low, FPR high), so the bound holds at the stated confidence.
        if tpr_low - delta > 0 and fpr_high > 0:
            best = max(best, float(np.log((tpr_low - delta) / fpr_high)))
        if 1 - fpr_high - delta > 0 and 1 - tpr_low > 0:
            best = max(best, float(np.log((1 - fpr_high - delta) / (1 - tpr_low))))
    return best


def evaluate_attack(name: str, scores: np.ndarray, labels: np.ndarray, *, delta: float, seed: int = 0) -> AttackResult:
    """Every figure the report shows for one attack."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    fpr, tpr = roc_curve(scores, labels)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    return AttackResult(
        name=name,
        auc=auc(scores, labels),
        auc_ci=bootstrap_auc_ci(scores, labels, seed=seed),
        tpr_at_fpr={f"{f:g}": tpr_at_fpr(fpr, tpr, f) for f in LOW_FPRS},
        advantage=float((tpr - fpr).max()),
        empirical_epsilon=empirical_epsilon(scores, labels, delta=delta),
        members=int(labels.sum()),
        non_members=int((1 - labels).sum()),
        roc_fpr=[float(v) for v in fpr[keep]],
        roc_tpr=[float(v) for v in tpr[keep]],
    )
