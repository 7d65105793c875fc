"""A general image encoder for realism figures: self-supervised (SimCLR) on public chest X-rays only.

The TRTR classifier's features see only what separates the classes, so a generator that draws class
statistics scores well in them. This encoder is trained without labels to tell each public image apart from
the others under crops, small shifts and rotations, exposure changes and blur (no flips: laterality is part of
what makes a radiograph look right), so its features describe what an image looks like. It never sees a private
image. The checkpoint is a safetensors file with its recipe in the metadata and is named by its SHA-256 in every
report, so figures compare only between runs that used the same file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.transforms import v2

from cxr_fedsynth.common.atomic import atomic_path
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.evaluation.classifier import CompactCNN
from cxr_fedsynth.common.progress import steps
from cxr_fedsynth.common.publish.artifacts import clean_state_dict, file_sha256

RECIPE_KEY = "cxr_fedsynth.realism_encoder.recipe"


@dataclass(frozen=True)
class EncoderRecipe:
    """How the encoder is trained (stored in the checkpoint)."""

    image_size: int = 64
    width: int = 16
    projection_dim: int = 64
    steps: int = 300
    batch_size: int = 128
    temperature: float = 0.2
    lr: float = 1e-3
    seed: int = 0


class RealismEncoder(nn.Module):
    """CompactCNN features with an MLP projection head; only ``features`` is used for the figures."""

    def __init__(self, recipe: EncoderRecipe) -> None:
        super().__init__()
        backbone = CompactCNN(recipe.projection_dim, recipe.width)
        self.features = backbone.features
        self.feature_dim = backbone.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(), nn.Linear(self.feature_dim, recipe.projection_dim)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(images))


def _views(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomAffine(degrees=8, translate=(0.04, 0.04)),
            v2.ColorJitter(brightness=0.4, contrast=0.4),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.5),
        ]
    )


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2N - 1 other views of the batch."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(z1)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(logits, partners)


def train_encoder(images: np.ndarray, recipe: EncoderRecipe, *, show_progress: bool = True) -> RealismEncoder:
    """Train on uint8 public images [N, S, S] (S = the recipe's size), no labels."""
    if images.ndim != 3 or images.shape[1:] != (recipe.image_size, recipe.image_size):
        raise DataError(f"the encoder's public images must be {recipe.image_size} px (got shape {images.shape})")
    if len(images) < 2:
        raise DataError("the encoder needs at least 2 public images")
    torch.manual_seed(recipe.seed)
    encoder = RealismEncoder(recipe)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps)
    data = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    views = _views(recipe.image_size)
    gen = torch.Generator().manual_seed(recipe.seed)
    batch = min(recipe.batch_size, len(data))
    encoder.train()
    with steps(recipe.steps, "self-supervised realism encoder", enabled=show_progress) as advance:
        for _ in range(recipe.steps):
            x = data[torch.randperm(len(data), generator=gen)[:batch]]
            one, two = (torch.stack([views(img) for img in x]) * 2 - 1 for _ in range(2))
            loss = nt_xent(encoder(one), encoder(two), recipe.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            advance()
    return encoder.eval()


def save_encoder(encoder: RealismEncoder, recipe: EncoderRecipe, path: Path) -> str:
    """Write the checkpoint atomically; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(clean_state_dict(encoder), str(tmp), metadata={RECIPE_KEY: json.dumps(asdict(recipe))})
    return file_sha256(path)


def load_encoder(path: Path) -> tuple[RealismEncoder, EncoderRecipe, str]:
    """Load a checkpoint written by ``save_encoder`` (safetensors: no pickle); returns it, its recipe and SHA-256."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if RECIPE_KEY not in metadata:
        raise DataError(f"{path}: not a realism encoder (no recipe in its metadata); train one with --public")
    recipe = EncoderRecipe(**json.loads(metadata[RECIPE_KEY]))
    encoder = RealismEncoder(recipe)
    encoder.load_state_dict(load_file(str(path)))
    return encoder.eval(), recipe, file_sha256(path)


def obtain_encoder(
    path: Path,
    *,
    image_size: int,
    public_images: np.ndarray | None = None,
    recipe: EncoderRecipe | None = None,
    show_progress: bool = True,
) -> tuple[RealismEncoder, EncoderRecipe, str]:
    """The checkpoint at ``path``; when absent, trained on ``public_images`` and saved there first."""
    if not path.is_file():
        if public_images is None:
            raise DataError(f"{path}: no realism encoder there; give --public (a public set) to train one")
        recipe = recipe or EncoderRecipe(image_size=image_size)
        save_encoder(train_encoder(public_images, recipe, show_progress=show_progress), recipe, path)
    encoder, recipe, digest = load_encoder(path)
    if recipe.image_size != image_size:
        raise DataError(
            f"{path}: encoder trained at {recipe.image_size} px, the images are {image_size} px; "
            f"use an encoder of that size (another --encoder path, trained with --public)"
        )
    return encoder, recipe, digest
