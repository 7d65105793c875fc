"""Read a site folder into records: picks the label source (table or class folders) and checks the folder."""

from __future__ import annotations

import os
from pathlib import Path

from cxr_fedsynth.common.data.class_folders import class_folders, records_from_class_folders
from cxr_fedsynth.common.data.conditions import ConditionSet
from cxr_fedsynth.common.data.image_cache import SiteImages, load_site_images
from cxr_fedsynth.common.data.label_tables import find_label_table, records_from_table
from cxr_fedsynth.common.data.patients import PER_IMAGE, compile_patient_pattern
from cxr_fedsynth.common.data.records import SiteRecords
from cxr_fedsynth.common.errors import DataError


def _check_folder(data_dir: Path) -> None:
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data folder does not exist; pass the folder that holds the site's X-rays")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file, not a folder; pass the folder that holds the site's X-rays")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"{data_dir}: folder is not readable by this user; fix its permissions (chmod/chown)")
    try:
        next(data_dir.iterdir())
    except StopIteration:
        raise DataError(
            f"{data_dir}: folder is empty; put DICOM/PNG/JPEG files there with a label table "
            "(Data_Entry_2017.csv style) or one sub-folder per class"
        ) from None
    except PermissionError:
        raise DataError(f"{data_dir}: folder is not readable by this user; fix its permissions (chmod/chown)") from None


def read_site(
    data_dir: Path,
    conditions: ConditionSet,
    *,
    labels: Path | None = None,
    patient_pattern: str | None = None,
) -> SiteRecords:
    """Find every labelled image of a site folder (nothing is decoded yet).

    Labels come from ``labels`` when given, else from a conventionally named table in the folder, else from
    class folders. Raises DataError when no usable image is found, naming the folder and the fix.
    """
    data_dir = Path(data_dir)
    _check_folder(data_dir)
    pattern = compile_patient_pattern(patient_pattern)
    table = Path(labels) if labels else find_label_table(data_dir)
    if table is not None:
        if not table.is_file():
            raise DataError(f"{table}: label table not found; pass an existing CSV with --labels")
        records, skipped, patient_source = records_from_table(data_dir, table, conditions, patient_pattern=pattern)
        label_source = f"table {table.name}"
    elif class_folders(data_dir):
        records, skipped, patient_source = records_from_class_folders(data_dir, conditions, patient_pattern=pattern)
        label_source = "class folders"
    else:
        raise DataError(
            f"{data_dir}: no labels found: add a label table (Data_Entry_2017.csv or metadata.csv with "
            "'Image Index' and 'Finding Labels' columns, or pass --labels CSV) or put images in one folder per class"
        )
    if not records:
        detail = f" ({len(skipped)} skipped, e.g. {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise DataError(f"{data_dir}: no usable labelled images found with labels from {label_source}{detail}")
    warnings = []
    if PER_IMAGE in patient_source:
        warnings.append(
            "some images have no patient ID: each counts as its own patient, so DP protects images rather than "
            "patients for them; add a 'Patient ID' column or pass --patient-pattern"
        )
    return SiteRecords(records, skipped, conditions, label_source, patient_source, warnings)


def load_labelled_images(
    data_dir: Path,
    conditions: ConditionSet,
    *,
    labels: Path | None,
    image_size: int,
    cache_dir: Path | None = None,
    show_progress: bool = True,
) -> SiteImages:
    """Read a labelled folder and decode its images at ``image_size`` (through the cache)."""
    site = read_site(data_dir, conditions, labels=labels)
    return load_site_images(site.records, image_size=image_size, cache_dir=cache_dir, show_progress=show_progress)
