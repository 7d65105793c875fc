"""Book-keeping clipping and the per-layer norm samplers against Opacus' reference (hooks mode, materialised
per-row gradients): per-row norms and clipped sums agree to float32 tolerance for every layer type of D, both
convolution paths (ghost and instantiated), the whole discriminator, and Opacus' own ghost mode."""

from __future__ import annotations

import copy

import pytest
import torch
from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
from torch import nn

from cxr_fedsynth.common.gan.discriminator_training import (
    DiscriminatorSettings,
    DiscriminatorTrainer,
    DPSettings,
)
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.privacy.accounting import make_accountant
from cxr_fedsynth.common.privacy.bookkeeping_clipping import BookKeepingClipper
from cxr_fedsynth.common.privacy.per_sample_norms import conv_uses_ghost_norm


class Head(nn.Module):
    """One layer under test followed by a fixed non-linear read-out, so every row has its own loss."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        return (torch.tanh(out) * torch.linspace(-1, 1, out[0].numel()).view_as(out[0])).flatten(1).sum(dim=1) ** 2


def _reference(model: nn.Module, forward, clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row norms and the clipped sum from Opacus' materialised per-row gradients."""
    wrapped = GradSampleModule(copy.deepcopy(model), batch_first=True, loss_reduction="sum")
    forward(wrapped).sum().backward()
    params = dict(wrapped._module.named_parameters())
    per_row = {n: p.grad_sample.flatten(1) for n, p in params.items()}
    norms = torch.stack([g.norm(dim=1) for g in per_row.values()]).norm(dim=0)
    coef = (clip / (norms + 1e-6)).clamp(max=1.0)
    return norms, {n: (coef @ g).view_as(params[n]) for n, g in per_row.items()}


def _book_keeping(model: nn.Module, forward, clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = copy.deepcopy(model)
    clipper = BookKeepingClipper(model, max_grad_norm=clip)
    norms = clipper.backward(forward(model))
    clipper.detach()
    return norms, {n: p.grad for n, p in model.named_parameters()}


def _assert_same(model: nn.Module, forward, clip: float) -> None:
    ref_norms, ref_sums = _reference(model, forward, clip)
    norms, sums = _book_keeping(model, forward, clip)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-4, atol=1e-6)
    assert 0 < int((ref_norms > clip).sum()) < len(ref_norms), "choose clip so some rows are clipped and some not"
    for name, ref in ref_sums.items():
        # float32: entries near zero carry the rounding of the large ones, so atol scales with the tensor
        torch.testing.assert_close(sums[name], ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()), msg=name)


CONVS = [  # (in, out, kernel, stride, padding, size, bias): both the ghost and the instantiated path
    (1, 8, 4, 2, 1, 32, True),
    (8, 16, 4, 2, 1, 16, False),
    (64, 32, 4, 2, 1, 8, False),
    (3, 5, 3, 1, 1, 9, True),
]


@pytest.mark.parametrize("spec", CONVS)
def test_conv2d_matches_opacus(spec: tuple) -> None:
    c_in, c_out, k, s, p, size, bias = spec
    torch.manual_seed(0)
    model = Head(nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=bias))
    x = torch.randn(6, c_in, size, size)
    ref_norms, _ = _reference(model, lambda m: m(x), 1.0)
    _assert_same(model, lambda m: m(x), float(ref_norms.median()))


def test_conv_paths_chosen_by_cost() -> None:
    assert not conv_uses_ghost_norm(nn.Conv2d(1, 16, 4, 2, 1), output_positions=32 * 32)  # first layer: instantiate
    assert conv_uses_ghost_norm(nn.Conv2d(64, 128, 4, 2, 1), output_positions=4 * 4)  # deep layer: ghost


@pytest.mark.parametrize(
    "layer, make_input",
    [
        (nn.GroupNorm(4, 8), lambda: torch.randn(6, 8, 5, 5)),
        (nn.Linear(7, 3), lambda: torch.randn(6, 7)),
        (nn.Linear(7, 3, bias=False), lambda: torch.randn(6, 7)),
        (nn.Embedding(5, 4), lambda: torch.tensor([[0], [3], [3], [1], [4], [0]])),
    ],
    ids=["groupnorm", "linear", "linear-nobias", "embedding"],
)
def test_other_layers_match_opacus(layer: nn.Module, make_input) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model, x = Head(layer), make_input()
    ref_norms, _ = _reference(model, lambda m: m(x), 1.0)
    _assert_same(model, lambda m: m(x), float(ref_norms.median()))


@pytest.mark.parametrize("size", [32, 64])
def test_whole_discriminator_matches_opacus(size: int) -> None:
    arch = GanArchitecture(image_size=size, num_classes=4, latent_dim=8, g_width=8, d_width=8)
    _, discriminator = build_models(arch, seed=3)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(10, 1, size, size, generator=gen) * 2 - 1
    labels = torch.randint(0, 4, (10,), generator=gen)

    def per_row_loss(model: nn.Module) -> torch.Tensor:
        score, logits = model(images, labels)
        return torch.relu(1 - score) + nn.functional.cross_entropy(logits, labels, reduction="none")

    ref_norms, _ = _reference(discriminator, per_row_loss, 1.0)
    _assert_same(discriminator, per_row_loss, float(ref_norms.median()))


def test_opacus_ghost_mode_uses_the_registered_conv_and_groupnorm_norms() -> None:
    arch = GanArchitecture(image_size=32, num_classes=4, latent_dim=8, g_width=8, d_width=8)
    _, discriminator = build_models(arch, seed=3)
    images, labels = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    ghost = GradSampleModuleFastGradientClipping(
        copy.deepcopy(discriminator), batch_first=True, loss_reduction="sum", max_grad_norm=1.0
    )

    def per_row_loss(model: nn.Module) -> torch.Tensor:
        score, logits = model(images, labels)
        return score + logits.logsumexp(dim=1)

    per_row_loss(ghost).sum().backward()
    ref_norms, _ = _reference(discriminator, per_row_loss, 1.0)
    assert torch.allclose(ghost.get_norm_sample(), ref_norms, rtol=1e-4)


def test_noised_step_and_accountant_identical_to_opacus_hooks() -> None:
    arch = GanArchitecture(image_size=32, num_classes=4, latent_dim=8, g_width=8, d_width=8)
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.rand(5, 1, 32, 32, generator=gen), torch.rand(8, 1, 32, 32, generator=gen)
    real_y, fake_y = torch.randint(0, 4, (5,), generator=gen), torch.randint(0, 4, (8,), generator=gen)
    grads, histories = {}, {}
    for mode in ("hooks", "bk"):
        _, discriminator = build_models(arch, seed=5)
        accountant = make_accountant()
        trainer = DiscriminatorTrainer(
            discriminator,
            DiscriminatorSettings(batch_size=8, grad_sample_mode=mode),
            dp=DPSettings(1.1, 0.5, 0.07),
            accountant=accountant,
            noise_generator=torch.Generator().manual_seed(9),
        )
        for _ in range(2):
            trainer.step(real, real_y, fake, fake_y)
        grads[mode] = [p.grad.clone() for p in discriminator.parameters()]  # clipped + noised + averaged
        histories[mode] = accountant.history
        trainer.finish()
    assert histories["bk"] == histories["hooks"] == [(1.1, 0.07, 2)]
    for g_bk, g_hooks in zip(grads["bk"], grads["hooks"]):
        assert torch.allclose(g_bk, g_hooks, rtol=1e-4, atol=1e-5)


def test_unsupported_layer_and_second_forward_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="BatchNorm2d"):
        BookKeepingClipper(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), max_grad_norm=1.0)
    layer = nn.Linear(3, 1)
    clipper = BookKeepingClipper(layer, max_grad_norm=1.0)
    layer(torch.randn(2, 3))
    with pytest.raises(NotImplementedError, match="ran twice"):
        layer(torch.randn(2, 3))
    clipper.detach()
    BookKeepingClipper(layer, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="must not require gradients"):
        layer(torch.randn(2, 3, requires_grad=True))
