"""Which records a simulated hospital holds: the run's dataset minus the holdout and test patients, split by patient."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_fedsynth.common.data.image_cache import default_cache_dir
from cxr_fedsynth.common.data.partition import holdout_mask, partition_by_patient
from cxr_fedsynth.common.data.phantoms import default_phantom_dir, generate_phantom_dataset
from cxr_fedsynth.common.data.records import ImageRecord, SiteRecords
from cxr_fedsynth.common.data.site_data import read_site
from cxr_fedsynth.common.experiment_config import PUBLIC_PHANTOMS, TEST_SPLIT_SEED, ExperimentConfig


def dataset_dir(config: ExperimentConfig) -> Path:
    """The run's data folder: ``data-dir``, or the embedded phantom set (generated once into the cache)."""
    if not config.uses_phantoms:
        return Path(config.data_dir).expanduser()
    cache = config.path_or_none(config.cache_dir) or default_cache_dir()
    return generate_phantom_dataset(default_phantom_dir(cache, config.phantom_spec()), config.phantom_spec())


def public_dataset_dir(config: ExperimentConfig, *, image_size: int | None = None) -> Path:
    """The public set's folder: ``public-data``, or the embedded public phantom set (generated once into the cache,
    drawn at ``image_size``, default the run's)."""
    if config.public_source != PUBLIC_PHANTOMS:
        return Path(config.public_source).expanduser()
    cache = config.path_or_none(config.cache_dir) or default_cache_dir()
    spec = dataclasses.replace(config.public_phantom_spec(), image_size=image_size or config.image_size)
    return generate_phantom_dataset(default_phantom_dir(cache, spec), spec)


def read_run_dataset(config: ExperimentConfig) -> SiteRecords:
    """Every labelled record of the run's dataset (nothing decoded)."""
    return read_site(
        dataset_dir(config),
        config.condition_set(),
        labels=config.path_or_none(config.labels),
        patient_pattern=config.patient_pattern or None,
    )


@dataclass(frozen=True)
class RecordSplit:
    """A simulation's patient-level split: the sites' records, the holdout (validation) and the untouched test set."""

    sites: list[list[ImageRecord]]
    holdout: list[ImageRecord]
    test: list[ImageRecord]


def split_records(config: ExperimentConfig, records: list[ImageRecord], num_sites: int) -> RecordSplit:
    """Records per simulated site (by patient, per the partition scheme), the holdout and the test records.

    The holdout is drawn first (``holdout-fraction``, the run's seed), then the test patients from the others
    (``test-fraction``, the fixed TEST_SPLIT_SEED), so adding a test set leaves the holdout as it was.
    """
    held = holdout_mask([r.patient_id for r in records], fraction=config.holdout_fraction, seed=config.seed)
    rest = [records[i] for i in np.flatnonzero(~held)]
    tested = holdout_mask([r.patient_id for r in rest], fraction=config.test_fraction, seed=TEST_SPLIT_SEED)
    train = [rest[i] for i in np.flatnonzero(~tested)]
    sites = partition_by_patient(
        [r.patient_id for r in train],
        [r.condition for r in train],
        config.partition_spec(num_sites),
        sources=[r.source for r in train],
    )
    return RecordSplit(
        sites=[[train[i] for i in np.flatnonzero(sites == s)] for s in range(num_sites)],
        holdout=[records[i] for i in np.flatnonzero(held)],
        test=[rest[i] for i in np.flatnonzero(tested)],
    )
