"""A site's one-off DP feature release: noisy per-class sums of its patients' embeddings (``common.gan.feature_matching``).

What leaves: one [classes x (dim + 1)] table with Gaussian noise of std ``PrivacyPlan.release_noise_multiplier`` per entry
(sensitivity 1 per patient), and aggregate metrics. The release is reserved in the site's ledger before anything is
computed from the images, composed with the run's DP-SGD rounds, and refused when the run already released or when it
would exceed the budget.
"""

from __future__ import annotations

import logging
import secrets

import torch

from cxr_fedsynth.client.site_round import RunPrivacyState, Site, load_site_data, plan_once
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import BudgetExceededError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import (
    FEATURE_RELEASE,
    FeatureMatcher,
    add_release_noise,
    embed_in_batches,
    patient_class_sums,
)
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.accounting import epsilon_of
from cxr_fedsynth.common.privacy.ledger import SiteLedger
from cxr_fedsynth.common.privacy.plan import PrivacyPlan
from cxr_fedsynth.common.protocol import OK, REFUSED, Metric, SiteReply

log = logging.getLogger(__name__)


def _refusal(site: Site, reason: str, ledger: SiteLedger, state: RunPrivacyState) -> tuple[SiteReply, RunPrivacyState]:
    return SiteReply(site.name, REFUSED, reason, {Metric.EPSILON_TOTAL: ledger.spent()}), state


def feature_space(config: ExperimentConfig, weights: dict[str, torch.Tensor]) -> FeatureMatcher:
    """The server's feature space (D's features and the run's embedding spec) rebuilt from its weights."""
    _, discriminator = build_models(config.architecture(len(config.condition_set())), seed=config.seed)
    space = FeatureMatcher(discriminator.features, discriminator.arch.num_classes, config.embedding_spec)
    space.load_state_dict(weights)
    return space


def run_feature_release(
    config: ExperimentConfig,
    site: Site,
    *,
    space_weights: dict[str, torch.Tensor],
    run_id: str,
    state: RunPrivacyState,
    plan: PrivacyPlan | None,
) -> tuple[SiteReply, RunPrivacyState]:
    """Embed the site's images in the server's feature space and release the class sums once, noised under DP.

    ``plan`` is the run's privacy plan (None without DP); a plan without a release is refused.
    """
    if not config.matches_features or (plan is not None and not plan.releases_features):
        reason = "feature matching is off in this run's config (feature-matching-weight 0 or no public-data): no release planned"
        return SiteReply(
            site.name, REFUSED, reason
        ), state  # the run's plan has no release in it: answering would overspend
    data = load_site_data(config, site)
    patients = len(set(data.patient_ids))
    if plan is not None:
        noise = plan.release_noise_multiplier
        state = plan_once(plan, state, run_id, patients)
        ledger = SiteLedger(site.ledger_path, site.budget)
        if ledger.released(run_id, FEATURE_RELEASE):
            return _refusal(
                site, f"run {run_id} already received this site's feature release (one per run)", ledger, state
            )
        try:
            ledger.reserve(
                run_id=run_id,
                round_number=0,
                noise_multiplier=noise,
                sample_rate=1.0,
                steps=1,
                mechanism=FEATURE_RELEASE,
            )
        except BudgetExceededError as exc:
            log.warning("%s: %s", site.name, exc)
            reason = f"privacy budget: the feature release would exceed epsilon {site.budget.epsilon}"
            return _refusal(site, reason, ledger, state)
        state = RunPrivacyState(
            state.run_id, state.noise_multiplier, state.sample_rate, (*state.history, *plan.release_history)
        )

    device = pick_device(config.device)
    space = feature_space(config, space_weights).to(device)
    embeddings = embed_in_batches(space.embed, to_model_range(data.images), device=device)
    sums = patient_class_sums(
        embeddings,
        torch.from_numpy(data.conditions),
        data.patient_ids,
        len(space.patients),
        count_share=space.count_share,
    )
    metrics = {Metric.NUM_EXAMPLES: float(patients), Metric.NUM_IMAGES: float(len(data.records))}
    if plan is not None:
        sums = add_release_noise(sums, noise, seed=secrets.randbits(62))
        epsilon = epsilon_of(state.history, delta=plan.delta)
        metrics.update({Metric.EPSILON: epsilon, Metric.EPSILON_TOTAL: ledger.spent(), Metric.NOISE_MULTIPLIER: noise})
        reason = f"released class feature sums (Gaussian, noise {noise:.3f}, sensitivity 1 per patient)"
    else:
        metrics[Metric.EPSILON] = float("inf")
        reason = "released class feature sums without noise (NOT PRIVATE)"
    return SiteReply(site.name, OK, reason, metrics, feature_sums=sums), state
