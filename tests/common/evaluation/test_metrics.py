"""Utility and fidelity maths on fixtures with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.evaluation.classifier import TrainSettings, train_classifier, train_dp_classifier
from cxr_fedsynth.common.evaluation.fidelity import prdc, two_sample_test, within_class_diversity
from cxr_fedsynth.common.evaluation.utility import classification_metrics

CLASSES = ["No Finding", "Pneumonia", "COVID-19"]


def test_perfect_and_inverted_predictions() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[labels] * 0.9 + 0.1 / 3
    m = classification_metrics(perfect, labels, CLASSES)
    assert (
        m["macro_auroc"] == pytest.approx(1.0)
        and m["accuracy"] == pytest.approx(1.0)
        and m["macro_f1"] == pytest.approx(1.0)
    )
    assert m["pneumonia_vs_normal"]["auroc"] == pytest.approx(1.0) and m["pneumonia_vs_normal"]["test_images"] == 4
    inverted = 1 - perfect
    assert classification_metrics(inverted, labels, CLASSES)["macro_auroc"] == pytest.approx(0.0)


def test_pneumonia_vs_normal_uses_only_those_two_classes() -> None:
    labels = np.array([0, 1, 2])
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    m = classification_metrics(probs, labels, CLASSES)
    # Normal: 0.3/0.9 = 0.33 pneumonia share; pneumonia: 0.3/0.5 = 0.6 -> perfectly ranked.
    assert m["pneumonia_vs_normal"]["auroc"] == pytest.approx(1.0) and m["pneumonia_vs_normal"]["test_images"] == 2


def test_prdc_identical_and_disjoint_sets() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 4))
    same = prdc(real, real.copy())
    assert (
        same["precision"] == pytest.approx(1.0)
        and same["recall"] == pytest.approx(1.0)
        and same["coverage"] == pytest.approx(1.0)
    )
    far = prdc(real, real + 100.0)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0


def test_within_class_diversity() -> None:
    collapsed = np.full((10, 8, 8), 128, np.uint8)
    assert within_class_diversity(collapsed) == 0.0
    halves = np.stack([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)] * 5)
    assert 0.4 < within_class_diversity(halves) < 0.6  # half the pairs differ by 1.0


def _noise_images(rng: np.random.Generator, count: int, offset: float = 0.0) -> np.ndarray:
    return np.clip(rng.normal(128 + offset, 30, size=(count, 16, 16)), 0, 255).astype(np.uint8)


def test_two_sample_test_tells_a_small_shift_apart_and_not_identical_draws() -> None:
    """64 images a side: an undertrained classifier (5 epochs here) called every image synthetic and scored 0.48."""
    rng = np.random.default_rng(0)
    real = _noise_images(rng, 64)
    shifted = two_sample_test(real, _noise_images(rng, 64, offset=8), seed=0)
    assert shifted["accuracy"] > 0.9 and shifted["auroc"] > 0.95
    same = two_sample_test(real, _noise_images(rng, 64), seed=0)
    assert 0.3 < same["auroc"] < 0.7 and 0.3 < same["accuracy"] < 0.7


@pytest.mark.parametrize(("size", "blocks"), [(32, 4), (64, 4), (128, 5), (256, 6)])
def test_judging_classifier_deepens_with_the_image_size(size: int, blocks: int) -> None:
    """Plain and DP judges alike end on the same feature grid at 64 px and above, so each cell sees the same share
    of the chest at every size; below 64 px the judge keeps its 4 blocks."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, size, size), dtype=np.uint8)
    labels = np.r_[np.zeros(4), np.ones(4)].astype(np.int64)
    settings = TrainSettings(epochs=1, batch_size=8)
    plain = train_classifier(images, labels, 2, settings)
    private, _ = train_dp_classifier(images, labels, 2, settings, epsilon=10.0, delta=1e-5, start_from=plain)
    for model in (plain, private):
        convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
        grid = model.features[:-2](to_model_range(images[:1])).shape[-1]
        assert (len(convs), grid) == (blocks, size // 2**blocks)
        if size >= 64:
            assert grid == 4
