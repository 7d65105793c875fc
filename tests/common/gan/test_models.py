"""G and D shapes at every supported size; D refuses other sizes and passes Opacus' validator (no BatchNorm, no
spectral norm)."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from cxr_fedsynth.common.gan.models import GanArchitecture, build_models


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize(("d_head", "g_upsample"), [("pooled", "transpose"), ("spatial", "nearest")])
def test_shapes_and_opacus_compatibility(size: int, d_head: str, g_upsample: str) -> None:
    arch = GanArchitecture(
        image_size=size, num_classes=5, latent_dim=16, g_width=4, d_width=4, d_head=d_head, g_upsample=g_upsample
    )
    generator, discriminator = build_models(arch, seed=0)
    labels = torch.tensor([0, 4])
    images = generator(torch.randn(2, 16), labels)
    assert images.shape == (2, 1, size, size) and images.abs().max() <= 1
    score, logits = discriminator(images, labels)
    assert score.shape == (2,) and logits.shape == (2, 5)
    assert ModuleValidator.validate(discriminator, strict=False) == []
    with pytest.raises(ValueError, match=f"scores {size} x {size} px images"):
        discriminator(torch.zeros(2, 1, size * 2, size * 2), labels)  # pooling would hide the wrong scale


def test_the_spatial_head_sees_where_things_are() -> None:
    """Moving the same content to another place changes the spatial head's score, not the pooled one's."""
    images = torch.zeros(1, 1, 32, 32)
    images[..., :16, :16] = 1.0
    moved = torch.flip(images, dims=(2, 3))
    label = torch.tensor([0])
    for d_head, changes in (("pooled", False), ("spatial", True)):
        _, discriminator = build_models(GanArchitecture(image_size=32, num_classes=2, d_head=d_head), seed=0)
        discriminator.features = torch.nn.AvgPool2d(8)  # the heads alone, on [1, 1, 4, 4] features of the image
        discriminator.adversarial = torch.nn.Linear(16 if d_head == "spatial" else 1, 1)
        discriminator.projection, discriminator.classifier = torch.nn.Embedding(2, 1), torch.nn.Linear(1, 2)
        a, b = discriminator(images, label)[0], discriminator(moved, label)[0]
        assert bool(torch.isclose(a, b)) != changes, d_head


def test_build_is_reproducible_and_leaves_global_rng_alone() -> None:
    arch = GanArchitecture(image_size=32, num_classes=2, g_width=4, d_width=4)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_models(arch, seed=7)
    assert torch.equal(torch.rand(1), expected_next), "DP noise must not depend on the public model seed"
    b, _ = build_models(arch, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
