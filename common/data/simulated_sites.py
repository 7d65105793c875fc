"""Which records a simulated hospital holds: the run's dataset minus the holdout patients, split by patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_fedsynth.common.data.image_cache import default_cache_dir
from cxr_fedsynth.common.data.partition import holdout_mask, partition_by_patient
from cxr_fedsynth.common.data.phantoms import default_phantom_dir, generate_phantom_dataset
from cxr_fedsynth.common.data.records import ImageRecord, SiteRecords
from cxr_fedsynth.common.data.site_data import read_site
from cxr_fedsynth.common.experiment_config import PUBLIC_PHANTOMS, ExperimentConfig


def dataset_dir(config: ExperimentConfig) -> Path:
    """The run's data folder: ``data-dir``, or the embedded phantom set (generated once into the cache)."""
    if not config.uses_phantoms:
        return Path(config.data_dir).expanduser()
    cache = config.path_or_none(config.cache_dir) or default_cache_dir()
    return generate_phantom_dataset(default_phantom_dir(cache, config.phantom_spec()), config.phantom_spec())


def public_dataset_dir(config: ExperimentConfig) -> Path:
    """The public set's folder: ``public-data``, or the embedded public phantom set (generated once into the cache)."""
    if config.public_source != PUBLIC_PHANTOMS:
        return Path(config.public_source).expanduser()
    cache = config.path_or_none(config.cache_dir) or default_cache_dir()
    spec = config.public_phantom_spec()
    return generate_phantom_dataset(default_phantom_dir(cache, spec), spec)


def read_run_dataset(config: ExperimentConfig) -> SiteRecords:
    """Every labelled record of the run's dataset (nothing decoded)."""
    return read_site(
        dataset_dir(config),
        config.condition_set(),
        labels=config.path_or_none(config.labels),
        patient_pattern=config.patient_pattern or None,
    )


def split_records(
    config: ExperimentConfig, records: list[ImageRecord], num_sites: int
) -> tuple[list[list[ImageRecord]], list[ImageRecord]]:
    """Records per simulated site (by patient, per the partition scheme) and the held-out records."""
    patients = [r.patient_id for r in records]
    held = holdout_mask(patients, fraction=config.holdout_fraction, seed=config.seed)
    train_idx = np.flatnonzero(~held)
    train = [records[i] for i in train_idx]
    sites = partition_by_patient(
        [r.patient_id for r in train],
        [r.condition for r in train],
        config.partition_spec(num_sites),
        sources=[r.source for r in train],
    )
    per_site = [[train[i] for i in np.flatnonzero(sites == s)] for s in range(num_sites)]
    return per_site, [records[i] for i in np.flatnonzero(held)]
