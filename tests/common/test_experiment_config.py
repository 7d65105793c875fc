"""Run config in, typed config out: the Flower app's pyproject and the dataclass agree; bad keys are refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cxr_fedsynth.common import config_docs
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.experiment_config import ExperimentConfig

APP = Path(__file__).resolve().parents[2] / "simulations" / "nih_split" / "pyproject.toml"


def test_app_pyproject_and_configuration_docs_are_generated_from_the_declarations() -> None:
    root = APP.parents[2]
    assert config_docs.main(["--root", str(root)]) == 0, "run python -m cxr_fedsynth.common.config_docs --write"
    keys = ExperimentConfig.keys()
    assert all(key.doc for key in keys.values()) and set(config_docs.SECTIONS) <= set(keys)
    assert {k for k, key in keys.items() if key.private} >= {"data-dir", "public-data", "ledger-dir", "cache-dir"}


def test_app_run_config_matches_the_dataclass_defaults() -> None:
    app = tomllib.loads(APP.read_text())
    assert "federations" not in app["tool"]["flwr"], "flwr run would rewrite the tracked file"
    run_config = app["tool"]["flwr"]["app"]["config"]
    assert run_config == ExperimentConfig().to_run_config()
    assert ExperimentConfig.from_run_config(run_config) == ExperimentConfig()


def test_unknown_key_and_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown run-config key\(s\) \['num-rounds'\]"):
        ExperimentConfig.from_run_config({"num-rounds": 3})
    with pytest.raises(ConfigError, match="batch-size must be a int"):
        ExperimentConfig.from_run_config({"batch-size": "big"})
    with pytest.raises(ConfigError, match="image size 100 is not supported"):
        ExperimentConfig.from_run_config({"image-size": 100})
    with pytest.raises(ConfigError, match="loss 'wgan' is unknown"):
        ExperimentConfig.from_run_config({"loss": "wgan"})
    with pytest.raises(ConfigError, match=r"feature-release-share must be in \(0, 1\)"):
        ExperimentConfig.from_run_config({"feature-matching-weight": 1.0, "feature-release-share": 1.0})
    with pytest.raises(ConfigError, match="public-r1-gamma must be >= 0"):
        ExperimentConfig.from_run_config({"public-r1-gamma": -1.0})
    with pytest.raises(ConfigError, match=r"feature-pixel-grid must be in \[0, 16\]"):
        ExperimentConfig.from_run_config({"image-size": 64, "feature-pixel-grid": 32})
    with pytest.raises(ConfigError, match=r"feature-shrinkage must be one of \('off', 'generator', 'pooled'\)"):
        ExperimentConfig.from_run_config({"feature-shrinkage": "on"})
    with pytest.raises(ConfigError, match=r"feature-count-share must be in \[0, 1\)"):
        ExperimentConfig.from_run_config({"feature-count-share": 1.0})
    with pytest.raises(ConfigError, match="feature-class-gap-scale must be > 0"):
        ExperimentConfig.from_run_config({"feature-class-gap-scale": 0.0})
    with pytest.raises(ConfigError, match="mode-seeking-scope must be one of .*'pairs'"):
        ExperimentConfig.from_run_config({"mode-seeking-scope": "pairs"})
    with pytest.raises(ConfigError, match="feature-class-gap-cap must be one of .*'max'"):
        ExperimentConfig.from_run_config({"feature-class-gap-cap": "max"})
    with pytest.raises(ConfigError, match="feature-pixel-grid is 0 .*feature-class-gap-scale=1"):
        ExperimentConfig.from_run_config({"feature-pixel-grid": 0})  # the default widens the pixel block's gaps
    assert (
        ExperimentConfig.from_run_config({"feature-pixel-grid": 0, "feature-class-gap-scale": 1.0}).feature_pixel_grid
        == 0
    )
    for keep in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"sampling-keep must be in \(0, 1\]"):
            ExperimentConfig.from_run_config({"sampling-keep": keep})
    with pytest.raises(ConfigError, match="generator-members must be at least 1"):
        ExperimentConfig.from_run_config({"generator-members": 0})


def test_super_resolution_needs_a_public_set_and_a_supported_published_size() -> None:
    assert ExperimentConfig(super_resolution=2).published_image_size == 128, "the demo's public phantoms train it"
    with pytest.raises(ConfigError, match="super-resolution must be one of"):
        ExperimentConfig(super_resolution=3)
    with pytest.raises(ConfigError, match="trains its network on the public images: set public-data"):
        ExperimentConfig(super_resolution=2, public_data="")
    with pytest.raises(ConfigError, match=r"image-size x super-resolution one of .* \(got 128 x 4\)"):
        ExperimentConfig(image_size=128, super_resolution=4)
    assert not ExperimentConfig.keys()["super-resolution"].pretraining, (
        "G's public pretraining is shared across factors"
    )


def test_feature_matching_runs_only_with_public_pretraining() -> None:
    no_public = ExperimentConfig(public_data="", feature_matching_weight=100.0)
    assert not no_public.matches_features, "no public features to embed with"
    with_public = ExperimentConfig(feature_matching_weight=100.0, public_data="/public")
    assert with_public.matches_features and len(with_public.privacy_plan().release_history) == 1
    assert with_public.privacy_plan().release_epsilon == with_public.feature_release_share * with_public.target_epsilon
    assert no_public.privacy_plan().release_history == [], "no public data: no release planned"
    assert with_public.privacy_plan(releases=False).release_history == [], "a site whose policy refuses the release"


def test_values_are_coerced_to_field_types() -> None:
    config = ExperimentConfig.from_run_config({"target-epsilon": 3, "allow-non-chest": "true", "local-steps": 4.0})
    assert config.target_epsilon == 3.0 and config.allow_non_chest is True and config.local_steps == 4


def test_the_run_config_cannot_switch_dp_off() -> None:
    with pytest.raises(ConfigError, match=r"unknown run-config key\(s\) \['dp'\]"):
        ExperimentConfig.from_run_config({"dp": False})
