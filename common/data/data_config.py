"""Typed settings for reading a site's data (from CLI options or the Flower run config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fedsynth.common.data.conditions import ConditionSet, load_condition_set
from cxr_fedsynth.common.data.preprocess import check_image_size


@dataclass(frozen=True)
class DataConfig:
    """Where a site's images are and how they are read and preprocessed."""

    data_dir: Path
    labels: Path | None = None
    conditions: str = "coarse"
    image_size: int = 64
    cache_dir: Path | None = None
    allow_non_chest: bool = False
    patient_pattern: str | None = None

    def __post_init__(self) -> None:
        check_image_size(self.image_size)

    def condition_set(self) -> ConditionSet:
        """The condition set this config names (built-in name, YAML path, optional ``:A,B`` subset)."""
        return load_condition_set(self.conditions)
