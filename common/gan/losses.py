"""GAN losses, per sample (so DP-SGD can clip each real example's contribution on its own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxr_fedsynth.common.errors import ConfigError

LOSSES = ("hinge", "nonsaturating")


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ConfigError(f"loss {kind!r} is unknown; use one of {LOSSES}")
    return kind


def d_loss_real(score: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample loss for real rows: pushes D(x) up."""
    return F.relu(1.0 - score) if kind == "hinge" else F.softplus(-score)


def d_loss_fake(score: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample loss for generated rows: pushes D(G(z)) down."""
    return F.relu(1.0 + score) if kind == "hinge" else F.softplus(score)


def g_loss(score: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample generator loss: pushes D(G(z)) up."""
    return -score if kind == "hinge" else F.softplus(-score)
