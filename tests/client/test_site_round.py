"""A site's round without Flower: the site's policy decides (caps, mechanisms, minimum noise, non-finite weights),
the ledger records the run's noisy count and every round before it runs and matches an offline accountant, an
over-budget run is refused before any training, and only protected values are sent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxr_fedsynth.client.site_config import site_from_context
from cxr_fedsynth.client.site_round import RunPrivacyState, Site, run_site_round, site_plan
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.accounting import epsilon_of
from cxr_fedsynth.common.privacy.plan import COUNT_NOISE_MULTIPLIER
from cxr_fedsynth.common.privacy.site_policy import DP_SGD, FEATURE_RELEASE, PATIENT_COUNT, SitePolicy
from cxr_fedsynth.common.protocol import PROTECTION
from tests.client.site_fixtures import first_site_records, initial_weights

CONFIG = ExperimentConfig(
    public_data="",
    image_size=32,
    phantom_patients=40,
    num_server_rounds=3,
    local_steps=2,
    batch_size=4,
    g_width=8,
    d_width=8,
    latent_dim=8,
)
POLICY = SitePolicy()
PLAN = site_plan(CONFIG, POLICY)


@pytest.fixture(scope="module")
def site_records():
    return first_site_records(CONFIG)


def _round(site: Site, round_number: int, state: RunPrivacyState, config: ExperimentConfig = CONFIG, **changes):
    weights = changes.pop("weights", initial_weights(config))
    plan = changes.pop("plan", site_plan(config, site.policy))
    return run_site_round(
        config,
        site,
        global_weights=weights,
        run_id=changes.pop("run_id", "run-a"),
        round_number=round_number,
        state=state,
        plan=plan,
    )


def test_ledger_matches_the_accountant_and_the_reply_carries_only_protected_values(site_records, tmp_path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    state = RunPrivacyState()
    for round_number in (1, 2, 3):
        reply, state = _round(site, round_number, state)
        assert reply.status == "ok"
    entries = site.ledger().entries()
    assert [(e.round, e.mechanism) for e in entries] == [(0, PATIENT_COUNT), (1, DP_SGD), (2, DP_SGD), (3, DP_SGD)]
    assert entries[0].noise_multiplier == COUNT_NOISE_MULTIPLIER and state.history[0] == (
        COUNT_NOISE_MULTIPLIER,
        1.0,
        1,
    )
    offline = epsilon_of(state.history, delta=CONFIG.target_delta)
    assert entries[-1].epsilon_after == pytest.approx(offline, rel=1e-9) and offline <= CONFIG.target_epsilon
    assert set(reply.metrics) == {"fake-score", "local-steps", "epsilon", "delta"} <= set(PROTECTION)
    assert reply.metrics["epsilon"] == CONFIG.target_epsilon, "the approved bound, not the accountant's exact value"
    assert set(reply.discriminator) == set(initial_weights(CONFIG)["discriminator"])  # no Opacus prefixes
    patients = len({r.patient_id for r in site_records})
    assert state.sample_rate != pytest.approx(CONFIG.batch_size / patients, rel=1e-6), "rate from the noisy count"


def test_over_budget_run_is_refused_before_training(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    state = RunPrivacyState()
    for round_number in (1, 2, 3):  # the whole planned run: spends (almost) the full budget
        _, state = _round(site, round_number, state)
    spent = site.ledger().spent()
    reply, _ = _round(site, 1, RunPrivacyState(), run_id="run-b")  # a second run on the same ledger
    assert reply.status == "refused" and reply.discriminator is None and reply.reason.startswith("privacy budget")
    assert site.ledger().spent() == pytest.approx(spent) and len(site.ledger().entries()) == 4


UNREADABLE = [ImageRecord(Path("/nonexistent/x.png"), "p1", 0)]  # reading it would fail: a refusal must come first


@pytest.mark.parametrize(
    ("policy", "config", "why"),
    [
        (SitePolicy(max_run_epsilon=5.0), CONFIG, "over the site's cap 5.0"),
        (SitePolicy(), CONFIG.replace(target_delta=1e-3), "delta 0.001, over the site's cap"),
        (SitePolicy(mechanisms=(FEATURE_RELEASE,)), CONFIG, "does not allow the mechanism dp-sgd"),
    ],
)
def test_requests_outside_the_policy_are_refused_before_any_image_is_read(policy, config, why, tmp_path) -> None:
    site = Site("s", UNREADABLE, tmp_path / "ledger.json", policy)
    reply, _ = _round(site, 1, RunPrivacyState(), config, plan=site_plan(config, policy))
    assert reply.status == "refused" and why in reply.reason and not site.ledger_path.exists()


def test_crafted_non_finite_weights_and_too_little_noise_are_refused(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    weights = initial_weights(CONFIG)
    name = next(iter(weights["discriminator"]))
    weights["discriminator"][name] = torch.full_like(weights["discriminator"][name], float("nan"))
    reply, _ = _round(site, 1, RunPrivacyState(), weights=weights)
    assert reply.status == "refused" and "non-finite" in reply.reason and not site.ledger_path.exists()
    # epsilon 60 in one step needs noise far under 0.5 whatever the noisy count (the sample rate) turns out to be
    greedy = CONFIG.replace(num_server_rounds=1, local_steps=1, target_epsilon=60.0)
    generous = SitePolicy(budget_epsilon=60.0, max_run_epsilon=60.0)
    greedy_site = Site("g", site_records, tmp_path / "g.json", generous)
    reply, _ = _round(greedy_site, 1, RunPrivacyState(), greedy)
    assert reply.status == "refused" and "under the site's minimum" in reply.reason


def test_a_baseline_site_without_dp_says_not_private(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", SitePolicy(dp=False))
    reply, _ = _round(site, 1, RunPrivacyState(), plan=None)
    assert reply.status == "ok" and "NOT PRIVATE" in reply.reason and reply.metrics["epsilon"] == float("inf")
    assert not reply.dp and not (tmp_path / "ledger.json").exists()


def test_a_simulated_site_keeps_its_decoded_data_across_messages(tmp_path: Path) -> None:
    node = {"partition-id": 1, "num-partitions": 2}
    first = site_from_context(CONFIG, node, run_dir=str(tmp_path))
    again = site_from_context(CONFIG, node, run_dir=str(tmp_path))
    assert first.images is not None and again.images is first.images, "read, split and decoded once per process"
    assert [r.path for r in first.records] == [r.path for r in first.images.records] and first.name == "sim-site-1"
