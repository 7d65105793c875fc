"""Square crop, resize and scaling of decoded radiographs (the one place image geometry is decided)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cxr_fedsynth.common.errors import ConfigError

SUPPORTED_SIZES = (32, 64, 128, 256)


def check_image_size(size: int) -> int:
    """Validate a training resolution; the models are built for these powers of two."""
    if size not in SUPPORTED_SIZES:
        raise ConfigError(f"image size {size} is not supported; use one of {SUPPORTED_SIZES}")
    return size


def center_square(image: np.ndarray) -> np.ndarray:
    """Centre crop to the short side."""
    h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop a 2-D uint8 image and resize it to ``size`` x ``size`` with Lanczos filtering."""
    square = center_square(image)
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 1, H, W] in [-1, 1], the generator's output range."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0).unsqueeze(1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, 1, H, W] in [-1, 1] -> uint8 [N, H, W]."""
    return images.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).squeeze(1).cpu().numpy()
