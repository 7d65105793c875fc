"""Split records across simulated hospitals by patient: IID, Dirichlet label skew, or by source.

Every scheme assigns whole patients, so no patient is ever at two sites, and is deterministic given the seed.
A patient's label for skewing is the condition of the majority of their images (ties: lowest index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxr_fedsynth.common.errors import ConfigError

SCHEMES = ("iid", "dirichlet", "source")


@dataclass(frozen=True)
class PartitionSpec:
    """How to split: number of sites, scheme, Dirichlet concentration and seed."""

    num_sites: int
    scheme: str = "iid"
    alpha: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_sites < 1:
            raise ConfigError(f"num-sites must be at least 1 (got {self.num_sites})")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"partition scheme {self.scheme!r} is unknown; use one of {SCHEMES}")
        if self.scheme == "dirichlet" and self.alpha <= 0:
            raise ConfigError(f"dirichlet alpha must be > 0 (got {self.alpha})")


def _patient_labels(codes: np.ndarray, labels: np.ndarray, num_patients: int) -> np.ndarray:
    num_classes = int(labels.max()) + 1 if len(labels) else 1
    counts = np.zeros((num_patients, num_classes), dtype=np.int64)
    np.add.at(counts, (codes, labels), 1)
    return counts.argmax(axis=1)


def _iid(num_patients: int, spec: PartitionSpec, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(num_patients)
    sites = np.empty(num_patients, dtype=np.int64)
    sites[order] = np.arange(num_patients) % spec.num_sites
    return sites


def _dirichlet(patient_labels: np.ndarray, spec: PartitionSpec, rng: np.random.Generator) -> np.ndarray:
    sites = np.empty(len(patient_labels), dtype=np.int64)
    for _attempt in range(100):
        for label in np.unique(patient_labels):
            members = rng.permutation(np.flatnonzero(patient_labels == label))
            shares = rng.dirichlet(np.full(spec.num_sites, spec.alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for site, part in enumerate(np.split(members, cuts)):
                sites[part] = site
        if len(np.unique(sites)) == spec.num_sites:
            return sites
    raise ConfigError(
        f"dirichlet alpha={spec.alpha} left a site without patients in 100 draws for {spec.num_sites} sites; "
        "raise alpha or lower num-sites"
    )


def _by_source(codes: np.ndarray, sources: Sequence[str], num_patients: int, spec: PartitionSpec) -> np.ndarray:
    first_source = pd.Series(list(sources)).groupby(codes).first().reindex(range(num_patients)).to_numpy()
    names, source_of_patient = np.unique(first_source.astype(str), return_inverse=True)
    if len(names) < spec.num_sites:
        raise ConfigError(
            f"partition by source needs at least num-sites={spec.num_sites} sources, found {len(names)} "
            f"({list(names)[:8]}); use scheme iid or dirichlet"
        )
    sizes = np.bincount(source_of_patient)
    load = np.zeros(spec.num_sites, dtype=np.int64)
    site_of_source = np.empty(len(names), dtype=np.int64)
    for s in np.argsort(-sizes, kind="stable"):  # largest source to the least loaded site
        target = int(load.argmin())
        site_of_source[s] = target
        load[target] += sizes[s]
    return site_of_source[source_of_patient]


def partition_by_patient(
    patient_ids: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    spec: PartitionSpec,
    *,
    sources: Sequence[str] | None = None,
) -> np.ndarray:
    """Site index for every record (row-aligned with ``patient_ids``); whole patients move together."""
    if len(patient_ids) != len(labels):
        raise ValueError("patient_ids and labels must be row-aligned")
    codes, uniques = pd.factorize(pd.Series(list(patient_ids), dtype=str))
    num_patients = len(uniques)
    if num_patients < spec.num_sites:
        raise ConfigError(f"{num_patients} patients cannot fill {spec.num_sites} sites; lower num-sites")
    rng = np.random.default_rng(spec.seed)
    if spec.scheme == "iid":
        patient_site = _iid(num_patients, spec, rng)
    elif spec.scheme == "dirichlet":
        patient_site = _dirichlet(_patient_labels(codes, np.asarray(labels, dtype=np.int64), num_patients), spec, rng)
    else:
        if sources is None:
            raise ConfigError("partition by source needs a 'Source' column in the label table")
        patient_site = _by_source(codes, sources, num_patients, spec)
    return patient_site[codes]


def holdout_mask(patient_ids: Sequence[str], *, fraction: float, seed: int) -> np.ndarray:
    """Rows of a seeded random ``fraction`` of patients, kept away from every site (for evaluation/audit)."""
    codes, uniques = pd.factorize(pd.Series(list(patient_ids), dtype=str))
    num_holdout = int(round(fraction * len(uniques)))
    chosen = np.zeros(len(uniques), dtype=bool)
    chosen[np.random.default_rng([seed, 7919]).permutation(len(uniques))[:num_holdout]] = True
    return chosen[codes]
