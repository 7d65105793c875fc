"""One federated round at a site: the site's policy check, its budget, the DP discriminator update, the reply.

The run config is only a request: the site's own policy (``common.privacy.site_policy``) decides whether the run
may happen at all, and the site plans its own noise. What leaves is listed in ``common.protocol.PROTECTION``: D's
weights after DP-SGD, D's score on generated images and public constants. Never images, counts, losses on real
images, file names or per-sample values; a refusal names only its kind (the details go to the site's log).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cxr_fedsynth.common.data.image_cache import SiteImages, load_site_images
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import BudgetExceededError, DataError, PolicyRefusal
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.discriminator_training import DPSettings, train_discriminator_round
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT, HistoryEntry, make_accountant
from cxr_fedsynth.common.privacy.ledger import Budget, SiteLedger
from cxr_fedsynth.common.privacy.patient_sampler import PatientPoissonSampler
from cxr_fedsynth.common.privacy.plan import COUNT_NOISE_MULTIPLIER, PrivacyPlan
from cxr_fedsynth.common.privacy.secure_noise import secure_gaussian_like
from cxr_fedsynth.common.privacy.site_policy import DP_SGD, FEATURE_RELEASE, PATIENT_COUNT, SitePolicy
from cxr_fedsynth.common.protocol import OK, REFUSED, SITE_DATA, Metric, SiteReply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """A site as its round sees it: a name, its records, its ledger and its own policy."""

    name: str
    records: list[ImageRecord]
    ledger_path: Path
    policy: SitePolicy
    images: SiteImages | None = None  # decoded once and kept (simulation); None: read per message
    data_kind: str = SITE_DATA

    @property
    def budget(self) -> Budget:
        return Budget(self.policy.budget_epsilon, self.policy.budget_delta)

    def ledger(self) -> SiteLedger:
        return SiteLedger(self.ledger_path, self.budget)

    def reply(self, status: str, reason: str, metrics: dict | None = None, **arrays: object) -> SiteReply:
        """A reply carrying this site's own public settings (see ``common.protocol.PROTECTION``)."""
        return SiteReply(
            self.name,
            status,
            reason,
            metrics or {},
            dp=self.policy.dp,
            privacy_unit=self.policy.privacy_unit,
            data_kind=self.data_kind,
            **arrays,
        )

    def refusal(self, exc: PolicyRefusal | BudgetExceededError) -> SiteReply:
        """Refuse: the full reason goes to the site's log, its kind to the server."""
        log.warning("site %s refused: %s", self.name, exc)
        if isinstance(exc, BudgetExceededError):
            return self.reply(REFUSED, "privacy budget: the site's ledger refuses this spend")
        return self.reply(REFUSED, f"site policy: {exc}")


@dataclass
class RunPrivacyState:
    """Per-run state a site carries between rounds (Flower ``context.state``): its noise plan and history."""

    run_id: str = ""
    noise_multiplier: float = 0.0
    sample_rate: float = 0.0
    history: tuple[HistoryEntry, ...] = ()


def site_plan(config: ExperimentConfig, policy: SitePolicy) -> PrivacyPlan | None:
    """The run's privacy plan at a site under its policy (None for a simulated no-DP baseline site)."""
    return config.privacy_plan(releases=policy.allows(FEATURE_RELEASE)) if policy.dp else None


def check_request(config: ExperimentConfig, policy: SitePolicy, mechanism: str) -> None:
    """Raise PolicyRefusal when the run asks for what the site's policy does not allow (nothing read yet)."""
    if not policy.allows(mechanism):
        raise PolicyRefusal(f"the site's policy does not allow the mechanism {mechanism}")
    if policy.dp and config.target_epsilon > policy.max_run_epsilon:
        raise PolicyRefusal(
            f"the run asks epsilon {config.target_epsilon}, over the site's cap {policy.max_run_epsilon}"
        )
    if policy.dp and config.target_delta > policy.max_run_delta:
        raise PolicyRefusal(f"the run asks delta {config.target_delta:g}, over the site's cap {policy.max_run_delta:g}")


def check_finite(weights: dict[str, dict[str, torch.Tensor]], what: str) -> None:
    """Refuse weights holding NaN or inf: a crafted model must not turn a DP step into a non-finite output."""
    for name, state in weights.items():
        if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
            raise PolicyRefusal(f"{what}: {name} holds non-finite values")


def read_site_images(image_size: int, policy: SitePolicy, name: str, records: list[ImageRecord]) -> SiteImages:
    """Decode a site's images into the cache its policy names; DataError when none can be read."""
    data = load_site_images(
        records,
        image_size=image_size,
        cache_dir=Path(policy.cache_dir).expanduser() if policy.cache_dir else None,
        allow_non_chest=policy.allow_non_chest,
        show_progress=False,
    )
    if not data.records:
        raise DataError(f"site {name}: none of its {len(records)} images could be read; run cxr-client check")
    return data


def load_site_data(config: ExperimentConfig, site: Site) -> SiteImages:
    """The site's decoded images: those it already holds, else read now."""
    if site.images is not None:
        return site.images
    return read_site_images(config.image_size, site.policy, site.name, site.records)


def plan_once(plan: PrivacyPlan, state: RunPrivacyState, run_id: str, site: Site, num_patients: int) -> RunPrivacyState:
    """The site's DP-SGD noise for the whole run, planned at the run's first message from a noisy patient count
    (a Gaussian mechanism, reserved in the ledger first), composed with the count and the run's release."""
    if state.run_id == run_id:
        return state
    site.ledger().reserve(
        run_id=run_id,
        round_number=0,
        noise_multiplier=COUNT_NOISE_MULTIPLIER,
        sample_rate=1.0,
        steps=1,
        mechanism=PATIENT_COUNT,
        once_per_run=True,
    )
    noisy = num_patients + float(secure_gaussian_like(torch.zeros(1, dtype=torch.float64), COUNT_NOISE_MULTIPLIER))
    dp_sgd = plan.dp_sgd(noisy)
    if dp_sgd.noise_multiplier < site.policy.min_noise_multiplier:
        raise PolicyRefusal(
            f"the run's plan needs DP-SGD noise {dp_sgd.noise_multiplier:.2f}, under the site's minimum "
            f"{site.policy.min_noise_multiplier}"
        )
    return RunPrivacyState(run_id, dp_sgd.noise_multiplier, dp_sgd.sample_rate, tuple(plan.count_history))


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
    """Train D for ``local-steps`` on the site's data, or refuse (training nothing) outside the policy or budget.

    ``plan`` is the run's privacy plan under the site's policy (``site_plan``; None only for a no-DP baseline).
    """
    try:
        check_request(config, site.policy, DP_SGD)
        check_finite(global_weights, "the server's weights")
        data = load_site_data(config, site)
        patients = len(set(data.patient_ids))
        if plan is not None:
            state = plan_once(plan, state, run_id, site, patients)
            site.ledger().reserve(
                run_id=run_id,
                round_number=round_number,
                noise_multiplier=state.noise_multiplier,
                sample_rate=state.sample_rate,
                steps=config.local_steps,
            )
        weights, fake_score, state = _train(config, site, data, global_weights, state, plan, patients)
    except (PolicyRefusal, BudgetExceededError) as exc:
        return site.refusal(exc), state
    metrics = {Metric.FAKE_SCORE: fake_score, Metric.LOCAL_STEPS: float(config.local_steps)}
    if plan is None:
        metrics[Metric.EPSILON] = float("inf")
        return site.reply(OK, "trained without DP (NOT PRIVATE)", metrics, discriminator=weights), state
    metrics.update({Metric.EPSILON: plan.epsilon, Metric.DELTA: plan.delta})
    reason = f"trained {config.local_steps} steps ({ACCOUNTANT} accountant)"
    return site.reply(OK, reason, metrics, discriminator=weights), state


def _train(
    config: ExperimentConfig,
    site: Site,
    data: SiteImages,
    global_weights: dict[str, dict[str, torch.Tensor]],
    state: RunPrivacyState,
    plan: PrivacyPlan | None,
    patients: int,
) -> tuple[dict[str, torch.Tensor], float, RunPrivacyState]:
    """The DP-SGD steps of one round; returns D's weights, D's mean score on fakes and the updated state."""
    device = pick_device(config.device)
    arch = config.architecture(len(config.condition_set()))
    generator, discriminator = build_models(arch, seed=config.seed)
    generator.load_state_dict(global_weights["generator"])
    discriminator.load_state_dict(global_weights["discriminator"])
    generator.to(device).eval()
    discriminator.to(device)
    entropy = secrets.randbits(62)  # sampling must not be predictable from public config
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
        secure_noise=True,
    )
    weights = {k: v.detach().cpu() for k, v in trained.state_dict().items()}
    check_finite({"discriminator": weights}, "the round's output")  # never a non-finite value out
    if accountant is not None:
        history = tuple((float(n), float(q), int(s)) for n, q, s in accountant.history)
        state = replace(state, history=history)
    return weights, float(result.fake_score), state
