"""Public pretraining: the server trains G and D on a public set before round 1, the model card names the set
(never its path), a restarted server does not pretrain twice, and ``cxr-split --public-prefix`` keeps public
and private patients apart."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cxr_fedsynth.common.data.split_cli import cli as split_cli
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.publish.artifacts import clean_state_dict
from cxr_fedsynth.server.federated_gan import FederatedGanServer
from cxr_fedsynth.server.public_pretraining import pretrain_on_public


def test_pretraining_moves_g_and_d_and_the_card_names_the_public_set(
    tmp_path: Path, phantom_dir: Path, small_config: ExperimentConfig
) -> None:
    config = small_config.replace(
        output_dir=str(tmp_path),
        public_data=str(phantom_dir),
        public_steps=3,
        public_name="Phantom public set",
    )
    server = FederatedGanServer(config, run_name="pre")
    before_g = {k: v.clone() for k, v in clean_state_dict(server.g_trainer.generator).items()}
    before_d = {k: v.clone() for k, v in clean_state_dict(server.discriminator).items()}
    server.public = pretrain_on_public(config, server.g_trainer, server.discriminator, device=server.device).to_dict()
    after_g, after_d = clean_state_dict(server.g_trainer.generator), clean_state_dict(server.discriminator)
    assert any(not torch.equal(before_g[k], after_g[k]) for k in before_g)
    assert any(not torch.equal(before_d[k], after_d[k]) for k in before_d)
    assert all(p.grad is None for p in server.discriminator.parameters())
    assert server.public["images"] == 40 and server.public["patients"] == 20 and server.public["steps"] == 3
    card = server.model_card()
    assert card["public_pretraining"]["name"] == "Phantom public set"
    assert str(phantom_dir) not in json.dumps(card), "the card never records local paths"
    server._checkpoint(0)
    resumed = FederatedGanServer(config, run_name="pre")
    assert resumed.public == server.public and resumed.start_round == 1, (
        "a restart keeps the pretraining, does not redo it"
    )


def test_a_later_run_reuses_an_identical_pretraining_and_only_that(
    tmp_path: Path, phantom_dir: Path, small_config: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config.replace(output_dir=str(tmp_path), public_data=str(phantom_dir), public_steps=3)
    first = FederatedGanServer(config, run_name="first")
    first._pretrain_on_public()
    pretrained = clean_state_dict(first.g_trainer.generator)

    def must_not_pretrain(*args: object, **kwargs: object) -> None:
        raise AssertionError("an identical pretraining must be reused, not run again")

    monkeypatch.setattr("cxr_fedsynth.server.federated_gan.pretrain_on_public", must_not_pretrain)
    # other privacy and site settings do not change the pretraining: reused
    second = FederatedGanServer(config.replace(target_epsilon=3.0, lr_d=1e-3, d_site_layers="heads"), run_name="second")
    second._pretrain_on_public()
    reused = clean_state_dict(second.g_trainer.generator)
    assert all(torch.equal(pretrained[k], reused[k]) for k in pretrained)
    assert second.public == first.public and second.g_trainer.updates == first.g_trainer.updates == 3
    assert FederatedGanServer(config, run_name="second").start_round == 1, "the run's own round-0 checkpoint is written"
    # a different public setting must pretrain again
    with pytest.raises(AssertionError, match="must be reused"):
        FederatedGanServer(config.replace(public_lr_d=1e-3), run_name="third")._pretrain_on_public()


def test_public_pretraining_settings_and_the_auto_site_layers() -> None:
    with pytest.raises(ConfigError, match="public-steps"):
        ExperimentConfig(public_data="/somewhere", public_steps=0)
    with pytest.raises(ConfigError, match="need public-data|unless public pretraining"):
        ExperimentConfig(public_data="", d_site_layers="heads")
    without = ExperimentConfig(public_data="", public_steps=10)  # steps without a public set: nothing to pretrain on
    assert not without.pretrains_on_public and without.discriminator_settings().trained_layers == "all"
    with_public = ExperimentConfig(public_data="/somewhere")
    assert with_public.pretrains_on_public and with_public.discriminator_settings().trained_layers == "heads"
    assert (
        ExperimentConfig(public_data="/somewhere", d_site_layers="all").discriminator_settings().trained_layers == "all"
    )


def test_the_embedded_demo_pretrains_on_other_phantom_patients_and_real_data_never_on_drawings() -> None:
    demo = ExperimentConfig()
    assert demo.public_source == "phantoms" and demo.pretrains_on_public and demo.site_layers == "heads"
    public, sites = demo.public_phantom_spec(), demo.phantom_spec()
    assert public.patient_prefix != sites.patient_prefix and public.seed != sites.seed, "other patients, other draws"
    assert ExperimentConfig(data_dir="/real").public_source == "", "auto: no drawings for real X-rays"
    with pytest.raises(ConfigError, match="pretrains on drawings"):
        ExperimentConfig(data_dir="/real", public_data="phantoms")


def test_split_writes_disjoint_public_and_private_tables(tmp_path: Path, phantom_dir: Path) -> None:
    out = tmp_path / "split"
    result = CliRunner().invoke(
        split_cli,
        [
            "--num-sites",
            "2",
            "--out",
            str(out),
            "--public-prefix",
            "phantom_0000",
            "--run-config",
            f"data-dir='{phantom_dir}'",
        ],
    )
    assert result.exit_code == 0, result.output
    public, private = pd.read_csv(out / "public.csv"), pd.read_csv(out / "private.csv")
    assert len(public) == 20 and len(private) == 20  # patients 0-9 public, 10-19 private
    assert not set(public["Patient ID"]) & set(private["Patient ID"])
    seen = pd.concat([pd.read_csv(out / "train.csv"), pd.read_csv(out / "holdout.csv")])
    assert set(seen["Image Index"]) == set(private["Image Index"]), "sites and holdout come from the private rows only"
    bad = CliRunner().invoke(
        split_cli,
        [
            "--out",
            str(tmp_path / "bad"),
            "--public-prefix",
            "phantom_00000_000",
            "--run-config",
            f"data-dir='{phantom_dir}'",
        ],
    )
    assert bad.exit_code != 0 and "public and private images" in str(bad.exception)


def test_split_keeps_an_untouched_test_set_and_leaves_the_holdout_as_it_was(tmp_path: Path, phantom_dir: Path) -> None:
    def split(out: Path, extra: str = "") -> dict[str, set[str]]:
        result = CliRunner().invoke(
            split_cli,
            ["--num-sites", "2", "--out", str(out), "--run-config", f"data-dir='{phantom_dir}' {extra}"],
        )
        assert result.exit_code == 0, result.output
        return {
            name: set(pd.read_csv(out / f"{name}.csv")["Patient ID"])
            for name in ("train", "holdout", "test")
            if (out / f"{name}.csv").is_file()
        }

    plain, tested = split(tmp_path / "plain"), split(tmp_path / "tested", "test-fraction=0.25")
    assert "test" not in plain and len(tested["test"]) == 4  # a quarter of the 16 patients outside the holdout
    assert tested["holdout"] == plain["holdout"], "the validation patients do not move when a test set is added"
    assert not tested["test"] & (tested["train"] | tested["holdout"])
    assert tested["train"] | tested["test"] == plain["train"]
    again = split(tmp_path / "again", "test-fraction=0.25")
    assert again["test"] == tested["test"], "the test patients are fixed"
