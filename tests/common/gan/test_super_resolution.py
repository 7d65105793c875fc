"""The public super-resolution network: untrained it is bicubic upsampling, trained on public images it restores
detail that bicubic upsampling does not, and it refuses factors and shapes it cannot serve."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.phantoms import PhantomSpec, generate_phantom_dataset
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.gan.super_resolution import (
    SuperResolution,
    SuperResolutionSpec,
    downsample,
    train_super_resolution,
)


def test_an_untrained_network_is_bicubic_upsampling() -> None:
    low = torch.rand(3, 1, 8, 8) * 1.6 - 0.8
    bicubic = F.interpolate(low, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.allclose(SuperResolution(SuperResolutionSpec(4))(low), bicubic, atol=1e-6)


def test_training_on_public_images_restores_detail_of_images_it_never_saw(tmp_path) -> None:
    folder = generate_phantom_dataset(
        tmp_path / "set", PhantomSpec(num_patients=30, images_per_patient=2, image_size=32)
    )
    images = to_model_range(
        load_labelled_images(
            folder, load_condition_set("coarse"), labels=None, image_size=32, show_progress=False
        ).images
    )
    public, unseen = images[:40], images[40:]
    network = train_super_resolution(
        public, SuperResolutionSpec(2, width=16, depth=2, steps=100, batch_size=16, lr=3e-3), show_progress=False
    )
    low = downsample(unseen, 2)
    with torch.inference_mode():
        learned = F.l1_loss(network(low), unseen)
    bicubic = F.l1_loss(F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1), unseen)
    assert learned < 0.9 * bicubic


def test_unserved_factors_and_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="factor must be one of"):
        SuperResolutionSpec(3)
    with pytest.raises(ConfigError, match="divides by 4"):
        train_super_resolution(torch.zeros(2, 1, 30, 30), SuperResolutionSpec(4, steps=1), show_progress=False)
