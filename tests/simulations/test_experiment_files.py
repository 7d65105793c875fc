"""Experiment files are valid run configs that hold only what differs from the defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.site_policy import SitePolicy

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "simulations" / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_holds_only_changes_to_the_defaults(path: Path) -> None:
    experiment = tomllib.loads(path.read_text())
    assert set(experiment) == {"experiment", "run-config"} and experiment["experiment"]["num-sites"] >= 1
    run_config = experiment["run-config"]
    ExperimentConfig.from_run_config(run_config)  # every key known, every value valid
    defaults = ExperimentConfig().to_run_config()
    assert not [k for k, v in run_config.items() if defaults[k] == v], "restates a default"
    if "site-policy" in experiment["experiment"]:  # the simulated sites' own policy file, beside the experiment
        SitePolicy.load(path.parent / experiment["experiment"]["site-policy"], deployed=False)
