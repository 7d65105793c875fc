"""G and D shapes at every supported size; D passes Opacus' validator (no BatchNorm, no spectral norm)."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from cxr_fedsynth.common.gan.models import GanArchitecture, build_models


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_shapes_and_opacus_compatibility(size: int) -> None:
    arch = GanArchitecture(image_size=size, num_classes=5, latent_dim=16, g_width=4, d_width=4)
    generator, discriminator = build_models(arch, seed=0)
    labels = torch.tensor([0, 4])
    images = generator(torch.randn(2, 16), labels)
    assert images.shape == (2, 1, size, size) and images.abs().max() <= 1
    score, logits = discriminator(images, labels)
    assert score.shape == (2,) and logits.shape == (2, 5)
    assert ModuleValidator.validate(discriminator, strict=False) == []


def test_build_is_reproducible_and_leaves_global_rng_alone() -> None:
    arch = GanArchitecture(image_size=32, num_classes=2, g_width=4, d_width=4)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_models(arch, seed=7)
    assert torch.equal(torch.rand(1), expected_next), "DP noise must not depend on the public model seed"
    b, _ = build_models(arch, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
