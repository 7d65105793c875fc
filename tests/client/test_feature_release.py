"""A site's feature release without Flower: reserved in the ledger before any image is read, one per run,
composed with the run's DP-SGD rounds so the run still ends at (not over) the target epsilon."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fedsynth.client.feature_release import run_feature_release
from cxr_fedsynth.client.site_round import RunPrivacyState, Site, run_site_round, site_plan
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import FeatureMatcher
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.accounting import epsilon_of, plan_noise_multiplier
from cxr_fedsynth.common.privacy.ledger import SiteLedger
from cxr_fedsynth.common.privacy.site_policy import DP_SGD, FEATURE_RELEASE, PATIENT_COUNT, SitePolicy
from cxr_fedsynth.common.publish.artifacts import clean_state_dict
from tests.client.site_fixtures import first_site_records, initial_weights

CONFIG = ExperimentConfig(
    image_size=32,
    phantom_patients=40,
    num_server_rounds=2,
    local_steps=2,
    batch_size=4,
    g_width=8,
    d_width=8,
    latent_dim=8,
    target_epsilon=4.0,
    feature_matching_weight=1.0,
    feature_release_share=0.25,
    public_data="/public",  # never read by a site
)
POLICY = SitePolicy(budget_epsilon=4.0, max_run_epsilon=4.0)
PLAN = site_plan(CONFIG, POLICY)


@pytest.fixture(scope="module")
def site_records():
    return first_site_records(CONFIG)


def _weights():
    return initial_weights(CONFIG)


def _space():
    return clean_state_dict(
        FeatureMatcher(build_models(CONFIG.architecture(4), seed=0)[1].features, 4, CONFIG.embedding_spec)
    )


def test_release_then_rounds_spend_exactly_the_planned_budget(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    release, state = run_feature_release(
        CONFIG, site, space_weights=_space(), run_id="run-a", state=RunPrivacyState(), plan=PLAN
    )
    noise = PLAN.release_noise_multiplier
    assert release.status == "ok" and release.feature_sums.shape == (4, release.feature_sums.shape[1]), (
        "one table: classes x (dim + 1)"
    )
    assert set(release.metrics) == {"epsilon", "delta"}, "no counts, no noise multiplier"
    assert release.metrics["epsilon"] == PLAN.release_epsilon == 1.0, "the release's approved share"
    assert epsilon_of([(noise, 1.0, 1)], delta=CONFIG.target_delta) == pytest.approx(1.0, abs=0.011)
    for round_number in (1, 2):
        reply, state = run_site_round(
            CONFIG, site, global_weights=_weights(), run_id="run-a", round_number=round_number, state=state, plan=PLAN
        )
    spent = epsilon_of(state.history, delta=CONFIG.target_delta)
    assert CONFIG.target_epsilon * 0.97 <= spent <= CONFIG.target_epsilon, "count + release + DP-SGD planned jointly"
    entries = SiteLedger(site.ledger_path, site.budget).entries()
    assert [(e.round, e.mechanism, e.sample_rate, e.steps) for e in entries] == [
        (0, PATIENT_COUNT, 1.0, 1),
        (0, FEATURE_RELEASE, 1.0, 1),
        (1, DP_SGD, state.sample_rate, 2),
        (2, DP_SGD, state.sample_rate, 2),
    ]
    assert entries[-1].epsilon_after == pytest.approx(spent, rel=1e-9) and reply.metrics["epsilon"] == 4.0
    summary = SiteLedger(site.ledger_path, site.budget).summary()["runs"]["run-a"]
    assert summary["rounds"] == 2 and summary["steps"] == 4
    assert summary["other_releases"] == sorted([FEATURE_RELEASE, PATIENT_COUNT])


def test_second_release_of_a_run_and_a_release_over_budget_are_refused(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    first, state = run_feature_release(
        CONFIG, site, space_weights=_space(), run_id="run-a", state=RunPrivacyState(), plan=PLAN
    )
    again, _ = run_feature_release(CONFIG, site, space_weights=_space(), run_id="run-a", state=state, plan=PLAN)
    assert (
        first.status == "ok"
        and again.status == "refused"
        and again.feature_sums is None
        and "one per run" in again.reason
    )
    assert [e.mechanism for e in SiteLedger(site.ledger_path, site.budget).entries()] == [
        PATIENT_COUNT,
        FEATURE_RELEASE,
    ]
    poor = Site("p", site_records, tmp_path / "poor.json", POLICY)
    nearly_all = plan_noise_multiplier(target_epsilon=3.95, delta=CONFIG.target_delta, sample_rate=1.0, steps=1)
    poor.ledger().reserve(run_id="earlier", round_number=1, noise_multiplier=nearly_all, sample_rate=1.0, steps=1)
    refused, _ = run_feature_release(
        CONFIG, poor, space_weights=_space(), run_id="run-a", state=RunPrivacyState(), plan=PLAN
    )
    assert refused.status == "refused" and refused.feature_sums is None and "budget" in refused.reason
    recorded = [(e.run_id, e.mechanism) for e in poor.ledger().entries()]
    assert recorded == [("earlier", DP_SGD), ("run-a", PATIENT_COUNT)], "the release that did not fit is not recorded"


def test_a_run_without_feature_matching_gets_no_release(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", POLICY)
    no_release = CONFIG.replace(public_data="")
    reply, _ = run_feature_release(
        no_release,
        site,
        space_weights=_space(),
        run_id="r",
        state=RunPrivacyState(),
        plan=site_plan(no_release, POLICY),
    )
    assert reply.status == "refused" and reply.feature_sums is None and not site.ledger_path.exists()


def test_release_without_dp_is_exact_and_flagged_not_private(site_records, tmp_path: Path) -> None:
    config = CONFIG
    site = Site("s", site_records, tmp_path / "ledger.json", SitePolicy(dp=False))
    reply, _ = run_feature_release(config, site, space_weights=_space(), run_id="r", state=RunPrivacyState(), plan=None)
    patients = len({r.patient_id for r in site_records})
    count_share = FeatureMatcher(
        build_models(CONFIG.architecture(4), seed=0)[1].features, 4, CONFIG.embedding_spec
    ).count_share
    assert reply.feature_sums[:, -1].sum().item() / count_share**0.5 == pytest.approx(patients, rel=1e-5), (
        "count column = patients"
    )
    assert "NOT PRIVATE" in reply.reason and reply.metrics["epsilon"] == float("inf")
    assert not site.ledger_path.exists()
