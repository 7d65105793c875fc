"""Fixtures of the server tests: a public phantom set and settings small enough to train in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fedsynth.common.data.phantoms import PhantomSpec, generate_phantom_dataset
from cxr_fedsynth.common.experiment_config import ExperimentConfig


@pytest.fixture(scope="package")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 public phantom patients, 2 images each, 32 px."""
    return generate_phantom_dataset(
        tmp_path_factory.mktemp("public") / "set",
        PhantomSpec(num_patients=20, images_per_patient=2, image_size=32, seed=3),
    )


@pytest.fixture
def small_config() -> ExperimentConfig:
    """A 32 px, width-8 run of one round with one step per side, without a public set."""
    return ExperimentConfig(
        public_data="",
        image_size=32,
        phantom_patients=24,
        num_server_rounds=1,
        local_steps=1,
        g_steps=2,
        batch_size=4,
        g_batch_size=4,
        g_width=8,
        d_width=8,
        latent_dim=8,
    )
