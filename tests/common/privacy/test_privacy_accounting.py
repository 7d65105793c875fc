"""Accounting golden values, noise planning, and the site ledger (restart, refusal, never over budget)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_fedsynth.common.errors import BudgetExceededError, ConfigError, DataError
from cxr_fedsynth.common.privacy.accounting import epsilon_of, make_accountant, plan_noise_multiplier
from cxr_fedsynth.common.privacy.ledger import Budget, SiteLedger


def test_rdp_golden_value_from_opacus_tests() -> None:
    assert epsilon_of([(1.5, 0.04, 2250)], delta=1e-5) == pytest.approx(7.32911117143, abs=1e-9)


def test_history_split_into_rounds_composes_to_the_same_epsilon() -> None:
    rounds = [(1.5, 0.04, 225)] * 10
    assert epsilon_of(rounds, delta=1e-5) == pytest.approx(7.32911117143, rel=1e-9)


def test_interleaved_mechanisms_compose_as_opacus_composes_them_unsorted() -> None:
    history = [(1.5, 0.04, 100), (0.9, 0.1, 20), (1.5, 0.04, 100), (2.0, 0.02, 7), (0.9, 0.1, 20)]
    assert epsilon_of(history, delta=1e-5) == pytest.approx(make_accountant(history).get_epsilon(1e-5), rel=1e-12)


@pytest.mark.parametrize("target", [1.0, 3.0, 10.0])
def test_planned_noise_meets_the_target(target: float) -> None:
    noise = plan_noise_multiplier(target_epsilon=target, delta=1e-5, sample_rate=0.05, steps=400)
    spent = epsilon_of([(noise, 0.05, 400)], delta=1e-5)
    assert target * 0.97 <= spent <= target


@pytest.mark.parametrize("target", [1.0, 10.0])
def test_noise_planned_after_a_prior_release_composes_to_the_target(target: float) -> None:
    release = plan_noise_multiplier(target_epsilon=target / 2, delta=1e-5, sample_rate=1.0, steps=1)
    alone = plan_noise_multiplier(target_epsilon=target, delta=1e-5, sample_rate=0.05, steps=400)
    noise = plan_noise_multiplier(
        target_epsilon=target, delta=1e-5, sample_rate=0.05, steps=400, prior=[(release, 1.0, 1)]
    )
    spent = epsilon_of([(release, 1.0, 1), (noise, 0.05, 400)], delta=1e-5)
    assert target * 0.97 <= spent <= target and noise > alone


def test_a_prior_release_that_alone_spends_the_target_is_refused() -> None:
    with pytest.raises(ConfigError, match="alone spend epsilon"):
        plan_noise_multiplier(target_epsilon=1.0, delta=1e-5, sample_rate=0.05, steps=10, prior=[(0.5, 1.0, 1)])


def test_ledger_survives_a_restart_and_refuses_over_budget(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    budget = Budget(epsilon=10.0, delta=1e-5)
    first = SiteLedger(path, budget)
    after_one = first.reserve(run_id="a", round_number=1, noise_multiplier=1.2, sample_rate=0.1, steps=50)
    restarted = SiteLedger(path, budget)  # a new process reading the same file
    assert restarted.spent() == pytest.approx(after_one)
    after_two = restarted.reserve(run_id="b", round_number=1, noise_multiplier=1.2, sample_rate=0.1, steps=50)
    assert after_two > after_one and len(restarted.entries()) == 2
    with pytest.raises(BudgetExceededError, match="over its budget 10.0"):
        restarted.reserve(run_id="b", round_number=2, noise_multiplier=0.6, sample_rate=0.3, steps=500)
    assert len(SiteLedger(path, budget).entries()) == 2, "a refused round must record nothing"
    summary = restarted.summary()
    assert set(summary["runs"]) == {"a", "b"} and summary["remaining_epsilon"] == pytest.approx(10.0 - after_two)


def test_damaged_ledger_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="Never delete it"):
        SiteLedger(path, Budget(1.0, 1e-5)).spent()


@settings(max_examples=25, deadline=None)
@given(
    budget=st.floats(0.5, 8.0),
    rounds=st.lists(st.tuples(st.floats(0.5, 3.0), st.floats(0.01, 0.5), st.integers(1, 200)), min_size=1, max_size=8),
)
def test_budget_is_never_exceeded(
    tmp_path_factory: pytest.TempPathFactory, budget: float, rounds: list[tuple[float, float, int]]
) -> None:
    ledger = SiteLedger(tmp_path_factory.mktemp("ledger") / "l.json", Budget(budget, 1e-5))
    for i, (noise, rate, steps) in enumerate(rounds):
        try:
            ledger.reserve(run_id="r", round_number=i, noise_multiplier=noise, sample_rate=rate, steps=steps)
        except BudgetExceededError:
            pass
        assert ledger.spent() <= budget + 1e-9
