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

from cxr_fedsynth.common.data.image_cache import SiteImages, load_site_images
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import BudgetExceededError, DataError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.discriminator_training import DPSettings, train_discriminator_round
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT, HistoryEntry, epsilon_of, make_accountant
from cxr_fedsynth.common.privacy.ledger import Budget, SiteLedger
from cxr_fedsynth.common.privacy.patient_sampler import PatientPoissonSampler
from cxr_fedsynth.common.privacy.plan import PrivacyPlan
from cxr_fedsynth.common.protocol import OK, REFUSED, Metric, SiteReply, class_images_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """A site as its round sees it: a name, its records, its ledger and its budget."""

    name: str
    records: list[ImageRecord]
    ledger_path: Path
    budget: Budget
    images: SiteImages | None = None  # decoded once and kept (simulation); None: read per message


@dataclass
class RunPrivacyState:
    """Per-run state a site carries between rounds (Flower ``context.state``): the plan and the history."""

    run_id: str = ""
    noise_multiplier: float = 0.0
    sample_rate: float = 0.0
    history: tuple[HistoryEntry, ...] = ()


def read_site_images(config: ExperimentConfig, name: str, records: list[ImageRecord]) -> SiteImages:
    """Decode a site's images (through the preprocessing cache); DataError when none can be read."""
    data = load_site_images(
        records,
        image_size=config.image_size,
        cache_dir=config.path_or_none(config.cache_dir),
        allow_non_chest=config.allow_non_chest,
        show_progress=False,
    )
    if not data.records:
        raise DataError(f"site {name}: none of its {len(records)} images could be read; run cxr-client check")
    return data


def load_site_data(config: ExperimentConfig, site: Site) -> SiteImages:
    """The site's decoded images: those it already holds, else read now."""
    return site.images if site.images is not None else read_site_images(config, site.name, site.records)


def plan_once(plan: PrivacyPlan, state: RunPrivacyState, run_id: str, num_patients: int) -> RunPrivacyState:
    """The site's DP-SGD noise for the whole run (composed with the run's release), planned at its first message."""
    if state.run_id == run_id:
        return state
    dp_sgd = plan.dp_sgd(num_patients)
    return RunPrivacyState(run_id=run_id, noise_multiplier=dp_sgd.noise_multiplier, sample_rate=dp_sgd.sample_rate)


def run_site_round(
    config: ExperimentConfig,
    site: Site,
    *,
    global_weights: dict[str, dict[str, torch.Tensor]],
    run_id: str,
    round_number: int,
    state: RunPrivacyState,
    plan: PrivacyPlan | None,
) -> tuple[SiteReply, RunPrivacyState]:
    """Train D for ``local-steps`` on the site's data; refuse (training nothing) when over budget.

    ``plan`` is the run's privacy plan (``ExperimentConfig.privacy_plan``; None without DP).
    """
    data = load_site_data(config, site)
    patients = len(set(data.patient_ids))
    if plan is not None:
        state = plan_once(plan, state, run_id, patients)
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
            return SiteReply(site.name, REFUSED, reason, {Metric.EPSILON_TOTAL: spent}), state

    device = pick_device(config.device)
    arch = config.architecture(len(config.condition_set()))
    generator, discriminator = build_models(arch, seed=config.seed)
    generator.load_state_dict(global_weights["generator"])
    discriminator.load_state_dict(global_weights["discriminator"])
    generator.to(device).eval()
    discriminator.to(device)

    entropy = secrets.randbits(62)  # DP sampling and noise must not be predictable from public config
    sample_rate = state.sample_rate if plan is not None else min(1.0, config.batch_size / patients)
    sampler = PatientPoissonSampler(data.patient_ids, sample_rate=sample_rate, rng=np.random.default_rng(entropy))
    accountant = make_accountant(state.history) if plan is not None else None
    dp = DPSettings(state.noise_multiplier, config.max_grad_norm, state.sample_rate) if plan is not None else None
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
        Metric.NUM_EXAMPLES: float(patients),
        Metric.NUM_IMAGES: float(len(data.records)),
        Metric.D_LOSS: result.d_loss,
        Metric.REAL_SCORE: result.real_score,
        Metric.FAKE_SCORE: result.fake_score,
        Metric.AUX_ACCURACY: result.aux_accuracy,
        Metric.LOCAL_STEPS: float(result.steps),
    }
    for index, count in enumerate(np.bincount(data.conditions, minlength=arch.num_classes).tolist()):
        metrics[class_images_key(index)] = float(count)
    if plan is not None and accountant is not None:
        history = tuple((float(n), float(q), int(s)) for n, q, s in accountant.history)
        state = RunPrivacyState(state.run_id, state.noise_multiplier, state.sample_rate, history)
        metrics.update(
            {
                Metric.EPSILON: epsilon_of(history, delta=plan.delta),
                Metric.EPSILON_TOTAL: SiteLedger(site.ledger_path, site.budget).spent(),
                Metric.DELTA: plan.delta,
                Metric.NOISE_MULTIPLIER: state.noise_multiplier,
                Metric.SAMPLE_RATE: state.sample_rate,
            }
        )
    else:
        metrics[Metric.EPSILON] = float("inf")
    weights = {k: v.detach().cpu() for k, v in trained.state_dict().items()}
    reason = (
        f"trained {result.steps} steps ({ACCOUNTANT} accountant)"
        if plan is not None
        else "trained without DP (NOT PRIVATE)"
    )
    return SiteReply(site.name, OK, reason, metrics, discriminator=weights), state
