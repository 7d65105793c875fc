"""The smallest model card ``publish_generator`` accepts, for tests that publish a tiny generator."""

from __future__ import annotations


def minimal_card(classes: list[str], *, private: bool, run_name: str = "test-run", site_epsilon: float = 0.9) -> dict:
    """A card of one site ``a`` that spent ``site_epsilon`` (None when not private) of a target epsilon of 1."""
    return {
        "run_name": run_name,
        "created": "now",
        "private": private,
        "classes": classes,
        "condition_set": "coarse",
        "rounds_planned": 1,
        "rounds_completed": 1,
        "privacy": {
            "dp": private,
            "unit": "patient",
            "accountant": "rdp",
            "target_epsilon": 1.0,
            "delta": 1e-5,
            "max_grad_norm": 1.0,
        },
        "sites": [
            {
                "name": "a",
                "patients": 3,
                "images": 4,
                "rounds": 1,
                "steps": 2,
                "epsilon": site_epsilon if private else None,
                "delta": 1e-5,
            }
        ],
        "data": {"description": "test", "patients": 3, "images": 4, "class_images": {c: 1 for c in classes}},
        "training": {"loss": "hinge"},
    }
