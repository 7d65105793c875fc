"""Differentiable augmentation of every image D sees, real and fake (DiffAugment, Zhao et al. 2020).

"translation-cutout" is DiffAugment's policy for small data: each image is shifted by up to 1/8 of its size
(the border filled with black, -1) and a square of half its size, at a random place, set to 0. Both are drawn
per image, so an augmented row depends only on its own image: per-sample clipping under DP-SGD stays exact, and
the augmentation is differentiable, so G learns through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "translation-cutout")
SHIFT_RATIO = 0.125
CUTOUT_RATIO = 0.5


def diff_augment(images: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """``images`` [N, C, S, S] in [-1, 1] augmented by ``policy`` (one of AUGMENTATIONS) with ``gen``'s draws."""
    if policy == "none":
        return images
    if policy != "translation-cutout":
        raise ValueError(f"unknown augmentation {policy!r}; choose one of {AUGMENTATIONS}")
    return _cutout(_translate(images, gen), gen)


def _offsets(n: int, limit: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(-limit, limit + 1, (n, 1, 1), generator=gen, device=gen.device).to(device)


def _translate(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    shift = max(1, int(h * SHIFT_RATIO + 0.5))
    dy, dx = _offsets(n, shift, gen, images.device), _offsets(n, shift, gen, images.device)
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    y = (rows + dy + shift).clamp(0, h + 2 * shift - 1)  # [N, H, 1]
    x = (cols + dx + shift).clamp(0, w + 2 * shift - 1)  # [N, 1, W]
    padded = F.pad(images, [shift] * 4, value=-1.0)  # [N, C, H + 2s, W + 2s], black border
    batch = torch.arange(n, device=images.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, y, x].permute(0, 3, 1, 2)


def _cutout(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    half = int(h * CUTOUT_RATIO + 0.5) // 2
    cy = torch.randint(0, h, (n, 1, 1), generator=gen, device=gen.device).to(images.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=gen, device=gen.device).to(images.device)
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    inside = ((rows - cy).abs() < half) & ((cols - cx).abs() < half)  # [N, H, W]
    return images * (~inside).unsqueeze(1).to(images.dtype)
