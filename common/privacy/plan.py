"""A run's privacy plan, computed once: the epsilon a run may spend at a site, its split between the one-off
feature release and the DP-SGD rounds, and the noise of each.

The release's noise depends only on the run's config, so it is planned with the plan. The DP-SGD noise also
depends on the site's patient count (sample rate = expected batch / patients): once per run a site draws a
noisy count (a Gaussian mechanism, in its ledger), plans with ``dp_sgd`` from it and keeps the result in its
state; count, release and rounds then compose to the run's epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.privacy.accounting import HistoryEntry, plan_noise_multiplier

#: Gaussian noise (sensitivity 1) of the patient count a site draws once per run to set its sample rate, so that
#: neither the rate nor the DP-SGD noise derived from it reveals the site's exact number of patients.
COUNT_NOISE_MULTIPLIER = 10.0


@dataclass(frozen=True)
class DpSgdPlan:
    """A site's DP-SGD noise and patient sample rate for the whole run."""

    noise_multiplier: float
    sample_rate: float


@dataclass(frozen=True)
class PrivacyPlan:
    """What a DP run may spend at one site and how: built by ``PrivacyPlan.for_run``."""

    epsilon: float
    delta: float
    release_epsilon: float  # 0: the run plans no feature release
    release_noise_multiplier: float  # Gaussian std of the release (sensitivity 1); 0: no release
    batch_size: int  # expected patients per DP-SGD batch
    total_steps: int  # DP-SGD steps over all rounds

    @classmethod
    def for_run(
        cls, *, epsilon: float, delta: float, release_share: float, batch_size: int, total_steps: int
    ) -> PrivacyPlan:
        """Plan a run that spends ``epsilon``; ``release_share`` of it goes to the feature release (0: none)."""
        if not 0 <= release_share < 1:
            raise ConfigError(f"the feature release's share of epsilon must be in [0, 1) (got {release_share})")
        release_epsilon = release_share * epsilon
        noise = (
            plan_noise_multiplier(target_epsilon=release_epsilon, delta=delta, sample_rate=1.0, steps=1)
            if release_epsilon
            else 0.0
        )
        return cls(epsilon, delta, release_epsilon, noise, batch_size, total_steps)

    @property
    def releases_features(self) -> bool:
        return self.release_noise_multiplier > 0

    @property
    def count_history(self) -> list[HistoryEntry]:
        """The accountant's entry of the site's noisy patient count (one Gaussian mechanism at sample rate 1)."""
        return [(COUNT_NOISE_MULTIPLIER, 1.0, 1)]

    @property
    def release_history(self) -> list[HistoryEntry]:
        """The accountant's entries of the feature release (one Gaussian mechanism at sample rate 1), if any."""
        return [(self.release_noise_multiplier, 1.0, 1)] if self.releases_features else []

    def dp_sgd(self, noisy_patients: float) -> DpSgdPlan:
        """The DP-SGD noise for a site whose noisy patient count is ``noisy_patients``, composed with the count
        and the release to ``epsilon``. Patients are then sampled at exactly this rate, so the accounting holds
        whatever the true count."""
        sample_rate = min(1.0, self.batch_size / max(noisy_patients, 1.0))
        noise = plan_noise_multiplier(
            target_epsilon=self.epsilon,
            delta=self.delta,
            sample_rate=sample_rate,
            steps=self.total_steps,
            prior=self.count_history + self.release_history,
        )
        return DpSgdPlan(noise, sample_rate)
