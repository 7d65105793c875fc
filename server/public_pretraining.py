"""Non-private pretraining of G and D on a public chest X-ray set, on the server, before any site is asked.

Public data (released for public use, e.g. NIH ChestX-ray14) costs no privacy budget: the server trains the
GAN on it with plain SGD, then the sites fine-tune D under DP-SGD from the pretrained weights. The public
patients must be other patients than the sites' and the test set's (``cxr-split --public-prefix`` writes such
tables for the simulation); the model card names the public set. The pretrained weights are stored under
``<output-dir>/public-pretraining/<key>/``, keyed by everything that determines them, and later runs with the
same key reuse them instead of training again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import torch

from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.simulated_sites import public_dataset_dir, read_run_dataset
from cxr_fedsynth.common.data.site_data import load_labelled_images, read_site
from cxr_fedsynth.common.errors import ConfigError, DataError
from cxr_fedsynth.common.experiment_config import PUBLIC_PHANTOMS, ExperimentConfig
from cxr_fedsynth.common.gan.discriminator_training import DiscriminatorTrainer, generate_fakes
from cxr_fedsynth.common.gan.generator_training import GeneratorTrainer
from cxr_fedsynth.common.gan.models import Discriminator
from cxr_fedsynth.common.progress import steps
from cxr_fedsynth.common.publish.artifacts import file_sha256

log = logging.getLogger("cxr_fedsynth.server")
#: Run-config keys that cannot change the public pretraining (run, site and privacy settings).
NOT_PRETRAINING_KEYS = frozenset(name for name, key in ExperimentConfig.keys().items() if not key.pretraining)


@dataclass(frozen=True)
class PublicPretraining:
    """What the model card says about the public pretraining (no paths)."""

    name: str
    images: int
    patients: int
    steps: int
    class_images: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def public_set_name(config: ExperimentConfig) -> str:
    """A path-free name of the public set: ``public-name``, else the folder (and table) names."""
    if config.public_name:
        return config.public_name
    if config.public_source == PUBLIC_PHANTOMS:
        return "embedded public PHANTOM set (procedural drawings of other patients, not radiographs)"
    folder = Path(config.public_source).expanduser().name
    return f"{folder} ({Path(config.public_labels).name})" if config.public_labels else folder


def check_public_patients_are_not_private(config: ExperimentConfig) -> None:
    """Refuse a run whose public set shares a patient with the simulated sites' data (``data-dir``/``labels``):
    pretraining on a site's patient without DP would void that patient's guarantee."""
    if not config.pretrains_on_public or config.uses_phantoms:
        return  # deployment: the sites' data never reaches the server
    conditions = config.condition_set()
    public = read_site(public_dataset_dir(config), conditions, labels=config.path_or_none(config.public_labels))
    shared = {r.patient_id for r in public.records} & {r.patient_id for r in read_run_dataset(config).records}
    if shared:
        raise ConfigError(
            f"public-data {config.public_source} shares {len(shared)} patient(s) with the sites' data-dir "
            f"{config.data_dir} (e.g. {sorted(shared)[:3]}); split them first (cxr-split --public-prefix) so that no "
            "patient is both public and private"
        )


def pretraining_key(config: ExperimentConfig) -> str:
    """Digest of what determines the pretrained weights: the settings, the public table's bytes, the code version."""
    settings = {k: v for k, v in config.to_run_config().items() if k not in NOT_PRETRAINING_KEYS}
    settings["public-data"] = str(public_dataset_dir(config).resolve())
    settings["public-labels"] = file_sha256(Path(config.public_labels).expanduser()) if config.public_labels else ""
    settings["cxr-fedsynth"] = version("cxr-fedsynth")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def pretrain_on_public(
    config: ExperimentConfig, g_trainer: GeneratorTrainer, discriminator: Discriminator, *, device: torch.device
) -> PublicPretraining:
    """Alternate ``public-steps`` plain D steps and G steps on the public set; D and G are updated in place."""
    conditions = config.condition_set()
    data = load_labelled_images(
        public_dataset_dir(config),
        conditions,
        labels=config.path_or_none(config.public_labels),
        image_size=config.image_size,
        cache_dir=config.path_or_none(config.cache_dir),
    )
    if len(data.records) < config.public_batch_size:
        raise DataError(
            f"public-data {config.public_source}: {len(data.records)} images, fewer than public-batch-size {config.public_batch_size}"
        )
    images, labels = to_model_range(data.images).to(device), torch.from_numpy(data.conditions).to(device)
    d_settings = dataclasses.replace(  # public: all of D, at the pretraining's own batch, learning rate and R1
        config.discriminator_settings(),
        trained_layers="all",
        batch_size=config.public_batch_size,
        lr=config.public_lr_d,
        r1_gamma=config.public_r1_gamma,
    )
    trainer = DiscriminatorTrainer(discriminator, d_settings, dp=None, augment_seed=config.seed * 7919 + 3)
    discriminator.train()
    gen = torch.Generator(device=device).manual_seed(config.seed * 7919 + 1)
    with steps(config.public_steps, "public pretraining") as advance:
        for step in range(config.public_steps):
            index = torch.randint(0, len(images), (d_settings.batch_size,), device=device, generator=gen)
            fake, fake_labels = generate_fakes(
                g_trainer.generator, d_settings.batch_size, num_classes=len(conditions), device=device, gen=gen
            )
            trainer.step(images[index], labels[index], fake, fake_labels)
            g_trainer.train_against(discriminator, seed=config.seed * 7919 + 2 + step, steps=1)
            advance()
    trainer.finish()
    counts = torch.bincount(labels.cpu(), minlength=len(conditions)).tolist()
    summary = PublicPretraining(
        name=public_set_name(config),
        images=len(data.records),
        patients=len({r.patient_id for r in data.records}),
        steps=config.public_steps,
        class_images=dict(zip(conditions.names, counts)),
    )
    log.info(
        "public pretraining: %d steps on %s (%d images, %d patients)",
        summary.steps,
        summary.name,
        summary.images,
        summary.patients,
    )
    return summary
