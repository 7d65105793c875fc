"""The server's generator update against the aggregated discriminator (no real data: DP by post-processing).

D is frozen and only read: its parameters, buffers and any optimizer state stay bit-identical. The
auxiliary class loss on G is weighted (``aux_weight``) rather than at full strength, which in ACGAN-style
models trades within-class diversity for class fidelity.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cxr_fedsynth.common.gan.augment import diff_augment
from cxr_fedsynth.common.gan.feature_matching import FeatureMatcher
from cxr_fedsynth.common.gan.losses import g_loss
from cxr_fedsynth.common.gan.models import Discriminator, Generator

#: Where the mode-seeking ratio is averaged: over the whole batch (MSGAN) or per class (mode_seeking_loss).
MODE_SEEKING_SCOPES = ("batch", "class")


@dataclass(frozen=True)
class GeneratorSettings:
    """Optimisation settings of the server's G steps."""

    batch_size: int = 64
    steps: int = 10
    lr: float = 2e-4
    beta1: float = 0.5
    loss: str = "hinge"
    aux_weight: float = 0.5
    ema_decay: float = 0.999
    mode_seeking_weight: float = 0.0
    mode_seeking_scope: str = (
        "batch"  # "batch": MSGAN's ratio over the whole batch; "class": per class (mode_seeking_loss)
    )
    feature_matching_weight: float = 0.0
    augment: str = "none"  # D sees G's images through this augmentation, as it saw its own (common.gan.augment)


def mode_seeking_loss(images: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """MSGAN (Mao et al. 2019): 1 / (image distance / latent distance) of the pairs (first half, second half).

    Rows i and i + B/2 share a label; a G that maps different latents to the same image (mode collapse) pays.
    With ``labels`` the ratio is averaged per class and the loss is the mean over classes of its inverse, so one
    collapsed class costs as much as it would alone instead of hiding behind the varied classes of the batch.
    """
    first, second = images.chunk(2)
    z_first, z_second = z.chunk(2)
    ratio = (first - second).abs().flatten(1).mean(dim=1) / (z_first - z_second).abs().mean(dim=1)
    if labels is None:
        return 1.0 / (ratio.mean() + 1e-5)
    half_labels = labels[: len(ratio)]
    per_class = torch.stack([ratio[half_labels == c].mean() for c in half_labels.unique()])
    return (1.0 / (per_class + 1e-5)).mean()


class GeneratorTrainer:
    """Keeps G, its optimizer and an exponential moving average of its weights across rounds."""

    def __init__(self, generator: Generator, settings: GeneratorSettings) -> None:
        self.generator = generator
        self.settings = settings
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(settings.beta1, 0.999))
        self.ema = copy.deepcopy(generator).eval().requires_grad_(False)
        self.updates = 0

    def _update_ema(self) -> None:
        # Warm-up: early on the average follows G closely, later it smooths over ~1/(1-decay) steps.
        decay = min(self.settings.ema_decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for ema_p, p in zip(self.ema.parameters(), self.generator.parameters()):
                ema_p.lerp_(p, 1.0 - decay)

    def train_against(
        self,
        discriminator: Discriminator,
        *,
        seed: int,
        steps: int | None = None,
        matcher: FeatureMatcher | None = None,
    ) -> dict[str, float]:
        """Run ``steps`` (default ``settings.steps``) G updates against a frozen D; returns mean losses.

        With a ``matcher`` (the sites' released class-mean features), G also pays ``feature_matching_weight``
        times the distance of its class-mean features to them.
        """
        s = self.settings
        steps = s.steps if steps is None else steps
        device = next(self.generator.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        trainable = [p.requires_grad for p in discriminator.parameters()]
        discriminator.requires_grad_(False)
        self.generator.train()
        totals = {"g_loss": 0.0, "g_aux_accuracy": 0.0, **({"g_feature_distance": 0.0} if matcher else {})}
        try:
            for _ in range(steps):
                half = torch.randint(
                    0, self.generator.arch.num_classes, (s.batch_size // 2,), device=device, generator=gen
                )
                labels = torch.cat([half, half])  # two latents per label: the mode-seeking pairs
                z = torch.randn(len(labels), self.generator.arch.latent_dim, device=device, generator=gen)
                images = self.generator(z, labels)
                score, logits = discriminator(diff_augment(images, s.augment, gen), labels)
                loss = g_loss(score, s.loss).mean() + s.aux_weight * F.cross_entropy(logits, labels)
                if s.mode_seeking_weight:
                    loss = loss + s.mode_seeking_weight * mode_seeking_loss(
                        images, z, labels if s.mode_seeking_scope == "class" else None
                    )
                if matcher is not None:
                    distance = matcher.loss(images, labels)
                    loss = loss + s.feature_matching_weight * distance
                    totals["g_feature_distance"] += float(distance.detach())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.updates += 1
                self._update_ema()
                totals["g_loss"] += float(loss.detach())
                totals["g_aux_accuracy"] += float((logits.argmax(1) == labels).float().mean())
        finally:
            for p, flag in zip(discriminator.parameters(), trainable):
                p.requires_grad_(flag)
        return {k: v / max(1, steps) for k, v in totals.items()}

    def published(self) -> Generator:
        """The weights to publish: the EMA when enabled, else G itself."""
        return self.ema if self.settings.ema_decay > 0 else self.generator
