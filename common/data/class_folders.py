"""Labels from the folder layout: one folder per class, optionally under train/ test/ val/ (Kaggle style)."""

from __future__ import annotations

import re
from pathlib import Path

from cxr_fedsynth.common.data.conditions import ConditionSet
from cxr_fedsynth.common.data.image_io import is_supported_image
from cxr_fedsynth.common.data.patients import patient_id_for
from cxr_fedsynth.common.data.records import ImageRecord, SkippedFile

SPLIT_FOLDERS = frozenset({"train", "test", "val", "valid", "validation"})


def class_folders(data_dir: Path) -> list[Path]:
    """The class folders of a site: direct sub-folders, or those under train/test/val split folders."""
    folders: list[Path] = []
    for child in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name.lower() in SPLIT_FOLDERS:
            folders.extend(sorted(p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")))
        else:
            folders.append(child)
    return folders


def records_from_class_folders(
    data_dir: Path, conditions: ConditionSet, *, patient_pattern: re.Pattern[str] | None = None
) -> tuple[list[ImageRecord], list[SkippedFile], str]:
    """Records for every image in a folder whose name maps to a class (name or alias, case-insensitive)."""
    records: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    patient_sources: set[str] = set()
    for folder in class_folders(data_dir):
        condition = conditions.classify_folder(folder.name)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if condition is None:
            skipped.extend(
                SkippedFile(
                    str(p),
                    f"folder {folder.name!r} matches no class of {conditions.name} {conditions.names}; "
                    "rename the folder or add an alias in the condition YAML",
                )
                for p in files
            )
            continue
        for path in files:
            if not is_supported_image(path):
                skipped.append(SkippedFile(str(path), "unsupported file type; use DICOM, PNG or JPEG"))
                continue
            patient, how = patient_id_for(path, patient_pattern)
            patient_sources.add(how)
            records.append(ImageRecord(path, patient, condition, (conditions.names[condition],), folder.parent.name))
    return records, skipped, ", ".join(sorted(patient_sources)) or "none"
