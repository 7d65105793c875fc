"""The compliance policy: thresholds each check is judged against (defaults below, overridable by YAML)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from cxr_fedsynth.common.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """Thresholds; every check passes or fails against exactly one of them."""

    mia_auc_max: float = 0.60  # any attack's AUC above this fails (0.55 and below: no evidence)
    mia_auc_warn: float = 0.55  # between warn and max: flagged in the report, still a pass
    copies_max: int = 0  # Carlini near-copies allowed, pixel or embedding space
    copy_ratio: float = 1 / 3  # nearest / mean-of-50-nearest distance under which a sample is a copy
    exact_matches_max: int = 0  # near-exact matches (RMS per pixel < 0.01) allowed
    dcr_share_max: float = 0.55  # fail when the CI of the closer-to-train share lies entirely above this
    epsilon_lower_bound_must_not_exceed_claim: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def load_policy(path: Path | None) -> Policy:
    """The default policy, with any keys a YAML file sets; unknown keys are refused."""
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: policy cannot be read ({exc})") from None
    known = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown policy key(s) {unknown}; valid keys: {sorted(known)}")
    try:
        return Policy(**{k: type(known[k].default)(v) for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: policy value of the wrong type ({exc})") from None


def verdicts(report: dict, policy: Policy) -> list[dict]:
    """Pass/fail per check with the number, the threshold and a sentence a person can read."""
    out = []
    for space, copies in report["memorization"]["overall"].items():
        out.append(
            {
                "check": f"near-copies ({space})",
                "value": copies["copies"],
                "threshold": policy.copies_max,
                "passed": copies["copies"] <= policy.copies_max,
                "meaning": f"{copies['copies']} of {copies['samples']} generated images are near-copies of a training image in {space} space.",
            }
        )
    dcr = report["distance"]["overall"]
    out.append(
        {
            "check": "exact matches",
            "value": dcr["exact_matches"],
            "threshold": policy.exact_matches_max,
            "passed": dcr["exact_matches"] <= policy.exact_matches_max,
            "meaning": "Generated images that are pixel-for-pixel (RMS < 1%) equal to a training image.",
        }
    )
    low, high = dcr["share_ci"]
    out.append(
        {
            "check": "closer to train than to holdout",
            "value": round(dcr["share_closer_to_train"], 3),
            "threshold": policy.dcr_share_max,
            "passed": low <= policy.dcr_share_max,
            "meaning": f"Share of generated images nearer a training image than an unseen image (95% CI {low:.2f}-{high:.2f}); about 0.5 when training data is not favoured.",
        }
    )
    claimed = report["claimed_epsilon"]
    for attack in report["attacks"]["overall"]:
        flagged = attack["auc"] > policy.mia_auc_warn
        out.append(
            {
                "check": f"membership inference: {attack['name']}",
                "value": round(attack["auc"], 3),
                "threshold": policy.mia_auc_max,
                "passed": attack["auc"] <= policy.mia_auc_max,
                "meaning": f"ROC AUC of telling training patients from unseen ones (0.5 = chance){'; flagged: above ' + str(policy.mia_auc_warn) if flagged else ''}.",
            }
        )
        if policy.epsilon_lower_bound_must_not_exceed_claim and claimed is not None:
            out.append(
                {
                    "check": f"empirical epsilon: {attack['name']}",
                    "value": round(attack["empirical_epsilon"], 3),
                    "threshold": claimed,
                    "passed": attack["empirical_epsilon"] <= claimed,
                    "meaning": "Lower bound on epsilon the attack demonstrates (95% confidence); above the claimed epsilon means the privacy claim is broken.",
                }
            )
    return out
