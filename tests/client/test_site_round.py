"""A site's round without Flower: reported epsilon equals an offline accountant; over-budget rounds are
refused before any training; the ledger carries spend across runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fedsynth.client.site_config import site_from_context
from cxr_fedsynth.client.site_round import RunPrivacyState, Site, run_site_round
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.accounting import epsilon_of
from cxr_fedsynth.common.privacy.ledger import Budget, SiteLedger
from tests.client.site_fixtures import first_site_records, initial_weights

CONFIG = ExperimentConfig(
    image_size=32,
    phantom_patients=40,
    num_server_rounds=3,
    local_steps=2,
    batch_size=4,
    g_width=8,
    d_width=8,
    latent_dim=8,
)
PLAN = CONFIG.privacy_plan()


@pytest.fixture(scope="module")
def site_records():
    return first_site_records(CONFIG)


def _weights():
    return initial_weights(CONFIG)


def test_reported_epsilon_equals_offline_accountant(site_records, tmp_path: Path) -> None:
    site = Site("s", site_records, tmp_path / "ledger.json", Budget(CONFIG.target_epsilon, CONFIG.target_delta))
    state = RunPrivacyState()
    for round_number in (1, 2, 3):
        reply, state = run_site_round(
            CONFIG, site, global_weights=_weights(), run_id="run-a", round_number=round_number, state=state, plan=PLAN
        )
        assert reply.status == "ok"
        offline = epsilon_of(
            [(state.noise_multiplier, state.sample_rate, CONFIG.local_steps)] * round_number, delta=CONFIG.target_delta
        )
        assert reply.metrics["epsilon"] == pytest.approx(offline, rel=1e-12)
    assert reply.metrics["epsilon"] <= CONFIG.target_epsilon
    assert reply.metrics["sample-rate"] == pytest.approx(CONFIG.batch_size / reply.metrics["num-examples"])
    assert set(reply.discriminator) == set(_weights()["discriminator"])  # no Opacus prefixes


def test_over_budget_round_is_refused_before_training(site_records, tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.json"
    site = Site("s", site_records, ledger_path, Budget(CONFIG.target_epsilon, CONFIG.target_delta))
    state = RunPrivacyState()
    for round_number in (1, 2, 3):  # the whole planned run: spends (almost) the full budget
        _, state = run_site_round(
            CONFIG, site, global_weights=_weights(), run_id="run-a", round_number=round_number, state=state, plan=PLAN
        )
    spent = SiteLedger(ledger_path, site.budget).spent()
    # A second run on the same ledger (a restart, a new run): refused, and nothing more is recorded.
    reply, _ = run_site_round(
        CONFIG, site, global_weights=_weights(), run_id="run-b", round_number=1, state=RunPrivacyState(), plan=PLAN
    )
    assert reply.status == "refused" and reply.discriminator is None and "privacy budget" in reply.reason
    assert SiteLedger(ledger_path, site.budget).spent() == pytest.approx(spent)
    assert len(SiteLedger(ledger_path, site.budget).entries()) == 3


def test_without_dp_the_reply_says_not_private(site_records, tmp_path: Path) -> None:
    config = CONFIG.replace(dp=False)
    site = Site("s", site_records, tmp_path / "ledger.json", Budget(1.0, 1e-5))
    reply, _ = run_site_round(
        config,
        site,
        global_weights=_weights(),
        run_id="r",
        round_number=1,
        state=RunPrivacyState(),
        plan=config.privacy_plan(),
    )
    assert reply.status == "ok" and "NOT PRIVATE" in reply.reason and reply.metrics["epsilon"] == float("inf")
    assert not (tmp_path / "ledger.json").exists()


def test_a_simulated_site_keeps_its_decoded_data_across_messages(tmp_path: Path) -> None:
    node = {"partition-id": 1, "num-partitions": 2}
    first = site_from_context(CONFIG, node, run_dir=str(tmp_path))
    again = site_from_context(CONFIG, node, run_dir=str(tmp_path))
    assert first.images is not None and again.images is first.images, "read, split and decoded once per process"
    assert [r.path for r in first.records] == [r.path for r in first.images.records] and first.name == "sim-site-1"
