"""Public-only super-resolution: G draws at ``image-size``, this network publishes its images 2 or 4 times larger.

The network is trained on public X-rays alone (each image against its own area-downsampled copy: L1 plus a
small patch critic's hinge loss, so it adds detail rather than blur), and it only ever sees G's outputs
afterwards: it costs no privacy (post-processing of a DP generator). Its output is bicubic upsampling plus a
learned residual (ESPCN-style sub-pixel convolution), so an untrained network is plain bicubic upsampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.progress import steps as progress_steps

#: Super-resolution factors a run can publish with (1: G's own resolution, no network).
FACTORS = (1, 2, 4)


@dataclass(frozen=True)
class SuperResolutionSpec:
    """The network's shape and how it is trained (stored in the published weights' metadata and the card)."""

    factor: int
    width: int = 32
    depth: int = 4
    steps: int = 800
    batch_size: int = 32
    lr: float = 1e-3
    adversarial_weight: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factor not in FACTORS[1:]:
            raise ConfigError(f"super-resolution factor must be one of {FACTORS[1:]} (got {self.factor})")

    def to_dict(self) -> dict:
        return asdict(self)


class SuperResolution(nn.Module):
    """Images in [-1, 1] of size S -> size ``factor`` x S: bicubic upsampling plus a learned residual."""

    def __init__(self, spec: SuperResolutionSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = [nn.Conv2d(1, spec.width, 3, padding=1), nn.ReLU()]
        for _ in range(spec.depth):
            layers += [nn.Conv2d(spec.width, spec.width, 3, padding=1), nn.ReLU()]
        last = nn.Conv2d(spec.width, spec.factor**2, 3, padding=1)
        nn.init.zeros_(last.weight)  # starts as plain bicubic upsampling
        nn.init.zeros_(last.bias)
        self.residual = nn.Sequential(*layers, last, nn.PixelShuffle(spec.factor))

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        smooth = F.interpolate(low, scale_factor=self.spec.factor, mode="bicubic", align_corners=False)
        return (smooth + self.residual(low)).clamp(-1, 1)


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downsampling by ``factor``: what the network learns to undo."""
    return F.interpolate(images, scale_factor=1 / factor, mode="area")


def _patch_critic() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 1, 3, 1, 1),
    )


def train_super_resolution(
    public: torch.Tensor, spec: SuperResolutionSpec, *, show_progress: bool = True
) -> SuperResolution:
    """Train on public images in [-1, 1] at the published size, [N, 1, H, W], on their device; returns the network
    in eval mode."""
    if public.ndim != 4 or public.shape[1] != 1 or public.shape[-1] % spec.factor:
        raise ConfigError(
            f"super-resolution trains on grey images [N, 1, H, W] whose size divides by {spec.factor} (got {tuple(public.shape)})"
        )
    device = public.device
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation; the global RNG is left untouched
        torch.manual_seed(spec.seed)
        network, critic = SuperResolution(spec), _patch_critic()
    network, critic = network.to(device), critic.to(device)
    opt_network = torch.optim.Adam(network.parameters(), spec.lr)
    opt_critic = torch.optim.Adam(critic.parameters(), 2e-4, betas=(0.5, 0.999))
    with progress_steps(spec.steps, "public super-resolution", enabled=show_progress) as advance:
        for _ in range(spec.steps):
            high = public[torch.randint(len(public), (spec.batch_size,), device=device, generator=gen)]
            restored = network(downsample(high, spec.factor))
            critic_loss = F.relu(1 - critic(high)).mean() + F.relu(1 + critic(restored.detach())).mean()
            opt_critic.zero_grad()
            critic_loss.backward()
            opt_critic.step()
            loss = F.l1_loss(restored, high) - spec.adversarial_weight * critic(restored).mean()
            opt_network.zero_grad()
            loss.backward()
            opt_network.step()
            advance()
    return network.eval()
