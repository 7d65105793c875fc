"""What the server keeps of each site, and the federated average of the sites' discriminators."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SiteStats:
    """What the server knows of a site: aggregate counts and its latest privacy figures."""

    name: str
    patients: int = 0
    images: int = 0
    rounds: int = 0
    steps: int = 0
    epsilon: float = 0.0
    delta: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    class_images: dict[str, int] = field(default_factory=dict)
    refused: int = 0


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """FedAvg of state dicts (weights need not sum to one)."""
    total = float(sum(weights))
    return {k: sum(w / total * s[k].float() for s, w in zip(states, weights)).to(states[0][k].dtype) for k in states[0]}
