"""The mode-seeking term punishes a generator that maps different latents to one image, and a G step with it
on leaves D untouched and moves G."""

from __future__ import annotations

import torch

from cxr_fedsynth.common.gan.generator_training import GeneratorSettings, GeneratorTrainer, mode_seeking_loss
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models


def test_mode_seeking_loss_is_large_for_collapse_and_small_for_diverse_pairs() -> None:
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    same = torch.rand(4, 1, 8, 8).repeat(2, 1, 1, 1)  # second half equals the first: collapsed
    diverse = torch.rand(8, 1, 8, 8) * 2 - 1
    assert mode_seeking_loss(same, z) > 1000 * mode_seeking_loss(diverse, z)


def test_per_class_mode_seeking_exposes_one_collapsed_class_that_the_batch_ratio_hides() -> None:
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 1] * 2)
    images = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    images[4:6] = images[0:2]  # class 0's pairs are copies: that class is collapsed, class 1 is varied
    batch, per_class = mode_seeking_loss(images, z), mode_seeking_loss(images, z, labels)
    assert per_class > 1000 * batch, "averaged over the batch, class 1's spread hides class 0's collapse"
    varied = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert mode_seeking_loss(varied, z, labels) < 2 * mode_seeking_loss(varied, z), "no collapse: both scopes agree"


def test_generator_step_with_mode_seeking_moves_g_only() -> None:
    arch = GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8, d_width=8)
    generator, discriminator = build_models(arch, seed=0)
    d_before = {k: v.clone() for k, v in discriminator.state_dict().items()}
    g_before = {k: v.clone() for k, v in generator.state_dict().items()}
    trainer = GeneratorTrainer(generator, GeneratorSettings(batch_size=6, steps=2, mode_seeking_weight=1.0))
    metrics = trainer.train_against(discriminator, seed=1)
    assert torch.isfinite(torch.tensor(metrics["g_loss"]))
    assert all(torch.equal(d_before[k], v) for k, v in discriminator.state_dict().items())
    assert any(not torch.equal(g_before[k], v) for k, v in generator.state_dict().items())
