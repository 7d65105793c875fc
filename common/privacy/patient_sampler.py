"""Poisson sampling of patients (the privacy unit) with one image per sampled patient.

Every patient joins a batch independently with probability q; a sampled patient contributes one of their
images, chosen uniformly. Opacus' per-sample clipping then bounds each *patient's* contribution, so the
accountant's (epsilon, delta) holds at patient level with sample rate exactly q.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxr_fedsynth.common.errors import ConfigError


class PatientPoissonSampler:
    """Draws batches of image indices: Poisson over patients at rate ``sample_rate``, one image each."""

    def __init__(self, patient_ids: Sequence[str], *, sample_rate: float, rng: np.random.Generator) -> None:
        if not 0 < sample_rate <= 1:
            raise ConfigError(f"sample rate must be in (0, 1], got {sample_rate}")
        codes, uniques = pd.factorize(pd.Series(list(patient_ids), dtype=str))
        self.num_patients = len(uniques)
        self.sample_rate = sample_rate
        self._rng = rng
        self._order = np.argsort(codes, kind="stable")  # image indices grouped by patient
        self._counts = np.bincount(codes, minlength=self.num_patients)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]])

    @classmethod
    def for_batch_size(
        cls, patient_ids: Sequence[str], *, batch_size: int, rng: np.random.Generator
    ) -> "PatientPoissonSampler":
        """Sampler whose expected batch is ``batch_size`` patients (q = min(1, B / patients))."""
        num_patients = len(set(patient_ids))
        if num_patients == 0:
            raise ConfigError("cannot sample from a site with no patients")
        return cls(patient_ids, sample_rate=min(1.0, batch_size / num_patients), rng=rng)

    def sample(self) -> np.ndarray:
        """Image indices of one batch (may be empty: Poisson sampling)."""
        chosen = np.flatnonzero(self._rng.random(self.num_patients) < self.sample_rate)
        offsets = (self._rng.random(len(chosen)) * self._counts[chosen]).astype(np.int64)
        return self._order[self._starts[chosen] + offsets]
