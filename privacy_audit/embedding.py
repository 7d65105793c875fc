"""A small convolutional autoencoder trained at audit time on the reference (holdout) images only.

Pixel distances miss near-copies that are shifted or re-contrasted; distances between these embeddings do
not. Training on non-members keeps the encoder itself free of the members it is used to look for. Nothing is
downloaded; an encoder saved by an earlier audit can be reused (safetensors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cxr_fedsynth.common.atomic import atomic_path
from cxr_fedsynth.common.errors import ArtifactError

EMBED_DIM = 32


class ConvEncoder(nn.Module):
    """[N, 1, S, S] in [-1, 1] -> L2-normalised [N, EMBED_DIM]."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(64),
            nn.Conv2d(1, 16, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, EMBED_DIM),
        )
        self.decoder = nn.Sequential(
            nn.Linear(EMBED_DIM, 64 * 8 * 8),
            nn.Unflatten(1, (64, 8, 8)),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def embed(self, images: torch.Tensor, *, batch: int = 512) -> np.ndarray:
        self.eval()
        with torch.no_grad():
            parts = [nn.functional.normalize(self(images[i : i + batch]), dim=1) for i in range(0, len(images), batch)]
        return torch.cat(parts).numpy()


def train_encoder(images: torch.Tensor, *, steps: int = 300, batch: int = 64, seed: int = 0) -> ConvEncoder:
    """Fit the autoencoder on reference images [N, 1, S, S] (reconstruction at 64 px)."""
    torch.manual_seed(seed)
    encoder = ConvEncoder(images.shape[-1])
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    target_pool = nn.AdaptiveAvgPool2d(64)
    gen = torch.Generator().manual_seed(seed)
    encoder.train()
    for _ in range(steps):
        x = images[torch.randint(0, len(images), (min(batch, len(images)),), generator=gen)]
        loss = nn.functional.mse_loss(encoder.decoder(encoder(x)), target_pool(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return encoder


def save_encoder(encoder: ConvEncoder, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        save_file(
            {k: v.contiguous() for k, v in encoder.state_dict().items()},
            str(tmp),
            metadata={"image_size": str(encoder.image_size)},
        )


def load_encoder(path: Path, image_size: int) -> ConvEncoder:
    """Load an encoder saved by :func:`save_encoder` (safetensors, no pickle)."""
    try:
        state = load_file(str(path))
        encoder = ConvEncoder(image_size)
        encoder.load_state_dict(state)
    except Exception as exc:  # safetensors and torch raise several types for a wrong file
        raise ArtifactError(f"{path}: not an encoder saved by privacy-audit --save-encoder ({exc})") from None
    return encoder
