"""Patient-level partitioning: invariants on the full NIH table, determinism, label skew, by source."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.partition import PartitionSpec, partition_by_patient
from cxr_fedsynth.common.errors import ConfigError


@pytest.fixture(scope="module")
def nih_table(nih_labels_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(nih_labels_dir / "Data_Entry_2017_v2020.csv.gz", dtype=str, keep_default_na=False)
    nih14 = load_condition_set("nih14")
    table["label"] = [nih14.classify(f.split("|")) for f in table["Finding Labels"]]
    return table


def _assert_patient_disjoint(patients: pd.Series, sites: np.ndarray) -> None:
    per_patient = pd.Series(sites).groupby(patients.to_numpy()).nunique()
    assert per_patient.max() == 1, "a patient appears at two sites"


def test_full_nih_table_into_100_sites(nih_table: pd.DataFrame) -> None:
    assert len(nih_table) == 112_120 and nih_table["Patient ID"].nunique() == 30_805
    for scheme in ("iid", "dirichlet"):
        start = time.perf_counter()
        sites = partition_by_patient(
            nih_table["Patient ID"], nih_table["label"], PartitionSpec(100, scheme, 0.5, seed=1)
        )
        assert time.perf_counter() - start < 10, "partitioning 112k rows must take seconds, not minutes"
        assert sites.shape == (112_120,) and set(np.unique(sites)) == set(range(100))
        _assert_patient_disjoint(nih_table["Patient ID"], sites)


def test_iid_balances_patients_and_is_deterministic(nih_table: pd.DataFrame) -> None:
    spec = PartitionSpec(10, "iid", seed=7)
    a = partition_by_patient(nih_table["Patient ID"], nih_table["label"], spec)
    b = partition_by_patient(nih_table["Patient ID"], nih_table["label"], spec)
    c = partition_by_patient(nih_table["Patient ID"], nih_table["label"], PartitionSpec(10, "iid", seed=8))
    assert (a == b).all() and (a != c).any()
    patients_per_site = pd.Series(nih_table["Patient ID"].to_numpy()).groupby(a).nunique()
    assert patients_per_site.max() - patients_per_site.min() <= 1


def test_dirichlet_skews_labels_more_than_iid(nih_table: pd.DataFrame) -> None:
    def spread(scheme: str, alpha: float) -> float:
        sites = partition_by_patient(
            nih_table["Patient ID"], nih_table["label"], PartitionSpec(10, scheme, alpha, seed=3)
        )
        shares = pd.crosstab(sites, nih_table["label"].fillna(-1), normalize="index")
        return float(shares.std(axis=0).mean())

    assert spread("dirichlet", 0.1) > 3 * spread("iid", 1.0)


def test_by_source_on_real_data(cxr128_dir: Path) -> None:
    table = pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False)
    labels = np.zeros(len(table), dtype=int)
    sites = partition_by_patient(table["Patient ID"], labels, PartitionSpec(3, "source"), sources=table["Source"])
    _assert_patient_disjoint(table["Patient ID"], sites)
    # A source stays whole, except for patients whose images come from two sources: the patient wins.
    single = (table.groupby("Patient ID")["Source"].transform("nunique") == 1).to_numpy()
    assert (pd.Series(sites[single]).groupby(table["Source"].to_numpy()[single]).nunique() == 1).all()
    with pytest.raises(ConfigError, match="needs at least num-sites=9 sources"):
        partition_by_patient(table["Patient ID"], labels, PartitionSpec(9, "source"), sources=table["Source"])


def test_bad_specs() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        PartitionSpec(2, "random")
    with pytest.raises(ConfigError, match="3 patients cannot fill 4 sites"):
        partition_by_patient(["a", "b", "c"], [0, 1, 0], PartitionSpec(4))


@settings(max_examples=40, deadline=None)
@given(
    patients=st.lists(st.integers(0, 30), min_size=8, max_size=120),
    num_sites=st.integers(1, 6),
    scheme=st.sampled_from(["iid", "dirichlet"]),
    seed=st.integers(0, 1000),
)
def test_never_one_patient_at_two_sites(patients: list[int], num_sites: int, scheme: str, seed: int) -> None:
    ids = [f"P{p}" for p in patients]
    if len(set(ids)) < num_sites:
        return
    labels = [p % 3 for p in patients]
    try:
        sites = partition_by_patient(ids, labels, PartitionSpec(num_sites, scheme, 1.0, seed))
    except ConfigError:
        return  # a Dirichlet draw that cannot fill every site is refused, never half-done
    _assert_patient_disjoint(pd.Series(ids), sites)
    assert set(np.unique(sites)) <= set(range(num_sites))
