"""Labels from a table: NIH ``Data_Entry_2017.csv`` style, keyed by file name or by DICOM SOPInstanceUID."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxr_fedsynth.common.data.conditions import ConditionSet
from cxr_fedsynth.common.data.dicom_io import is_dicom_file, read_dicom_header
from cxr_fedsynth.common.data.image_io import is_supported_image
from cxr_fedsynth.common.data.patients import patient_id_for
from cxr_fedsynth.common.data.records import ImageRecord, SkippedFile
from cxr_fedsynth.common.errors import DataError

IMAGE_KEY = "Image Index"
UID_KEY = "SOPInstanceUID"
FINDINGS = "Finding Labels"
PATIENT = "Patient ID"
SOURCE = "Source"
#: Names a site may give its table; the first one found in the data folder is used when --labels is absent.
TABLE_NAMES = (
    "Data_Entry_2017.csv",
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "metadata.csv",
    "labels.csv",
)


def find_label_table(data_dir: Path) -> Path | None:
    """The label table inside a site folder, if it has one of the conventional names."""
    for name in TABLE_NAMES:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def read_label_table(path: Path) -> pd.DataFrame:
    """Read a label table as strings, checking the required columns and duplicate keys."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: label table cannot be read as CSV ({exc}); save it as UTF-8 CSV") from None
    table.columns = [c.strip() for c in table.columns]
    key = IMAGE_KEY if IMAGE_KEY in table.columns else UID_KEY if UID_KEY in table.columns else None
    if key is None or FINDINGS not in table.columns:
        missing = [c for c in (f"{IMAGE_KEY} (or {UID_KEY})", FINDINGS) if c.split(" (")[0] not in table.columns]
        raise DataError(
            f"{path}: label table is missing required column(s) {missing}; it needs '{IMAGE_KEY}' (file name "
            f"relative to the data folder) or '{UID_KEY}', and '{FINDINGS}' ('|'-separated findings), "
            f"optionally '{PATIENT}' (columns found: {list(table.columns)[:12]})"
        )
    duplicated = table[key][table[key].duplicated(keep=False)]
    if len(duplicated):
        rows = [int(i) + 2 for i in duplicated.index[:5]]
        raise DataError(
            f"{path}: {duplicated.nunique()} {key} value(s) appear on more than one row (e.g. "
            f"{duplicated.iloc[0]!r} on lines {rows}); keep one row per image"
        )
    return table


def _resolve_inside(data_dir: Path, name: str, table: Path, line: int) -> Path:
    candidate = Path(name)
    resolved = (data_dir / candidate).resolve()
    if candidate.is_absolute() or not resolved.is_relative_to(data_dir.resolve()):
        raise DataError(
            f"{table}: line {line}: {IMAGE_KEY} {name!r} points outside the data folder {data_dir}; "
            "use file names relative to the data folder"
        )
    return data_dir / candidate


def _uid_index(data_dir: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and is_dicom_file(p)):
        try:
            uid = str(read_dicom_header(path).get("SOPInstanceUID", ""))
        except DataError:
            continue  # unreadable files are reported when their row is resolved
        if uid:
            index.setdefault(uid, path)
    return index


def records_from_table(
    data_dir: Path,
    table_path: Path,
    conditions: ConditionSet,
    *,
    patient_pattern: re.Pattern[str] | None = None,
) -> tuple[list[ImageRecord], list[SkippedFile], str]:
    """Records for every table row whose file exists and whose findings map to a condition.

    Returns the records, the counted skips, and where patient IDs came from.
    """
    table = read_label_table(table_path)
    key = IMAGE_KEY if IMAGE_KEY in table.columns else UID_KEY
    uid_to_path = _uid_index(data_dir) if key == UID_KEY else {}
    has_patient = PATIENT in table.columns
    records: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    patient_sources: set[str] = set()
    for line, row in enumerate(table.itertuples(index=False), start=2):
        values = dict(zip(table.columns, row))
        name = values[key].strip()
        if key == UID_KEY:
            path = uid_to_path.get(name)
            if path is None:
                skipped.append(SkippedFile(f"{table_path}:{line}", f"no DICOM in the folder has SOPInstanceUID {name}"))
                continue
        else:
            path = _resolve_inside(data_dir, name, table_path, line)
            if not path.is_file():
                skipped.append(
                    SkippedFile(str(path), f"listed on line {line} of {table_path.name} but the file is missing")
                )
                continue
            if not is_supported_image(path):
                skipped.append(SkippedFile(str(path), "unsupported file type; use DICOM, PNG or JPEG"))
                continue
        findings = tuple(f.strip() for f in values[FINDINGS].split("|") if f.strip())
        condition = conditions.classify(findings)
        if condition is None:
            reason = (
                "empty Finding Labels"
                if not findings
                else f"findings {'|'.join(findings)} match no class of {conditions.name}"
            )
            skipped.append(SkippedFile(str(path), reason))
            continue
        patient, how = _patient_id(values.get(PATIENT, "") if has_patient else "", path, patient_pattern)
        patient_sources.add(how)
        records.append(ImageRecord(path, patient, condition, findings, values.get(SOURCE, "").strip()))
    return records, skipped, ", ".join(sorted(patient_sources)) or "none"


def _patient_id(from_table: str, path: Path, pattern: re.Pattern[str] | None) -> tuple[str, str]:
    if from_table.strip():
        return from_table.strip(), "label table"
    return patient_id_for(path, pattern)
