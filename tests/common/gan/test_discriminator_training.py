"""The private D step: clipping and averaging match a hand computation, the sampler's rate is what the
accountant records, the G step leaves D untouched, and nothing Opacus-specific leaks into shared weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxr_fedsynth.common.gan.augment import diff_augment
from cxr_fedsynth.common.gan.discriminator_training import (
    DiscriminatorSettings,
    DiscriminatorTrainer,
    DPSettings,
    train_discriminator_round,
)
from cxr_fedsynth.common.gan.generator_training import GeneratorSettings, GeneratorTrainer
from cxr_fedsynth.common.gan.losses import d_loss_fake, d_loss_real
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.privacy.accounting import epsilon_of, make_accountant
from cxr_fedsynth.common.privacy.patient_sampler import PatientPoissonSampler
from cxr_fedsynth.common.publish.artifacts import clean_state_dict

ARCH = GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8, d_width=8)


def _rows(n_real: int = 5, n_fake: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand(n_real, 1, 32, 32, generator=gen) * 2 - 1
    fake = torch.rand(n_fake, 1, 32, 32, generator=gen) * 2 - 1
    return real, torch.randint(0, 3, (n_real,), generator=gen), fake, torch.randint(0, 3, (n_fake,), generator=gen)


SPATIAL = dataclasses.replace(ARCH, d_head="spatial", g_upsample="nearest")


@pytest.mark.parametrize(
    ("mode", "arch", "augment"),
    [(m, ARCH, "none") for m in ("bk", "ghost", "hooks", "ew", "functorch")]
    + [("bk", SPATIAL, "none"), ("hooks", SPATIAL, "none"), ("bk", ARCH, "translation-cutout")],
)
def test_dp_step_equals_clipped_mean_of_per_row_gradients(mode: str, arch: GanArchitecture, augment: str) -> None:
    settings = DiscriminatorSettings(batch_size=4, lr=1e-3, aux_weight=0.7, grad_sample_mode=mode, augment=augment)
    _, d_private = build_models(arch, seed=1)
    _, d_reference = build_models(arch, seed=1)
    real, real_y, fake, fake_y = _rows()
    clip = 0.05
    trainer = DiscriminatorTrainer(
        d_private, settings, dp=DPSettings(0.0, clip, 0.1), accountant=make_accountant(), augment_seed=5
    )
    trainer.step(real, real_y, fake, fake_y)
    # the reference sees the same augmented rows: the augmentation is drawn per row, before any clipping
    seen = diff_augment(torch.cat([real, fake]), augment, torch.Generator().manual_seed(5))
    real, fake = seen[: len(real)], seen[len(real) :]
    applied = {n: p.grad.clone() for n, p in d_private.named_parameters()}  # what DPOptimizer handed to Adam
    trainer.finish()
    assert all(p.grad is None for p in d_private.parameters())
    # Reference by hand: per-row gradients, each clipped to `clip`, summed, divided by the expected batch size.
    params = dict(d_reference.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    rows = [(real[i : i + 1], real_y[i : i + 1], True) for i in range(len(real))]
    rows += [(fake[i : i + 1], fake_y[i : i + 1], False) for i in range(len(fake))]
    for x, y, is_real in rows:
        score, logits = d_reference(x, y)
        if is_real:
            loss = d_loss_real(score, "hinge") + 0.7 * F.cross_entropy(logits, y, reduction="none")
        else:
            loss = d_loss_fake(score, "hinge")
        grads = torch.autograd.grad(loss.sum(), list(params.values()), allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params.values())]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))  # Opacus' clipping factor
        for name, g in zip(params, grads):
            total[name] += g * factor
    for name, g in total.items():
        assert torch.allclose(applied[name], g / settings.batch_size, atol=1e-7, rtol=1e-4), name
    assert max(float(g.abs().max()) for g in applied.values()) > 0


def test_patient_sampler_one_image_per_patient_at_rate_q() -> None:
    patients = [f"p{i // 3}" for i in range(3000)]  # 1000 patients, 3 images each
    sampler = PatientPoissonSampler(patients, sample_rate=0.05, rng=np.random.default_rng(0))
    sizes = []
    for _ in range(200):
        batch = sampler.sample()
        chosen = [patients[i] for i in batch]
        assert len(chosen) == len(set(chosen)), "a patient contributed two images to one batch"
        sizes.append(len(batch))
    assert np.mean(sizes) == pytest.approx(50, rel=0.05)


def test_round_records_exact_rate_and_steps_in_the_accountant() -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    images = torch.rand(60, 1, 32, 32) * 2 - 1
    labels = torch.randint(0, 3, (60,))
    patients = [f"p{i // 2}" for i in range(60)]
    sampler = PatientPoissonSampler.for_batch_size(patients, batch_size=6, rng=np.random.default_rng(1))
    accountant = make_accountant()
    settings = DiscriminatorSettings(batch_size=6, steps=7)
    dp = DPSettings(noise_multiplier=1.3, max_grad_norm=1.0, sample_rate=sampler.sample_rate)
    for _ in range(3):
        discriminator, _ = train_discriminator_round(
            discriminator, generator, images, labels, sampler, settings, dp=dp, accountant=accountant, seed=3
        )
    assert sampler.sample_rate == pytest.approx(6 / 30)
    assert accountant.history == [(1.3, 6 / 30, 21)]
    assert accountant.get_epsilon(1e-5) == pytest.approx(epsilon_of([(1.3, 0.2, 7)] * 3, delta=1e-5))
    assert not any(k.startswith("_module.") for k in discriminator.state_dict())
    assert all(getattr(p, "grad_sample", None) is None for p in discriminator.parameters())
    assert not discriminator._forward_hooks and not discriminator.features[0]._forward_hooks


def test_generator_step_leaves_discriminator_bit_identical() -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    before = {k: v.clone() for k, v in clean_state_dict(discriminator).items()}
    flags = [p.requires_grad for p in discriminator.parameters()]
    trainer = GeneratorTrainer(generator, GeneratorSettings(batch_size=8, steps=3))
    g_before = [p.clone() for p in generator.parameters()]
    trainer.train_against(discriminator, seed=0)
    after = clean_state_dict(discriminator)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in discriminator.parameters())
    assert [p.requires_grad for p in discriminator.parameters()] == flags
    assert any(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters())), "G must have learned"


@pytest.mark.parametrize("mode", ["bk", "hooks"])
@pytest.mark.parametrize("layers", ["heads", "heads-norms"])
def test_partial_site_training_leaves_the_frozen_layers_untouched(mode: str, layers: str) -> None:
    _, discriminator = build_models(ARCH, seed=2)
    before = {k: v.clone() for k, v in discriminator.state_dict().items()}
    settings = DiscriminatorSettings(batch_size=4, lr=1e-2, grad_sample_mode=mode, trained_layers=layers)
    trainer = DiscriminatorTrainer(discriminator, settings, dp=DPSettings(1.0, 1.0, 0.1), accountant=make_accountant())
    trainer.step(*_rows())
    finished = trainer.finish()
    norm_names = {
        f"features.{name}.{p}"
        for name, m in finished.features.named_modules()
        if isinstance(m, torch.nn.GroupNorm)
        for p in ("weight", "bias")
    }
    changed = {k for k, v in finished.state_dict().items() if not torch.equal(before[k], v)}
    heads = {k for k in before if not k.startswith("features.")}
    expected = heads | norm_names if layers == "heads-norms" else heads
    assert changed == expected, f"{layers}: trained {sorted(changed ^ expected)} unexpectedly (or left them)"
    assert all(p.requires_grad for p in finished.parameters()), "the returned D is a plain, fully trainable module"


def test_r1_adds_the_real_rows_input_slope_to_a_plain_update_and_is_refused_under_dp() -> None:
    gamma = 3.0
    settings = DiscriminatorSettings(batch_size=4, lr=1e-3, aux_weight=0.7, r1_gamma=gamma)
    _, d_trained = build_models(ARCH, seed=1)
    _, d_reference = build_models(ARCH, seed=1)
    real, real_y, fake, fake_y = _rows()
    DiscriminatorTrainer(d_trained, settings, dp=None).step(real, real_y, fake, fake_y)
    applied = {n: p.grad.clone() for n, p in d_trained.named_parameters()}
    x = real.clone().requires_grad_(True)
    score, logits = d_reference(x, real_y)
    (slope,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    penalty = gamma / 2 * slope.pow(2).flatten(1).sum(1)
    assert float(penalty.detach().min()) > 0
    loss = d_loss_real(score, "hinge") + 0.7 * F.cross_entropy(logits, real_y, reduction="none") + penalty
    fake_score, _ = d_reference(fake, fake_y)
    total = (loss.sum() + d_loss_fake(fake_score, "hinge").sum()) / settings.batch_size
    params = dict(d_reference.named_parameters())
    for name, g in zip(params, torch.autograd.grad(total, list(params.values()))):
        assert torch.allclose(applied[name], g, atol=1e-6, rtol=1e-4), name
    with pytest.raises(ValueError, match="R1 penalty"):
        DiscriminatorTrainer(d_trained, settings, dp=DPSettings(1.0, 1.0, 0.1), accountant=make_accountant())
