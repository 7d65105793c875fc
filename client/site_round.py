"""One federated round at a site: budget check, DP discriminator update, and what may leave the site.

What leaves: D's weights after DP-SGD (clipped, noised) and aggregate metrics (losses, epsilon, patient and
per-class image counts). Never images, file names, per-sample values or un-noised gradients.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.gan.discriminator_training import DPSettings, train_discriminator_round
from cxr_fedsynth.common.errors import BudgetExceededError, DataError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.data.image_cache import SiteImages, load_site_images
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.patient_sampler import PatientPoissonSampler
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT, HistoryEntry, epsilon_of, make_accountant, plan_noise_multiplier
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.privacy.ledger import Budget, SiteLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """A site as its round sees it: a name, its records, its ledger and its budget."""

    name: str
    records: list[ImageRecord]
    ledger_path: Path
    budget: Budget


@dataclass
class RunPrivacyState:
    """Per-run state a site carries between rounds (Flower ``context.state``): the plan and the history."""

    run_id: str = ""
    noise_multiplier: float = 0.0
    sample_rate: float = 0.0
    history: tuple[HistoryEntry, ...] = ()


@dataclass
class SiteReply:
    """What the site sends back for one round."""

    status: str  # "ok" or "refused"
    reason: str
    discriminator: dict[str, torch.Tensor] | None
    metrics: dict[str, float]
    state: RunPrivacyState


def load_site_data(config: ExperimentConfig, site: Site) -> SiteImages:
    """The site's images (cached, preprocessed); DataError when none can be read."""
    data = load_site_images(
        site.records,
        image_size=config.image_size,
        cache_dir=config.path_or_none(config.cache_dir),
        allow_non_chest=config.allow_non_chest,
        show_progress=False,
    )
    if not data.records:
        raise DataError(f"site {site.name}: none of its {len(site.records)} images could be read; run cxr-client check")
    return data


def plan(config: ExperimentConfig, state: RunPrivacyState, run_id: str, num_patients: int) -> RunPrivacyState:
    """The DP-SGD noise for the whole planned run (composed with its other releases), once per run."""
    if state.run_id == run_id:
        return state
    sample_rate = min(1.0, config.batch_size / num_patients)
    noise = plan_noise_multiplier(
        target_epsilon=config.run_epsilon,
        delta=config.target_delta,
        sample_rate=sample_rate,
        steps=config.total_local_steps,
        prior=config.other_releases,
    )
    return RunPrivacyState(run_id=run_id, noise_multiplier=noise, sample_rate=sample_rate)


def run_site_round(
    config: ExperimentConfig,
    site: Site,
    *,
    global_weights: dict[str, dict[str, torch.Tensor]],
    run_id: str,
    round_number: int,
    state: RunPrivacyState,
) -> SiteReply:
    """Train D for ``local-steps`` on the site's data; refuse (training nothing) when over budget."""
    data = load_site_data(config, site)
    patients = len(set(data.patient_ids))
    if config.dp:
        state = plan(config, state, run_id, patients)
        ledger = SiteLedger(site.ledger_path, site.budget)
        try:
            ledger.reserve(
                run_id=run_id,
                round_number=round_number,
                noise_multiplier=state.noise_multiplier,
                sample_rate=state.sample_rate,
                steps=config.local_steps,
            )
        except BudgetExceededError as exc:
            log.warning("%s: %s", site.name, exc)
            spent = ledger.spent()
            reason = f"privacy budget: this round would exceed epsilon {site.budget.epsilon} (spent {spent:.3f})"
            return SiteReply("refused", reason, None, {"epsilon-total": spent}, state)

    device = pick_device(config.device)
    arch = config.architecture(len(config.condition_set()))
    generator, discriminator = build_models(arch, seed=config.seed)
    generator.load_state_dict(global_weights["generator"])
    discriminator.load_state_dict(global_weights["discriminator"])
    generator.to(device).eval()
    discriminator.to(device)

    entropy = secrets.randbits(62)  # DP sampling and noise must not be predictable from public config
    sample_rate = state.sample_rate if config.dp else min(1.0, config.batch_size / patients)
    sampler = PatientPoissonSampler(data.patient_ids, sample_rate=sample_rate, rng=np.random.default_rng(entropy))
    accountant = make_accountant(state.history) if config.dp else None
    dp = DPSettings(state.noise_multiplier, config.max_grad_norm, state.sample_rate) if config.dp else None
    trained, result = train_discriminator_round(
        discriminator,
        generator,
        to_model_range(data.images).to(device),
        torch.from_numpy(data.conditions).to(device),
        sampler,
        config.discriminator_settings(),
        dp=dp,
        accountant=accountant,
        seed=entropy,
    )
    metrics = {
        "num-examples": float(patients),
        "num-images": float(len(data.records)),
        "d-loss": result.d_loss,
        "real-score": result.real_score,
        "fake-score": result.fake_score,
        "aux-accuracy": result.aux_accuracy,
        "local-steps": float(result.steps),
    }
    for index, count in enumerate(np.bincount(data.conditions, minlength=arch.num_classes).tolist()):
        metrics[f"class-{index}-images"] = float(count)
    if config.dp and accountant is not None:
        history = tuple((float(n), float(q), int(s)) for n, q, s in accountant.history)
        state = RunPrivacyState(state.run_id, state.noise_multiplier, state.sample_rate, history)
        metrics.update(
            {
                "epsilon": epsilon_of(history, delta=config.target_delta),
                "epsilon-total": SiteLedger(site.ledger_path, site.budget).spent(),
                "delta": config.target_delta,
                "noise-multiplier": state.noise_multiplier,
                "sample-rate": state.sample_rate,
            }
        )
    else:
        metrics["epsilon"] = float("inf")
    weights = {k: v.detach().cpu() for k, v in trained.state_dict().items()}
    return SiteReply("ok", f"trained {result.steps} steps ({ACCOUNTANT} accountant)" if config.dp else "trained without DP (NOT PRIVATE)", weights, metrics, state)
