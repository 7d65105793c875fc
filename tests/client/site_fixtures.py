"""Shared helpers of the site tests: a simulated site's phantom records and freshly initialised G and D weights."""

from __future__ import annotations

import torch

from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.data.simulated_sites import read_run_dataset, split_records
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.publish.artifacts import clean_state_dict


def first_site_records(config: ExperimentConfig) -> list[ImageRecord]:
    """The records of the first of two simulated sites over ``config``'s phantom set."""
    per_site = split_records(config, read_run_dataset(config).records, 2).sites
    return per_site[0]


def initial_weights(config: ExperimentConfig) -> dict[str, dict[str, torch.Tensor]]:
    """What the server sends in round 1: freshly initialised G and D state dicts."""
    g, d = build_models(config.architecture(len(config.condition_set())), seed=0)
    return {"generator": clean_state_dict(g), "discriminator": clean_state_dict(d)}
