"""Gaussian noise for DP from the operating system's CSPRNG, hardened against floating-point attacks.

``torch.randn`` with a seeded ``torch.Generator`` is a Mersenne Twister: fine for tests, not for noise that must
stay unpredictable to an adversary who sees many outputs. Here the uniform bits come from ``os.urandom`` and
become normals by Box-Muller in float64; as in Opacus' ``secure_mode`` (Holohan and Braghin 2021, n = 2), each
value is the sum of four such normals divided by two, so the low bits of the float no longer reveal the draw.
Opacus' own secure mode needs torchcsprng, which has no build for current torch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

#: Normals summed per value (Opacus' secure_mode: 2n with n = 2).
DRAWS = 4


def _csprng_standard_normal(count: int) -> np.ndarray:
    """``count`` standard normals (float64) from os.urandom by Box-Muller."""
    pairs = (count + 1) // 2
    bits = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs)
    u1 = ((bits[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]: log is finite
    u2 = (bits[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * math.pi * u2
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]


def secure_gaussian_like(reference: torch.Tensor, std: float) -> torch.Tensor:
    """Noise N(0, std^2) shaped, typed and placed like ``reference``, from the CSPRNG."""
    if std == 0:
        return torch.zeros_like(reference)
    count = reference.numel()
    draws = _csprng_standard_normal(DRAWS * count).reshape(DRAWS, count).sum(axis=0) / math.sqrt(DRAWS)
    return torch.from_numpy(std * draws).to(device=reference.device, dtype=reference.dtype).view_as(reference)


class _SecureNoise:
    """Mixin for Opacus' DP optimizers: the noise of every step comes from :func:`secure_gaussian_like`."""

    def add_noise(self) -> None:
        multiplier = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier)
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            p.grad = (p.summed_grad + secure_gaussian_like(p.summed_grad, multiplier * self.max_grad_norm)).view_as(p)
            _mark_as_processed(p.summed_grad)


class SecureDPOptimizer(_SecureNoise, DPOptimizer):
    """Opacus' DPOptimizer with CSPRNG noise."""


class SecureDPOptimizerFastGradientClipping(_SecureNoise, DPOptimizerFastGradientClipping):
    """Opacus' fast-gradient-clipping DPOptimizer with CSPRNG noise."""
