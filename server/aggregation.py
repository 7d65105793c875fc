"""What the server keeps of each site, and the federated average of the sites' discriminators."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from cxr_fedsynth.common.protocol import Metric, SiteReply


@dataclass
class SiteStats:
    """What the server knows of a site: only what its replies carry (DP outputs and its public settings)."""

    name: str
    rounds: int = 0
    steps: int = 0
    epsilon: float = 0.0  # the run's epsilon as the site approved it (an upper bound on what it spent)
    delta: float | None = None
    dp: bool = True
    privacy_unit: str = "patient"
    data_kind: str = ""
    refused: int = 0

    @classmethod
    def from_checkpoint(cls, values: dict) -> SiteStats:
        """Stats saved in a checkpoint (keys of older checkpoints that sites no longer send are dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def absorb(self, reply: SiteReply) -> None:
        """Take a successful reply's public settings and DP-covered figures."""
        self.epsilon = reply.metrics.get(Metric.EPSILON, self.epsilon)
        self.delta = reply.metrics.get(Metric.DELTA, self.delta)
        self.dp, self.privacy_unit, self.data_kind = reply.dp, reply.privacy_unit, reply.data_kind


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """FedAvg of state dicts (weights need not sum to one)."""
    total = float(sum(weights))
    return {k: sum(w / total * s[k].float() for s, w in zip(states, weights)).to(states[0][k].dtype) for k in states[0]}
