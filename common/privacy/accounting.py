"""Privacy accounting with Opacus' RDP accountant: plan the noise once for a run, compose any history.

One accountant everywhere (planning, per-round reports, the site ledger, the model card): RDP, named
``ACCOUNTANT`` so reports can say which one gave the number.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from opacus.accountants import RDPAccountant

from cxr_fedsynth.common.errors import ConfigError

ACCOUNTANT = "rdp"
# For few steps the best RDP order is the largest default one: the bound is still valid, only less tight.
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
HistoryEntry = tuple[float, float, int]  # (noise multiplier, sample rate, steps)
EPSILON_TOLERANCE = 0.01  # as Opacus' get_noise_multiplier


def plan_noise_multiplier(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, prior: Iterable[HistoryEntry] = ()
) -> float:
    """Noise multiplier for which ``prior`` + ``steps`` DP steps at ``sample_rate`` spend at most ``target_epsilon``.

    Opacus' own search (``get_noise_multiplier``: double, then bisect to within 0.01 epsilon below the target),
    composed with the ``prior`` mechanisms the same run also spends (e.g. a one-off feature release).
    """
    if target_epsilon <= 0 or not 0 < delta < 1:
        raise ConfigError(f"target epsilon must be > 0 and delta in (0, 1); got {target_epsilon}, {delta}")
    if steps <= 0:
        raise ConfigError(f"a DP run needs at least one step, got {steps}")
    prior = list(prior)
    if (prior_epsilon := epsilon_of(prior, delta=delta)) >= target_epsilon:
        raise ConfigError(
            f"the run's other releases alone spend epsilon {prior_epsilon:.3f}, not below the target {target_epsilon}"
        )

    def spent(noise: float) -> float:
        return epsilon_of([*prior, (noise, sample_rate, steps)], delta=delta)

    low, high, eps_high = 0.0, 10.0, spent(10.0)
    while eps_high > target_epsilon:
        low, high = high, 2 * high
        eps_high = spent(high)
    while target_epsilon - eps_high > EPSILON_TOLERANCE:
        middle = (low + high) / 2
        eps = spent(middle)
        if eps < target_epsilon:
            high, eps_high = middle, eps
        else:
            low = middle
    return high


def make_accountant(history: Iterable[HistoryEntry] = ()) -> RDPAccountant:
    """An RDP accountant pre-loaded with ``history``."""
    accountant = RDPAccountant()
    accountant.history = [(float(n), float(q), int(s)) for n, q, s in history]
    return accountant


def epsilon_of(history: Iterable[HistoryEntry], *, delta: float) -> float:
    """Epsilon spent by a composed history (0 for an empty one).

    RDP composition adds up per (noise, sample rate) and does not depend on order, so entries with the same
    mechanism are summed first: the cost stays flat (about 0.1 s) however many rounds a ledger holds.
    """
    steps: dict[tuple[float, float], int] = {}
    for noise, rate, count in history:
        mechanism = (float(noise), float(rate))
        steps[mechanism] = steps.get(mechanism, 0) + int(count)
    if not steps:
        return 0.0
    return float(make_accountant((n, q, s) for (n, q), s in steps.items()).get_epsilon(delta))
