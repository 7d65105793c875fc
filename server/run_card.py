"""The model card of a run: classes, rounds, privacy per site, the public set, a data summary without identifiers."""

from __future__ import annotations

from datetime import datetime, timezone

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT
from cxr_fedsynth.server.aggregation import SiteStats

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
) -> dict:
    """The card's JSON (``common.publish.model_card`` renders it and writes it beside the weights)."""
    c = config
    trained = [s for s in sites if s.rounds]
    class_images = {name: sum(s.class_images.get(name, 0) for s in trained) for name in classes}
    return {
        "run_name": run_name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "private": c.dp,
        "classes": classes,
        "condition_set": c.conditions,
        "rounds_planned": c.num_server_rounds,
        "rounds_completed": rounds_completed,
        "privacy": {
            "dp": c.dp,
            "unit": "patient (Poisson sampling of patients, one image per sampled patient, per-patient clipping)",
            "accountant": f"{ACCOUNTANT} (Opacus RDPAccountant)",
            "target_epsilon": c.target_epsilon if c.dp else None,
            "delta": c.target_delta if c.dp else None,
            "max_grad_norm": c.max_grad_norm if c.dp else None,
            "feature_release": feature_release,
        },
        "sites": [
            {**{k: v for k, v in vars(s).items() if k != "refused"}, "epsilon": s.epsilon if c.dp else None}
            for s in sorted(trained, key=lambda s: s.name)
        ],
        "public_pretraining": public,
        "data": {
            "description": "embedded PHANTOM chest drawings (not real radiographs)"
            if c.uses_phantoms
            else "site data (paths not recorded)",
            "patients": sum(s.patients for s in trained),
            "images": sum(s.images for s in trained),
            "class_images": class_images,
        },
        "training": {k: v for k, v in c.to_run_config().items() if k not in PRIVATE_KEYS},
    }
