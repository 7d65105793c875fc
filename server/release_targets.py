"""The server's side of the feature release: the sites' noisy tables become the class-mean targets G matches.

Everything here is post-processing of DP outputs (the summed noisy tables and the public noise level): the
targets may be shrunk by their known noise energy and the class gaps widened where the release carries enough
signal. Returns the release's summary for the model card.
"""

from __future__ import annotations

import logging

import torch

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import (
    MATCH_CONFIDENCE_Z,
    MIN_CLASS_PATIENTS,
    MIN_SIGNAL_SHARE_TO_WIDEN,
    FeatureMatcher,
)
from cxr_fedsynth.common.gan.models import Generator
from cxr_fedsynth.common.privacy.plan import PrivacyPlan

log = logging.getLogger("cxr_fedsynth.server")


def set_release_targets(
    space: FeatureMatcher,
    tables: list[torch.Tensor],
    *,
    config: ExperimentConfig,
    plan: PrivacyPlan | None,
    table_noise_std: float,
    conditions: list[str],
    generator: Generator,
) -> dict:
    """Set ``space``'s targets from the sites' released ``tables``; returns the model card's release summary.

    ``plan``: the run's plan (None when no releasing site used DP); ``table_noise_std``: the summed table's noise.
    """
    space.set_targets(torch.stack(tables).sum(dim=0), table_noise_std)
    kept = None
    if plan is not None and config.feature_shrinkage != "off":
        if config.feature_shrinkage == "generator":
            means = generator_class_means(generator, space, len(conditions), seed=config.seed * 7919 + 3)
            kept = space.shrink_towards(means, table_noise_std)[:, None]
        else:
            kept = space.shrink_feature_blocks_towards_pooled(table_noise_std)
    pixels_only = config.feature_class_gap_block == "pixels"
    signal_share = space.class_gap_signal_share(table_noise_std, pixels_only=pixels_only)
    widened = config.feature_class_gap_scale != 1.0 and signal_share >= MIN_SIGNAL_SHARE_TO_WIDEN
    factors = torch.ones(len(conditions))
    if widened:
        factors = space.scale_class_gaps(
            config.feature_class_gap_scale, pixels_only=pixels_only, cap=config.feature_class_gap_cap
        )
    patients = dict(zip(conditions, (round(float(n), 1) for n in space.patients)))
    matched = [name for name, ok in zip(conditions, space.matched_classes.tolist()) if ok]
    summary = {
        "sites": len(tables),
        "noise_multiplier": plan.release_noise_multiplier if plan is not None else None,
        "epsilon_of_release_alone": plan.release_epsilon if plan is not None else None,
        "embedding_dim": int(space.targets.shape[1]),
        "statistics": config.feature_statistics,
        "pixel_grid": config.feature_pixel_grid,
        "pixel_share": config.feature_pixel_share if config.feature_pixel_grid else None,
        "count_share": round(space.count_share, 4),
        "noisy_patients_per_class": patients,
        "matched_classes": matched,
        "shrinkage": config.feature_shrinkage if kept is not None else None,
        "class_gap_scale": config.feature_class_gap_scale,
        "class_gap_block": config.feature_class_gap_block,
        "class_gap_cap": config.feature_class_gap_cap,
        "class_gap_factors": dict(zip(conditions, (round(float(f), 3) for f in factors))),
        "class_gap_signal_share": round(signal_share, 3),
        "class_gap_widened": widened,
        "class_gap_min_signal_share": MIN_SIGNAL_SHARE_TO_WIDEN,
        "shrinkage_kept": None
        if kept is None
        else {name: [round(float(k), 3) for k in row] for name, row in zip(conditions, kept)},
    }
    log.info(
        "feature release: %d site(s); noisy patients per class %s; matching %s (classes under %.0f patients plus %.0f "
        "standard deviations of the count's noise are not matched); shrinkage %s, share of each target's deviation kept "
        "(per block) %s; class gaps (%s): %.0f%% signal, %s",
        len(tables),
        patients,
        matched,
        MIN_CLASS_PATIENTS,
        MATCH_CONFIDENCE_Z,
        config.feature_shrinkage,
        summary["shrinkage_kept"],
        config.feature_class_gap_block,
        100 * signal_share,
        f"widened (cap {config.feature_class_gap_cap}): {summary['class_gap_factors']}"
        if widened
        else f"matched as released (widened only at {MIN_SIGNAL_SHARE_TO_WIDEN:.0%} signal or more)",
    )
    return summary


def generator_class_means(
    generator: Generator, space: FeatureMatcher, num_classes: int, *, seed: int, per_class: int = 256
) -> torch.Tensor:
    """G's current mean embedding per class (no real data: a public prior for the shrinkage)."""
    device = next(generator.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    means = []
    with torch.no_grad():
        for label in range(num_classes):
            z = torch.randn(per_class, generator.arch.latent_dim, device=device, generator=gen)
            labels = torch.full((per_class,), label, dtype=torch.long, device=device)
            means.append(space.embed(generator(z, labels)).mean(dim=0))
    return torch.stack(means)
