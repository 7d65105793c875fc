"""Pick the compute device: a CUDA GPU when present (or asked for), else the CPU."""

from __future__ import annotations

import torch

from cxr_fedsynth.common.errors import ConfigError


def pick_device(preference: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` fails clearly without a GPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda was asked for but no CUDA GPU is visible; use device=auto or cpu")
        return torch.device("cuda")
    return torch.device("cpu")
