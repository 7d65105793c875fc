"""A site's one-off DP feature release: noisy per-class sums of its patients' embeddings (``common.gan.feature_matching``).

What leaves: one [classes x (dim + 1)] table with Gaussian noise of std ``release_noise_multiplier`` per entry
(sensitivity 1 per patient), and aggregate metrics. The release is reserved in the site's ledger before anything is
computed from the images, composed with the run's DP-SGD rounds, and refused when the run already released or when it
would exceed the budget.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import torch

from cxr_fedsynth.client.site_round import RunPrivacyState, Site, load_site_data, plan
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import BudgetExceededError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import FEATURE_RELEASE, FeatureMatcher, add_release_noise, embed_in_batches, patient_class_sums
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.privacy.accounting import epsilon_of
from cxr_fedsynth.common.privacy.ledger import SiteLedger

log = logging.getLogger(__name__)


@dataclass
class ReleaseReply:
    """What the site sends back: the noisy table (None when refused) and aggregate metrics."""

    status: str  # "ok" or "refused"
    reason: str
    sums: torch.Tensor | None
    metrics: dict[str, float]
    state: RunPrivacyState


def _refusal(reason: str, ledger: SiteLedger, state: RunPrivacyState) -> ReleaseReply:
    return ReleaseReply("refused", reason, None, {"epsilon-total": ledger.spent()}, state)


def feature_space(config: ExperimentConfig, weights: dict[str, torch.Tensor]) -> FeatureMatcher:
    """The server's feature space (D's features and the run's embedding spec) rebuilt from its weights."""
    _, discriminator = build_models(config.architecture(len(config.condition_set())), seed=config.seed)
    space = FeatureMatcher(discriminator.features, discriminator.arch.num_classes, config.embedding_spec)
    space.load_state_dict(weights)
    return space


def run_feature_release(
    config: ExperimentConfig, site: Site, *, space_weights: dict[str, torch.Tensor], run_id: str, state: RunPrivacyState
) -> ReleaseReply:
    """Embed the site's images in the server's feature space and release the class sums once, noised under DP."""
    if not config.matches_features:  # the run's plan has no release in it: answering would overspend
        reason = "feature matching is off in this run's config (feature-matching-weight 0 or no public-data): no release planned"
        return ReleaseReply("refused", reason, None, {}, state)
    data = load_site_data(config, site)
    patients = len(set(data.patient_ids))
    noise = config.release_noise_multiplier
    if config.dp:
        state = plan(config, state, run_id, patients)
        ledger = SiteLedger(site.ledger_path, site.budget)
        if ledger.released(run_id, FEATURE_RELEASE):
            return _refusal(f"run {run_id} already received this site's feature release (one per run)", ledger, state)
        try:
            ledger.reserve(run_id=run_id, round_number=0, noise_multiplier=noise, sample_rate=1.0, steps=1, mechanism=FEATURE_RELEASE)
        except BudgetExceededError as exc:
            log.warning("%s: %s", site.name, exc)
            return _refusal(f"privacy budget: the feature release would exceed epsilon {site.budget.epsilon}", ledger, state)
        state = RunPrivacyState(state.run_id, state.noise_multiplier, state.sample_rate, (*state.history, (noise, 1.0, 1)))

    device = pick_device(config.device)
    space = feature_space(config, space_weights).to(device)
    embeddings = embed_in_batches(space.embed, to_model_range(data.images), device=device)
    sums = patient_class_sums(embeddings, torch.from_numpy(data.conditions), data.patient_ids, len(space.patients), count_share=space.count_share)
    metrics = {"num-examples": float(patients), "num-images": float(len(data.records))}
    if config.dp:
        sums = add_release_noise(sums, noise, seed=secrets.randbits(62))
        epsilon = epsilon_of(state.history, delta=config.target_delta)
        metrics.update({"epsilon": epsilon, "epsilon-total": ledger.spent(), "noise-multiplier": noise})
        reason = f"released class feature sums (Gaussian, noise {noise:.3f}, sensitivity 1 per patient)"
    else:
        metrics["epsilon"] = float("inf")
        reason = "released class feature sums without noise (NOT PRIVATE)"
    return ReleaseReply("ok", reason, sums, metrics, state)
