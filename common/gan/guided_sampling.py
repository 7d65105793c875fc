"""Discriminator-guided sampling: of ``1 / keep`` candidates per image asked, keep the ones the run's D rates best.

The top-k form of discriminator rejection sampling (Azadi et al. 2019): for every batch of n images asked, G draws
n / keep candidates of the asked class and the run's aggregated discriminator keeps the n with the highest
projection score (real, for this class) plus log-probability of the class under its auxiliary head. That D is the
average of the sites' DP-SGD updates over public-pretrained features, so publishing and using it is
post-processing of DP outputs: no privacy cost. ``keep`` = 1 draws plain samples. Measured in docs/results.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cxr_fedsynth.common.gan.models import Discriminator, Generator


def guide_scores(discriminator: Discriminator, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N] D's projection score plus the log-probability of ``labels`` under its auxiliary head."""
    score, logits = discriminator(images, labels)
    return score.flatten() + F.log_softmax(logits, dim=1).gather(1, labels[:, None]).flatten()


def draw(
    generator: Generator,
    label: int,
    count: int,
    *,
    gen: torch.Generator,
    keep: float = 1.0,
    discriminator: Discriminator | None = None,
) -> torch.Tensor:
    """``count`` images of class ``label`` [count, 1, S, S]: plain draws, or with ``keep`` < 1 the best-scored
    ``count`` of ``ceil(count / keep)`` candidates under ``discriminator``."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1] (got {keep})")
    if keep < 1 and discriminator is None:
        raise ValueError("guided sampling (keep < 1) needs the run's discriminator")
    device = next(generator.parameters()).device
    candidates = count if keep == 1 else math.ceil(count / keep)
    z = torch.randn(candidates, generator.arch.latent_dim, device=device, generator=gen)
    labels = torch.full((candidates,), label, device=device, dtype=torch.long)
    with torch.no_grad():
        images = generator(z, labels)
        if keep == 1:
            return images
        best = guide_scores(discriminator, images, labels).topk(count).indices
    return images[best]
