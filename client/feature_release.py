"""A site's one-off DP feature release: noisy per-class sums of its patients' embeddings (``common.gan.feature_matching``).

What leaves: one [classes x (dim + 1)] table with Gaussian noise of std ``PrivacyPlan.release_noise_multiplier``
per entry (sensitivity 1 per patient) and public constants. The release must be allowed by the site's policy; it
is reserved in the site's ledger before anything is computed from the images (at most once per run, checked under
the ledger's lock) and composed with the run's count and DP-SGD rounds.
"""

from __future__ import annotations

import logging

import torch

from cxr_fedsynth.client.site_round import (
    RunPrivacyState,
    Site,
    check_finite,
    check_request,
    load_site_data,
    plan_once,
)
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import BudgetExceededError, PolicyRefusal
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import (
    FeatureMatcher,
    add_release_noise,
    embed_in_batches,
    patient_class_sums,
)
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.plan import PrivacyPlan
from cxr_fedsynth.common.privacy.site_policy import FEATURE_RELEASE
from cxr_fedsynth.common.protocol import OK, Metric, SiteReply

log = logging.getLogger(__name__)


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

    ``plan`` is the run's privacy plan under the site's policy (None only for a no-DP baseline site).
    """
    try:
        check_request(config, site.policy, FEATURE_RELEASE)
        if not config.matches_features or (plan is not None and not plan.releases_features):
            raise PolicyRefusal("this run's plan holds no feature release (feature matching off or no public data)")
        check_finite({"feature space": space_weights}, "the server's weights")
        data = load_site_data(config, site)
        if plan is not None:
            state = plan_once(plan, state, run_id, site, len(set(data.patient_ids)))
            site.ledger().reserve(
                run_id=run_id,
                round_number=0,
                noise_multiplier=plan.release_noise_multiplier,
                sample_rate=1.0,
                steps=1,
                mechanism=FEATURE_RELEASE,
                once_per_run=True,
            )
            state = RunPrivacyState(
                state.run_id, state.noise_multiplier, state.sample_rate, (*state.history, *plan.release_history)
            )
    except (PolicyRefusal, BudgetExceededError) as exc:
        return site.refusal(exc), state

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
    if plan is None:
        reason = "released class feature sums without noise (NOT PRIVATE)"
        return site.reply(OK, reason, {Metric.EPSILON: float("inf")}, feature_sums=sums), state
    sums = add_release_noise(sums, plan.release_noise_multiplier)  # CSPRNG noise
    reason = (
        f"released class feature sums (Gaussian, noise {plan.release_noise_multiplier:.3f}, sensitivity 1 per patient)"
    )
    metrics = {Metric.EPSILON: plan.release_epsilon, Metric.DELTA: plan.delta}
    return site.reply(OK, reason, metrics, feature_sums=sums), state
