"""Classification metrics on real test images: per-class one-vs-rest AUROC with bootstrap CIs, accuracy,
macro F1, and pneumonia-vs-normal AUROC (the seed work's headline task)."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_f1_score

BOOTSTRAP_ROUNDS = 200


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """AUROC of ``scores`` for the binary ``positives`` (NaN when only one side is present)."""
    if positives.all() or not positives.any():
        return float("nan")
    return float(
        binary_auroc(torch.from_numpy(scores.astype(np.float64)), torch.from_numpy(positives.astype(np.int64)))
    )


def _ci(scores: np.ndarray, positives: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    values = []
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = rng.integers(0, len(scores), len(scores))
        value = auroc(scores[idx], positives[idx])
        if not np.isnan(value):
            values.append(value)
    return (
        (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
        if values
        else (float("nan"), float("nan"))
    )


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str], *, seed: int = 0) -> dict:
    """Every utility figure for one classifier's predictions on the real test set."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    per_class = {}
    for i, name in enumerate(classes):
        positives = labels == i
        per_class[name] = {
            "auroc": auroc(probs[:, i], positives),
            "auroc_ci": _ci(probs[:, i], positives, rng),
            "test_images": int(positives.sum()),
        }
    p, t = torch.from_numpy(probs), torch.from_numpy(labels.astype(np.int64))
    valid = [v["auroc"] for v in per_class.values() if not np.isnan(v["auroc"])]
    out = {
        "per_class": per_class,
        "macro_auroc": float(np.mean(valid)) if valid else float("nan"),
        "accuracy": float(multiclass_accuracy(p, t, num_classes=k, average="micro")),
        "macro_f1": float(multiclass_f1_score(p, t, num_classes=k, average="macro")),
    }
    if "Pneumonia" in classes and "No Finding" in classes:
        pn, nf = classes.index("Pneumonia"), classes.index("No Finding")
        mask = (labels == pn) | (labels == nf)
        score = probs[mask, pn] / np.maximum(probs[mask, pn] + probs[mask, nf], 1e-12)
        positives = labels[mask] == pn
        out["pneumonia_vs_normal"] = {
            "auroc": auroc(score, positives),
            "auroc_ci": _ci(score, positives, rng),
            "test_images": int(mask.sum()),
        }
    return out
