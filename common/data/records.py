"""The unit the data layer hands on: one image of one patient with its condition, plus counted skips."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cxr_fedsynth.common.data.conditions import ConditionSet


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: where it is, whose it is, and which condition it shows."""

    path: Path
    patient_id: str
    condition: int
    findings: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class SkippedFile:
    """A file or table row that was left out, with the reason and the fix."""

    path: str
    reason: str


@dataclass
class SiteRecords:
    """What a site folder holds once read: records, skips, and how patient IDs were found."""

    records: list[ImageRecord]
    skipped: list[SkippedFile]
    conditions: ConditionSet
    label_source: str
    patient_id_source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def num_patients(self) -> int:
        return len({r.patient_id for r in self.records})

    def class_counts(self) -> dict[str, int]:
        counts = Counter(r.condition for r in self.records)
        return {name: counts.get(i, 0) for i, name in enumerate(self.conditions.names)}
