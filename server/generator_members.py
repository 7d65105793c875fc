"""More generators from the same DP outputs at no privacy cost: members trained after the last round.

A run's own generator follows one trajectory through the rounds; a classifier trained on samples of several
generators sees more varied images (docs/results.md). With ``generator-members`` K > 1 the
server trains K - 1 more generators once the rounds are over. Each starts from the run's round-0 weights (the
public pretraining, or the seeded initialisation without one) and takes as many G steps as the run's own G took,
with its own seed, against the final aggregated discriminator and the release's class targets. Only DP outputs are
read, so the members are post-processing and the run's epsilon holds for all of them.
"""

from __future__ import annotations

import logging

import torch

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import FeatureMatcher
from cxr_fedsynth.common.gan.generator_training import GeneratorTrainer
from cxr_fedsynth.common.gan.models import Discriminator, Generator, build_models
from cxr_fedsynth.server.checkpoint import Checkpoint, module_state

log = logging.getLogger("cxr_fedsynth.server")
#: Spacing of the members' training seeds (member k trains from seed base ``seed + k * MEMBER_SEED_STRIDE``).
MEMBER_SEED_STRIDE = 7919


def member_trainer(config: ExperimentConfig, start: Checkpoint | None, *, device: torch.device) -> GeneratorTrainer:
    """A fresh G trainer at the run's round-0 weights: ``start`` (the stored public pretraining) or the seeded init."""
    generator, _ = build_models(config.architecture(len(config.condition_set())), seed=config.seed)
    trainer = GeneratorTrainer(generator.to(device), config.generator_settings())
    if start is not None:
        generator.load_state_dict(module_state(start.tensors, "generator"))
        trainer.ema.load_state_dict(module_state(start.tensors, "ema"))
        trainer.updates = int(start.progress.get("g_updates", 0))
    return trainer


def train_members(
    config: ExperimentConfig,
    start: Checkpoint | None,
    discriminator: Discriminator,
    matcher: FeatureMatcher | None,
    *,
    rounds: int,
    device: torch.device,
) -> tuple[Generator, ...]:
    """``generator-members - 1`` generators, each trained ``rounds`` x ``g-steps`` steps against the final D."""
    members = []
    for k in range(1, config.generator_members):
        trainer = member_trainer(config, start, device=device)
        base = config.seed + k * MEMBER_SEED_STRIDE
        for round_number in range(1, rounds + 1):
            trainer.train_against(discriminator, seed=base * 100_003 + round_number, matcher=matcher)
        members.append(trainer.published().eval())
        log.info(
            "generator member %d of %d: %d G steps against the final discriminator",
            k + 1,
            config.generator_members,
            rounds * config.g_steps,
        )
    return tuple(members)
