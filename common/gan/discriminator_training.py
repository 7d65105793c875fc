"""The only code that touches real images: a site's discriminator update, with or without DP-SGD.

With DP, each row of one concatenated batch [real rows | fake rows] has its gradient clipped to
``max_grad_norm`` (by default book-keeping clipping, ``common.privacy.bookkeeping_clipping``; or an Opacus
GradSampleModule mode); Opacus' DP optimizer adds Gaussian noise of std
``noise_multiplier * max_grad_norm`` to the sum and divides by the *expected* batch size. Fake rows are drawn
from G with labels from the public uniform prior and always number ``batch_size`` (never the realised number of
real rows, which would leak it), so adding or removing one patient changes the clipped sum by at most one row.
The RDP accountant is stepped by the optimizer hook with the sampler's exact rate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant
from opacus.grad_sample import AbstractGradSampleModule, GradSampleModuleFastGradientClipping
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping

from cxr_fedsynth.common.gan.augment import diff_augment
from cxr_fedsynth.common.gan.losses import d_loss_fake, d_loss_real
from cxr_fedsynth.common.gan.models import Discriminator, Generator
from cxr_fedsynth.common.privacy.bookkeeping_clipping import BookKeepingClipper
from cxr_fedsynth.common.privacy.patient_sampler import PatientPoissonSampler
from cxr_fedsynth.common.privacy.secure_noise import SecureDPOptimizer, SecureDPOptimizerFastGradientClipping

# Opacus' hooks on the first layer fire although the images need no gradient; harmless, and noisy per step.
warnings.filterwarnings(
    "ignore", message="Full backward hook is firing when gradients are computed with respect to module outputs"
)
warnings.filterwarnings("ignore", message=".*torch.cpu.amp.autocast.*", category=FutureWarning)  # expanded weights


# bk: book-keeping clipping (common.privacy.bookkeeping_clipping), fastest here; the rest are Opacus' own engines.
GRAD_SAMPLE_MODES = ("bk", "ew", "hooks", "functorch", "ghost")
FAST_CLIPPING_MODES = ("bk", "ghost")
#: "heads": sites train only D's adversarial, projection and class heads (features from public pretraining):
#: far fewer noised parameters, so far less noise per update at the same epsilon. "heads-norms" also trains
#: the features' GroupNorm scales and shifts (a few hundred more), which lets the frozen features adapt.
TRAINED_LAYERS = ("all", "heads", "heads-norms")


@dataclass(frozen=True)
class DiscriminatorSettings:
    """Optimisation settings of a site's D update."""

    batch_size: int = 32
    steps: int = 10
    lr: float = 2e-4
    beta1: float = 0.5
    loss: str = "hinge"
    aux_weight: float = 1.0
    grad_sample_mode: str = "bk"  # per-row clipping engine, one of GRAD_SAMPLE_MODES
    trained_layers: str = "all"  # one of TRAINED_LAYERS: "heads" and "heads-norms" freeze D's convolutions
    augment: str = "none"  # differentiable augmentation of every image D sees, one of common.gan.augment.AUGMENTATIONS
    r1_gamma: float = 0.0  # R1 penalty gamma / 2 * |grad_x D(x)|^2 on real rows (double backward: plain updates only)


@dataclass(frozen=True)
class DPSettings:
    """DP-SGD mechanism parameters for one round."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float


@dataclass
class RoundResult:
    """Aggregate metrics of a site's round (no per-sample values)."""

    d_loss: float
    real_score: float
    fake_score: float
    aux_accuracy: float
    steps: int


def freeze_untrained_layers(discriminator: Discriminator, trained_layers: str) -> None:
    """Leave ``requires_grad`` only on the parameters a site trains (see TRAINED_LAYERS)."""
    discriminator.features.requires_grad_(trained_layers == "all")
    if trained_layers == "heads-norms":
        for layer in discriminator.features.modules():
            if isinstance(layer, torch.nn.GroupNorm):
                layer.requires_grad_(True)


class DiscriminatorTrainer:
    """Owns D's optimizer for one round; ``finish()`` returns the plain module (no Opacus hooks)."""

    def __init__(
        self,
        discriminator: Discriminator,
        settings: DiscriminatorSettings,
        *,
        dp: DPSettings | None,
        accountant: RDPAccountant | None = None,
        noise_generator: torch.Generator | None = None,
        secure_noise: bool = False,
        augment_seed: int = 0,
    ) -> None:
        """``secure_noise``: DP noise from the OS CSPRNG (``common.privacy.secure_noise``; what sites use), else
        from ``noise_generator`` (seeded: reproducible, for tests and benchmarks). ``augment_seed`` drives the
        augmentation's draws (``settings.augment``)."""
        self.settings = settings
        self.discriminator = discriminator
        device = next(discriminator.parameters()).device
        self.augment_gen = torch.Generator(device=device).manual_seed(augment_seed)
        self.dp = dp
        if dp is not None and settings.r1_gamma:
            raise ValueError("the R1 penalty needs a double backward that per-row DP clipping does not support")
        self.clipper: BookKeepingClipper | None = None
        freeze_untrained_layers(discriminator, settings.trained_layers)
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=(settings.beta1, 0.999))
        if dp is None:
            self.model: torch.nn.Module = discriminator
            self.optimizer: torch.optim.Optimizer = optimizer
            return
        if accountant is None:
            raise ValueError("a DP round needs an accountant to record its steps")
        mode = settings.grad_sample_mode
        if mode == "bk":  # clipped sums computed here, noise and accounting by Opacus
            self.clipper = BookKeepingClipper(discriminator, max_grad_norm=dp.max_grad_norm)
            self.model = discriminator
        else:
            extra = {"max_grad_norm": dp.max_grad_norm, "use_ghost_clipping": True} if mode == "ghost" else {}
            self.model = prepare_module(discriminator, mode, batch_first=True, loss_reduction="sum", **extra)
        if secure_noise:
            optimizer_class = (
                SecureDPOptimizerFastGradientClipping if mode in FAST_CLIPPING_MODES else SecureDPOptimizer
            )
        else:
            optimizer_class = DPOptimizerFastGradientClipping if mode in FAST_CLIPPING_MODES else DPOptimizer
        self.optimizer = optimizer_class(
            optimizer,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            expected_batch_size=settings.batch_size,
            loss_reduction="mean",  # divide the noised sum by the expected batch size
            generator=noise_generator,
        )
        self.optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=dp.sample_rate))

    def step(
        self, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> dict[str, float]:
        """One D update on ``real`` (n rows, n may be 0) and ``fake`` (batch_size rows)."""
        s = self.settings
        self.optimizer.zero_grad(set_to_none=True)  # before the forward: expanded-weights mode checks there
        images = diff_augment(torch.cat([real, fake]), s.augment, self.augment_gen)  # [n + B, 1, S, S], per row
        if s.r1_gamma > 0:  # the penalty differentiates D's score with respect to its input
            images = images.detach().requires_grad_(True)
        labels = torch.cat([real_labels, fake_labels])
        score, logits = self.model(images, labels)  # [n + B], [n + B, K]
        n = len(real)
        real_rows = d_loss_real(score[:n], s.loss) + s.aux_weight * F.cross_entropy(
            logits[:n], real_labels, reduction="none"
        )
        if s.r1_gamma > 0 and n:
            (slope,) = torch.autograd.grad(score[:n].sum(), images, create_graph=True)
            real_rows = real_rows + s.r1_gamma / 2 * slope[:n].pow(2).flatten(1).sum(1)
        per_row = torch.cat([real_rows, d_loss_fake(score[n:], s.loss)])
        self._backward(per_row)
        self.optimizer.step()
        return {
            "d_loss": float(per_row.detach().sum()) / max(1, n + len(fake)),
            "real_score": float(score[:n].detach().mean()) if n else float("nan"),
            "fake_score": float(score[n:].detach().mean()),
            "aux_accuracy": float((logits[:n].argmax(1) == real_labels).float().mean()) if n else float("nan"),
        }

    def _backward(self, per_row: torch.Tensor) -> None:
        """Leave in ``p.grad`` what the optimizer expects: the per-row clipped sum (DP) or the mean (plain)."""
        if self.dp is None:  # DPOptimizer divides the noised sum by B: divide here so both take the same step size
            (per_row.sum() / self.settings.batch_size).backward()
        elif self.clipper is not None:
            self.clipper.backward(per_row)
        elif isinstance(self.model, GradSampleModuleFastGradientClipping):
            # Opacus ghost clipping: norms from the first backward, then the coefficient-weighted loss
            per_row.sum().backward(retain_graph=True)
            self.optimizer.zero_grad(set_to_none=True)
            coef = self.model.get_clipping_coef()
            self.model.disable_hooks()
            (coef * per_row).sum().backward()
            self.model.enable_hooks()
        else:  # per-row gradients materialised; DPOptimizer clips them
            per_row.sum().backward()

    def finish(self) -> Discriminator:
        """Remove Opacus hooks and per-sample gradients; the returned module is safe to share."""
        self.optimizer.zero_grad(set_to_none=True)
        if isinstance(self.model, AbstractGradSampleModule):
            self.model.to_standard_module()
        if self.clipper is not None:
            self.clipper.detach()
        self.discriminator.requires_grad_(True)
        for p in self.discriminator.parameters():
            p.grad_sample = None
            p.grad = None
        return self.discriminator


def generate_fakes(
    generator: Generator, count: int, *, num_classes: int, device: torch.device, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fake images with labels from the public uniform prior (never from private data)."""
    labels = torch.randint(0, num_classes, (count,), device=device, generator=gen)
    z = torch.randn(count, generator.arch.latent_dim, device=device, generator=gen)
    with torch.no_grad():
        return generator(z, labels), labels


def train_discriminator_round(
    discriminator: Discriminator,
    generator: Generator,
    images: torch.Tensor,
    labels: torch.Tensor,
    sampler: PatientPoissonSampler,
    settings: DiscriminatorSettings,
    *,
    dp: DPSettings | None,
    accountant: RDPAccountant | None,
    seed: int,
    secure_noise: bool = False,
) -> tuple[Discriminator, RoundResult]:
    """Run ``settings.steps`` D updates on a site's images; returns the hook-free D and aggregate metrics.

    ``seed`` drives the fakes (and the DP noise unless ``secure_noise``): sites pass fresh OS entropy and secure
    noise (see client.site_round), tests a fixed value.
    """
    device = images.device
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    trainer = DiscriminatorTrainer(
        discriminator,
        settings,
        dp=dp,
        accountant=accountant,
        noise_generator=noise,
        secure_noise=secure_noise,
        augment_seed=seed + 2,
    )
    discriminator.train()
    history: list[dict[str, float]] = []
    for _ in range(settings.steps):
        index = torch.from_numpy(sampler.sample()).to(device)
        fake, fake_labels = generate_fakes(
            generator, settings.batch_size, num_classes=generator.arch.num_classes, device=device, gen=gen
        )
        history.append(trainer.step(images[index], labels[index], fake, fake_labels))
    finished = trainer.finish()
    mean = {k: _mean_of_steps([h[k] for h in history]) for k in ("d_loss", "real_score", "fake_score", "aux_accuracy")}
    return finished, RoundResult(steps=settings.steps, **mean)


def _mean_of_steps(values: list[float]) -> float:
    """The mean over the steps that had rows (an empty Poisson batch gives NaN); NaN when none had."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")
