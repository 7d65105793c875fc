"""Generator members: trained after the last round from the round-0 weights against the final D (never changing it),
reproducibly, each different from the run's own generator; a run with one member trains none."""

from __future__ import annotations

from pathlib import Path

import torch

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.publish.artifacts import clean_state_dict
from cxr_fedsynth.server.checkpoint import load_checkpoint, module_state
from cxr_fedsynth.server.federated_gan import FederatedGanServer
from cxr_fedsynth.server.generator_members import member_trainer


def _members_config(small: ExperimentConfig, out: Path, public: Path, *, members: int) -> ExperimentConfig:
    """Two rounds with public pretraining and ``members`` published generators."""
    return small.replace(
        num_server_rounds=2, output_dir=str(out), public_data=str(public), public_steps=3, generator_members=members
    )


def _after_rounds(config: ExperimentConfig, run_name: str) -> FederatedGanServer:
    """A pretrained server whose G took two rounds of steps against D (as if two rounds had trained)."""
    server = FederatedGanServer(config, run_name=run_name)
    server._pretrain_on_public()
    for round_number in (1, 2):
        server.g_trainer.train_against(server.discriminator, seed=round_number)
        server.metric_rows.append({"round": round_number, "sites_ok": 1})
    return server


def test_members_start_from_the_pretraining_and_leave_d_unchanged(
    tmp_path: Path, phantom_dir: Path, small_config: ExperimentConfig
) -> None:
    config = _members_config(small_config, tmp_path, phantom_dir, members=3)
    server = _after_rounds(config, "members")
    stored = load_checkpoint(server._pretraining_store())
    start = member_trainer(config, stored, device=server.device)
    pretrained = module_state(stored.tensors, "ema")
    assert all(torch.equal(pretrained[k], v) for k, v in clean_state_dict(start.ema).items()), (
        "members start at the round-0 weights"
    )
    assert start.updates == 3
    d_before = {k: v.clone() for k, v in clean_state_dict(server.discriminator).items()}
    members = server._train_members()
    assert len(members) == 2
    assert all(torch.equal(d_before[k], v) for k, v in clean_state_dict(server.discriminator).items()), "D is only read"
    own = clean_state_dict(server.g_trainer.published())
    first, second = (clean_state_dict(m) for m in members)
    for state in (first, second):
        assert any(not torch.equal(own[k], state[k]) for k in own), "a member is not the run's own generator"
        assert any(not torch.equal(pretrained[k], state[k]) for k in own), "a member trained past the pretraining"
    assert any(not torch.equal(first[k], second[k]) for k in first), "each member trains from its own seed"
    again = clean_state_dict(_after_rounds(config, "again")._train_members()[0])
    assert all(torch.equal(first[k], again[k]) for k in first), "members are reproducible"


def test_one_member_trains_none(tmp_path: Path, phantom_dir: Path, small_config: ExperimentConfig) -> None:
    config = _members_config(small_config, tmp_path, phantom_dir, members=1)
    assert _after_rounds(config, "single")._train_members() == ()
