"""Audit maths on small fixtures with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_fedsynth.common.evaluation.neighbours import count_within, nearest_neighbours
from cxr_fedsynth.privacy_audit import attacks
from cxr_fedsynth.privacy_audit.memorization import distance_to_closest_record, find_copies
from cxr_fedsynth.privacy_audit.roc import (
    auc,
    clopper_pearson,
    empirical_epsilon,
    evaluate_attack,
    roc_curve,
    tpr_at_fpr,
)


def test_blockwise_neighbours_equal_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(37, 9)), rng.normal(size=(53, 9))
    brute = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    d, i = nearest_neighbours(q, r, k=4, block=8)  # many blocks on both sides
    assert np.allclose(d, np.sort(brute, 1)[:, :4], atol=1e-4)
    assert (i == np.argsort(brute, 1)[:, :4]).all()
    radius = np.median(brute)
    assert (count_within(q, r, radius, block=5) == (brute <= radius).sum(1)).all()


def test_auc_tpr_and_advantage_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.1])  # members: 0.9 0.8 0.4; non-members: 0.7 0.3 0.1
    labels = np.array([1, 1, 1, 0, 0, 0])
    # Pairs (member > non-member): 0.9 beats 3, 0.8 beats 3, 0.4 beats 2 -> 8 of 9.
    assert auc(scores, labels) == pytest.approx(8 / 9)
    fpr, tpr = roc_curve(scores, labels)
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(2 / 3)  # threshold 0.8: two members, no non-member
    result = evaluate_attack("x", scores, labels, delta=1e-5)
    assert result.advantage == pytest.approx(2 / 3)


def test_clopper_pearson_known_values() -> None:
    low, high = clopper_pearson(0, 10, 0.05)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)
    low, high = clopper_pearson(10, 10, 0.05)
    assert high == 1 and low == pytest.approx(0.025 ** (1 / 10), rel=1e-9)


def test_empirical_epsilon_zero_at_chance_and_bounded_by_sample_size() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(500), np.zeros(500)]
    assert empirical_epsilon(rng.normal(size=1000), labels, delta=1e-5) == 0.0
    perfect = np.r_[np.ones(500), np.zeros(500)]
    eps = empirical_epsilon(perfect, labels, delta=1e-5)

    # Best possible with 500 non-members: TPR_low / FPR_high of the Clopper-Pearson bounds for 500/500 and 0/500,
    # at a level between the uncorrected 0.05 and the fully Bonferroni-corrected 0.05 / 50.
    def bound(alpha: float) -> float:
        return math.log(clopper_pearson(500, 500, alpha)[0] / clopper_pearson(0, 500, alpha)[1])

    assert bound(0.05 / 50) - 1e-9 <= eps <= bound(0.05) + 1e-9


def test_gan_leaks_and_monte_carlo_by_hand() -> None:
    generated = np.array([[0.0, 0.0], [10.0, 0.0]])
    candidates = np.array([[0.0, 1.0], [10.0, 3.0], [5.0, 0.0]])
    assert np.allclose(attacks.gan_leaks(candidates, generated), [-1.0, -3.0, -5.0])
    reference = np.array([[0.0, 2.0]])
    assert np.allclose(
        attacks.gan_leaks_calibrated(candidates, generated, reference), [1 - 1, np.hypot(10, 1) - 3, np.hypot(5, 2) - 5]
    )
    # radius = median of (1, 3, 5) = 3: candidate 0 reaches one sample, 1 reaches one, 2 none.
    assert np.allclose(attacks.monte_carlo(candidates, generated), [0.5, 0.5, 0.0])


def test_patient_level_takes_the_best_image() -> None:
    scores, member = attacks.patient_level(np.array([0.1, 0.9, 0.3]), ["a", "a", "b"], np.array([1, 1, 0]))
    assert scores.tolist() == [0.9, 0.3] and member.tolist() == [1, 0]


def test_copies_and_dcr_on_constructed_points() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(60, 16)) * 10
    holdout = rng.normal(size=(60, 16)) * 10
    copies = train[:5] + 0.01
    fresh = rng.normal(size=(20, 16)) * 10
    report = find_copies(np.concatenate([copies, fresh]), train, space="pixel")
    assert report.copies == 5 and sorted(report.nearest_train) == [0, 1, 2, 3, 4]
    dcr = distance_to_closest_record(train[:30] + 0.001, train, holdout)
    assert dcr.share_closer_to_train == 1.0 or dcr.share_ci[0] > 0.55
    assert dcr.exact_matches == 30
