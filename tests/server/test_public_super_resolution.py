"""The server trains the super-resolution network on the public set alone, at the published size, and the model
card says what it was trained on without naming a path."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.server.federated_gan import FederatedGanServer
from cxr_fedsynth.server.public_super_resolution import train_public_super_resolution


def test_the_network_learns_from_the_public_set_at_the_published_size(
    tmp_path: Path, phantom_dir: Path, small_config: ExperimentConfig
) -> None:
    config = small_config.replace(
        output_dir=str(tmp_path), public_data=str(phantom_dir), super_resolution=2, super_resolution_steps=2
    )
    network, entry = train_public_super_resolution(config, device=torch.device("cpu"))
    assert entry["trained_on"] == {"name": phantom_dir.name, "images": 40, "image_size": 64}
    assert entry["recipe"]["factor"] == 2 and entry["recipe"]["steps"] == 2
    assert network(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 64, 64)
    card = FederatedGanServer(config, run_name="sr").model_card(entry)
    assert card["super_resolution"] == entry and str(phantom_dir) not in json.dumps(card)
