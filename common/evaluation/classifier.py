"""A compact CNN classifier, trained plainly or with DP-SGD (Opacus), used to judge synthetic data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cxr_fedsynth.common.data.preprocess import to_model_range

MIN_JUDGE_BLOCKS = 4


def judge_blocks(image_size: int) -> int:
    """Conv blocks of a judging classifier for ``image_size`` px: 4 up to 127 px, then one more per doubling (5 at
    128 px, 6 at 256 px), so its last feature map, and the share of the chest each cell sees, stays the same."""
    return max(MIN_JUDGE_BLOCKS, image_size.bit_length() - 3)


class CompactCNN(nn.Module):
    """``blocks`` conv blocks (GroupNorm, so Opacus can train it), global average pooling, a linear head."""

    def __init__(self, num_classes: int, width: int = 16, blocks: int = MIN_JUDGE_BLOCKS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for i in range(blocks):
            out = width * 2 ** min(i, MIN_JUDGE_BLOCKS - 1)  # blocks past the fourth keep its width
            layers += [
                nn.Conv2d(channels, out, 3, padding=1),
                nn.GroupNorm(min(8, out), out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)
        self.feature_dim = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@dataclass(frozen=True)
class TrainSettings:
    """How a judging classifier is trained."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 16
    seed: int = 0


def _loader(images: np.ndarray, labels: np.ndarray, batch: int, seed: int) -> DataLoader:
    dataset = TensorDataset(to_model_range(images), torch.from_numpy(labels.astype(np.int64)))
    return DataLoader(dataset, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random shifts: cheap regularisation for small training sets."""
    shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
    return torch.roll(images, shifts=shift, dims=(2, 3))


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, settings: TrainSettings) -> CompactCNN:
    """Plain training with Adam and cross-entropy; the depth follows the image size (``judge_blocks``)."""
    torch.manual_seed(settings.seed)
    model = CompactCNN(num_classes, settings.width, judge_blocks(images.shape[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        for x, y in _loader(images, labels, settings.batch_size, settings.seed):
            loss = nn.functional.cross_entropy(model(_augment(x, gen)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def train_dp_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    settings: TrainSettings,
    *,
    epsilon: float,
    delta: float,
    max_grad_norm: float = 1.0,
    start_from: CompactCNN | None = None,
) -> tuple[CompactCNN, float]:
    """The honest baseline: the same classifier trained on the real images with DP-SGD at ``epsilon``.

    Image-level DP (Opacus' Poisson sampler over images): a weaker unit than the generator's patient-level
    guarantee, so this baseline is, if anything, favoured. ``start_from``: fine-tune a copy of this model (e.g.
    one trained on public images) instead of a fresh one. Returns the model and the epsilon spent.
    """
    torch.manual_seed(settings.seed)
    model = CompactCNN(num_classes, settings.width, judge_blocks(images.shape[-1]))
    if start_from is not None:
        model.load_state_dict(start_from.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=optimizer,
            data_loader=_loader(images, labels, settings.batch_size, settings.seed),
            target_epsilon=epsilon,
            target_delta=delta,
            epochs=settings.epochs,
            max_grad_norm=max_grad_norm,
        )
        model.train()
        for _ in range(settings.epochs):
            for x, y in loader:
                if len(x) == 0:
                    continue
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    spent = float(engine.get_epsilon(delta))
    plain = model._module if hasattr(model, "_module") else model
    return plain.eval(), spent


def predict_proba(model: CompactCNN, images: np.ndarray, *, batch: int = 512) -> np.ndarray:
    """Class probabilities [N, K]."""
    x = to_model_range(images)
    with torch.no_grad():
        return torch.cat([torch.softmax(model(x[i : i + batch]), 1) for i in range(0, len(x), batch)]).numpy()


def embed(model: nn.Module, images: np.ndarray, *, batch: int = 512) -> np.ndarray:
    """Frozen ``model.features`` [N, D] of uint8 images (the space fidelity and realism metrics are computed in)."""
    x = to_model_range(images)
    with torch.no_grad():
        return torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()
