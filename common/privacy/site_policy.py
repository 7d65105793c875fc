"""A site's own privacy policy: what may leave the site, decided by the site, never by the server.

The policy fixes the site's total budget, the most one run may spend, the privacy unit, the mechanisms it
allows and the FABs it trusts, where its decoded images are cached and whether non-chest DICOMs are read. The
run config a server sends is only a *request*: ``check_request`` lists every way it falls outside the policy,
and the site refuses such a run (in its reply and in its own log). A deployed site's policy can never turn DP
off; a simulated site may run without DP only for baselines, and only through its own policy file
(``CXR_SIMULATED_SITE_POLICY``), never through the run config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from cxr_fedsynth.common.errors import ConfigError

#: Ledger names of the mechanisms a site can run.
DP_SGD = "dp-sgd"
FEATURE_RELEASE = "gaussian-class-feature-sums"
PATIENT_COUNT = "gaussian-patient-count"
MECHANISMS = (DP_SGD, FEATURE_RELEASE)
PRIVACY_UNITS = ("patient", "image")
#: Where a simulation's sites read their policy (the nodes' environment, not the run config).
SIMULATED_POLICY_ENV = "CXR_SIMULATED_SITE_POLICY"


@dataclass(frozen=True)
class SitePolicy:
    """Everything a site decides for itself (YAML keys are the field names with dashes)."""

    budget_epsilon: float = 10.0  # the site's total over all runs
    budget_delta: float = 1e-5
    max_run_epsilon: float = 10.0  # the most one run may spend
    max_run_delta: float = 1e-5
    min_noise_multiplier: float = 0.5  # a run whose DP-SGD noise would be lower is refused
    privacy_unit: str = "patient"  # "image" only with allow-image-level (recorded in the model card)
    allow_image_level: bool = False
    mechanisms: tuple[str, ...] = MECHANISMS
    trusted_fab_hashes: tuple[str, ...] = ()  # sha256 of FABs the site reviewed; others must carry no code
    cache_dir: str = ""  # "" = $CXR_CACHE_DIR or ~/.cache/cxr-fedsynth
    allow_non_chest: bool = False
    dp: bool = True  # False only for a simulated baseline site (refused when loading a deployed site's policy)

    def __post_init__(self) -> None:
        if self.budget_epsilon <= 0 or not 0 < self.budget_delta < 1:
            raise ConfigError("site policy: budget-epsilon must be > 0 and budget-delta in (0, 1)")
        if not 0 < self.max_run_epsilon <= self.budget_epsilon or not 0 < self.max_run_delta <= self.budget_delta:
            raise ConfigError("site policy: max-run-epsilon / max-run-delta must be > 0 and within the budget")
        if self.privacy_unit not in PRIVACY_UNITS:
            raise ConfigError(f"site policy: privacy-unit must be one of {PRIVACY_UNITS} (got {self.privacy_unit!r})")
        if self.privacy_unit == "image" and not self.allow_image_level:
            raise ConfigError(
                "site policy: privacy-unit 'image' protects images, not patients; set allow-image-level: true to accept"
            )
        unknown = sorted(set(self.mechanisms) - set(MECHANISMS))
        if unknown:
            raise ConfigError(f"site policy: unknown mechanism(s) {unknown}; known: {list(MECHANISMS)}")
        if self.min_noise_multiplier < 0:
            raise ConfigError("site policy: min-noise-multiplier must be >= 0")

    @classmethod
    def from_mapping(cls, values: dict, *, source: str) -> SitePolicy:
        """A policy from YAML-style keys (``max-run-epsilon``); unknown keys are refused."""
        by_key = {f.name.replace("_", "-"): f.name for f in fields(cls)}
        unknown = sorted(set(values) - set(by_key))
        if unknown:
            raise ConfigError(f"{source}: unknown site-policy key(s) {unknown}; valid keys: {sorted(by_key)}")
        kwargs = {by_key[k]: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path, *, deployed: bool) -> SitePolicy:
        """Read a policy file; a deployed site's policy may not turn DP off."""
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"{path}: site policy unreadable ({exc}); fix the YAML or pass another --policy"
            ) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a site policy is a YAML mapping of keys to values")
        policy = cls.from_mapping(values, source=str(path))
        if deployed and not policy.dp:
            raise ConfigError(f"{path}: dp: false is not possible for a deployed site (only for simulated baselines)")
        return policy

    @classmethod
    def for_simulated_site(cls) -> SitePolicy:
        """A simulated site's policy: ``$CXR_SIMULATED_SITE_POLICY`` when set, else the safe defaults."""
        path = os.environ.get(SIMULATED_POLICY_ENV)
        return cls.load(Path(path), deployed=False) if path else cls()

    def to_mapping(self) -> dict:
        """YAML-style keys and plain values (what ``cxr-client`` writes for its SuperNode)."""
        return {
            f.name.replace("_", "-"): list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    def replace(self, **changes: object) -> SitePolicy:
        return dataclasses.replace(self, **changes)

    def allows(self, mechanism: str) -> bool:
        return mechanism in self.mechanisms
