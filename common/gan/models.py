"""Class-conditional generator and dual-task discriminator (DCGAN style) for 32 to 256 px.

The discriminator judges real/fake with projection conditioning (Miyato & Koyama 2018) *and* predicts the
class with an auxiliary head (ACGAN). It is Opacus-compatible: GroupNorm instead of BatchNorm, no spectral
norm, and global average pooling instead of a large flatten-to-linear layer, so per-sample gradients stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cxr_fedsynth.common.data.preprocess import check_image_size

#: D's real/fake score from its last 4 x 4 features: "pooled" (their spatial mean: cheap, blind to layout) or
#: "spatial" (a linear map of all 16 positions: sees where things are, 16x the adversarial head's parameters).
D_HEADS = ("pooled", "spatial")
#: G's upsampling: "transpose" (4 x 4 stride-2 transposed convolutions) or "nearest" (nearest-neighbour
#: upsampling then a 3 x 3 convolution, which avoids the transposed convolution's checkerboard artefacts).
G_UPSAMPLING = ("transpose", "nearest")


@dataclass(frozen=True)
class GanArchitecture:
    """Everything needed to rebuild G and D (stored in checkpoints and model cards)."""

    image_size: int = 64
    num_classes: int = 4
    latent_dim: int = 64
    g_width: int = 32
    d_width: int = 16
    d_head: str = "pooled"  # one of D_HEADS
    g_upsample: str = "transpose"  # one of G_UPSAMPLING

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        if self.d_head not in D_HEADS or self.g_upsample not in G_UPSAMPLING:
            raise ValueError(
                f"d_head must be one of {D_HEADS} and g_upsample one of {G_UPSAMPLING} (got {self.d_head!r}, {self.g_upsample!r})"
            )

    @property
    def num_blocks(self) -> int:
        """Up/down-sampling stages between 4x4 and the image size."""
        return int(math.log2(self.image_size)) - 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


def _upsample(arch: GanArchitecture, c_in: int, c_out: int, *, bias: bool) -> list[nn.Module]:
    if arch.g_upsample == "nearest":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)]


class Generator(nn.Module):
    """z ~ N(0, I) and a class label -> a [-1, 1] grayscale image of ``image_size`` px."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        widths = [arch.g_width * min(2 ** (arch.num_blocks - 1 - i), 8) for i in range(arch.num_blocks)]
        self.label_embedding = nn.Embedding(arch.num_classes, arch.latent_dim)
        self.project = nn.Linear(2 * arch.latent_dim, widths[0] * 16)
        blocks: list[nn.Module] = [nn.GroupNorm(_groups(widths[0]), widths[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths, widths[1:]):
            blocks += [
                *_upsample(arch, c_in, c_out, bias=False),
                nn.GroupNorm(_groups(c_out), c_out),
                nn.ReLU(inplace=True),
            ]
        blocks += [*_upsample(arch, widths[-1], 1, bias=True), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        self._first_width = widths[0]

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # z: [B, latent], labels: [B] -> h: [B, C0, 4, 4] -> image: [B, 1, S, S]
        h = torch.cat([z, self.label_embedding(labels)], dim=1)
        h = self.project(h).view(-1, self._first_width, 4, 4)
        return self.body(h)


class Discriminator(nn.Module):
    """(image, label) -> (real/fake score [B], class logits [B, K])."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        widths = [arch.d_width * min(2**i, 8) for i in range(arch.num_blocks)]
        layers: list[nn.Module] = [nn.Conv2d(1, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.GroupNorm(_groups(c_out), c_out),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers)  # [B, C, 4, 4] for every image size
        self.adversarial = nn.Linear(widths[-1] * (16 if arch.d_head == "spatial" else 1), 1)
        self.projection = nn.Embedding(arch.num_classes, widths[-1])
        self.classifier = nn.Linear(widths[-1], arch.num_classes)
        nn.init.normal_(self.projection.weight, 0.0, 0.02)  # the default N(0, 1) dwarfs the unconditional score

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # images: [B, 1, S, S] -> features [B, C, 4, 4] -> pooled h: [B, C]
        size = self.arch.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"the discriminator scores {size} x {size} px images (got {tuple(images.shape[-2:])})")
        features = self.features(images)
        h = features.mean(dim=(2, 3))
        # projection conditioning: score = w.h + <embed(y), h> (w.flatten(features) with the spatial head)
        projected = self.projection(labels.unsqueeze(1)).squeeze(1)  # [B, 1] input: every Opacus mode accepts it
        unconditional = self.adversarial(features.flatten(1) if self.arch.d_head == "spatial" else h)
        score = unconditional.squeeze(1) + (projected * h).sum(dim=1)
        return score, self.classifier(h)


def build_models(arch: GanArchitecture, *, seed: int) -> tuple[Generator, Discriminator]:
    """Freshly initialised G and D (DCGAN init: N(0, 0.02) conv weights), reproducible from ``seed``.

    The global torch RNG is left untouched, so DP noise drawn later never depends on this public seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator, discriminator = Generator(arch), Discriminator(arch)
        for module in list(generator.modules()) + list(discriminator.modules()):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
    return generator, discriminator
