"""Differentiable augmentation: drawn per image (so per-sample DP clipping stays exact), differentiable, and
what DiffAugment's translation and cutout do."""

from __future__ import annotations

import pytest
import torch

from cxr_fedsynth.common.gan.augment import diff_augment


def _images(n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_none_is_the_identity_and_an_unknown_policy_is_refused() -> None:
    images = _images()
    assert diff_augment(images, "none", torch.Generator()) is images
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(images, "flip", torch.Generator())


def test_each_row_depends_only_on_its_own_image() -> None:
    images = _images()
    changed = images.clone()
    changed[2] = -changed[2]
    a = diff_augment(images, "translation-cutout", torch.Generator().manual_seed(3))
    b = diff_augment(changed, "translation-cutout", torch.Generator().manual_seed(3))
    others = [i for i in range(len(images)) if i != 2]
    assert torch.equal(a[others], b[others]) and not torch.equal(a[2], b[2])


def test_translation_moves_content_and_cutout_blanks_a_square() -> None:
    images = torch.full((200, 1, 32, 32), 0.5)
    out = diff_augment(images, "translation-cutout", torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    black = (out == -1.0).flatten(1).any(1)  # a black border where the image was shifted
    blank = (out == 0.0).flatten(1).sum(1)  # the cutout square (up to 16 x 16, less at the edges)
    assert float(black.float().mean()) > 0.9, "all but about 1 in 81 images are shifted (zero in both directions)"
    assert int(blank.max()) <= 16 * 16 and float((blank > 0).float().mean()) == 1.0


def test_gradients_flow_through_the_augmentation() -> None:
    images = _images().requires_grad_(True)
    diff_augment(images, "translation-cutout", torch.Generator().manual_seed(0)).sum().backward()
    assert images.grad is not None and float(images.grad.abs().sum()) > 0
