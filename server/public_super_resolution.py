"""The server trains the published generator's super-resolution network on the public set (``super-resolution``
> 1): no private image, no privacy cost. See ``common.gan.super_resolution``."""

from __future__ import annotations

import logging

import torch

from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.simulated_sites import public_dataset_dir
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.super_resolution import SuperResolution, SuperResolutionSpec, train_super_resolution
from cxr_fedsynth.server.public_pretraining import public_set_name

log = logging.getLogger("cxr_fedsynth.server")


def train_public_super_resolution(config: ExperimentConfig, *, device: torch.device) -> tuple[SuperResolution, dict]:
    """The network and what the model card says of it (factor, recipe, public set; no paths)."""
    size = config.published_image_size
    data = load_labelled_images(
        public_dataset_dir(config, image_size=size),
        config.condition_set(),
        labels=config.path_or_none(config.public_labels),
        image_size=size,
        cache_dir=config.path_or_none(config.cache_dir),
    )
    spec = SuperResolutionSpec(config.super_resolution, steps=config.super_resolution_steps, seed=config.seed)
    network = train_super_resolution(to_model_range(data.images).to(device), spec)
    trained_on = {"name": public_set_name(config), "images": len(data.records), "image_size": size}
    log.info(
        "public super-resolution x%d: %d steps on %s (%d images at %d px)",
        spec.factor,
        spec.steps,
        trained_on["name"],
        trained_on["images"],
        size,
    )
    return network, {"recipe": spec.to_dict(), "trained_on": trained_on}
