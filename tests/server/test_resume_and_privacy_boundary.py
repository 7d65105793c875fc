"""A restarted server resumes from its checkpoint; a site's reply carries only DP weights and aggregates."""

from __future__ import annotations

from pathlib import Path

import torch

from cxr_fedsynth.client.site_round import RunPrivacyState, Site, run_site_round, site_plan
from cxr_fedsynth.common.data.simulated_sites import read_run_dataset, split_records
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.site_policy import SitePolicy
from cxr_fedsynth.common.protocol import PROTECTION, sent_keys
from cxr_fedsynth.common.publish.artifacts import clean_state_dict
from cxr_fedsynth.server.aggregation import SiteStats
from cxr_fedsynth.server.federated_gan import FederatedGanServer


def test_restarted_server_resumes_after_the_last_checkpoint(tmp_path: Path, small_config: ExperimentConfig) -> None:
    config = small_config.replace(num_server_rounds=3, output_dir=str(tmp_path))
    first = FederatedGanServer(config, run_name="resume")
    first.g_trainer.train_against(first.discriminator, seed=1)
    first.sites["x"] = SiteStats(name="x", rounds=1, epsilon=1.5)
    first.metric_rows.append({"round": 1, "sites_ok": 1})
    first._checkpoint(1)
    second = FederatedGanServer(config, run_name="resume")
    assert second.start_round == 2 and second.sites["x"].epsilon == 1.5 and second.metric_rows == first.metric_rows
    for a, b in zip(
        clean_state_dict(first.g_trainer.generator).values(), clean_state_dict(second.g_trainer.generator).values()
    ):
        assert torch.equal(a, b)
    assert second.g_trainer.optimizer.state_dict()["state"], "G's Adam moments come back too"
    fresh = FederatedGanServer(config, run_name="other")
    assert fresh.start_round == 1


def test_released_feature_targets_survive_a_restart(tmp_path: Path, small_config: ExperimentConfig) -> None:
    config = small_config.replace(num_server_rounds=3, output_dir=str(tmp_path), feature_matching_weight=1.0)
    first = FederatedGanServer(config, run_name="resume")
    first.matcher = first._new_matcher()
    table = torch.randn(4, first.matcher.targets.shape[1] + 1)
    table[:, -1] = torch.tensor([20.0, 20.0, 20.0, 9.0])  # released counts 28, 28, 28, 13 patients (share 0.5)
    first.matcher.set_targets(table, table_noise_std=2.0)  # 13 is short of 10 + 3 x 2.8: the last class is not matched
    first.feature_release = {"sites": 1}
    first.discriminator.features[0].weight.data.add_(1.0)  # D moves on after the release; the matcher keeps its copy
    first._checkpoint(1)
    second = FederatedGanServer(config, run_name="resume")
    assert second.feature_release == {"sites": 1} and second.matcher is not None
    assert torch.equal(second.matcher.targets, first.matcher.targets) and torch.equal(
        second.matcher.patients, first.matcher.patients
    )
    assert second.matcher.matched_classes.tolist() == [True, True, True, False], (
        "the noise-aware matching survives a restart"
    )
    assert not torch.equal(second.matcher.features[0].weight, second.discriminator.features[0].weight)


def test_reply_holds_only_protected_values(tmp_path: Path, small_config: ExperimentConfig) -> None:
    config = small_config.replace(num_server_rounds=3)
    per_site = split_records(config, read_run_dataset(config).records, 2).sites
    site = Site("s", per_site[0], tmp_path / "ledger.json", SitePolicy())
    g, d = build_models(config.architecture(4), seed=0)
    weights = {"generator": clean_state_dict(g), "discriminator": clean_state_dict(d)}
    reply, _ = run_site_round(
        config,
        site,
        global_weights=weights,
        run_id="r",
        round_number=1,
        state=RunPrivacyState(),
        plan=site_plan(config, site.policy),
    )
    assert set(reply.discriminator) == set(clean_state_dict(d))
    assert all(t.shape == clean_state_dict(d)[k].shape for k, t in reply.discriminator.items()), "weights only"
    content = reply.to_content()
    sent = sent_keys(content)
    assert sent <= set(PROTECTION), f"unprotected keys: {sent - set(PROTECTION)}"
    assert not any(r.path.name in reply.reason for r in site.records) and str(tmp_path) not in reply.reason
