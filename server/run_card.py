"""The model card of a run: classes, rounds, privacy per site, the public set, a data summary without identifiers."""

from __future__ import annotations

from datetime import datetime, timezone

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT
from cxr_fedsynth.server.aggregation import SiteStats

#: How the card words each privacy unit (a site's policy chooses it; patient unless the site accepts image level).
UNIT_WORDS = {
    "patient": "patient (Poisson sampling of patients, one image per sampled patient, per-patient clipping)",
    "image": "image at one or more sites (their policies accept image-level privacy: no patient IDs)",
}
#: Run-config keys that hold local paths: never written into a public model card.
PRIVATE_KEYS = frozenset(name for name, key in ExperimentConfig.keys().items() if key.private)


def run_model_card(
    config: ExperimentConfig,
    *,
    run_name: str,
    classes: list[str],
    sites: list[SiteStats],
    rounds_completed: int,
    feature_release: dict | None,
    public: dict | None,
    super_resolution: dict | None = None,
) -> dict:
    """The card's JSON (``common.publish.model_card`` renders it and writes it beside the weights);
    ``super_resolution`` says what the public super-resolution network was trained on (publishing adds its recipe)."""
    c = config
    trained = sorted((s for s in sites if s.rounds), key=lambda s: s.name)
    private = bool(trained) and all(s.dp for s in trained)
    units = sorted({s.privacy_unit for s in trained})
    kinds = sorted({s.data_kind for s in trained if s.data_kind})
    noisy = (feature_release or {}).get("noisy_patients_per_class")
    return {
        "run_name": run_name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "private": private,
        "classes": classes,
        "condition_set": c.conditions,
        "rounds_planned": c.num_server_rounds,
        "rounds_completed": rounds_completed,
        "privacy": {
            "dp": private,
            "unit": UNIT_WORDS["image"] if "image" in units else UNIT_WORDS["patient"],
            "accountant": f"{ACCOUNTANT} (Opacus RDPAccountant)",
            "target_epsilon": c.target_epsilon if private else None,
            "delta": c.target_delta if private else None,
            "max_grad_norm": c.max_grad_norm if private else None,
            "feature_release": feature_release,
        },
        "sites": [
            {
                "name": s.name,
                "rounds": s.rounds,
                "steps": s.steps,
                "epsilon": s.epsilon if s.dp else None,
                "delta": s.delta if s.dp else None,
                "privacy_unit": s.privacy_unit,
            }
            for s in trained
        ],
        "public_pretraining": public,
        **({"super_resolution": super_resolution} if super_resolution else {}),
        "data": {
            "description": "; ".join(kinds) or "no site trained",
            # Sites send no counts; the feature release's noisy per-class patient counts are DP estimates.
            "patients": round(sum(noisy.values())) if noisy and private else None,
            "patients_source": "noisy counts of the DP feature release"
            if noisy and private
            else "not released by the sites",
            "class_patients": noisy if private else None,
        },
        "training": {k: v for k, v in c.to_run_config().items() if k not in PRIVATE_KEYS},
    }
