"""Where a patient ID comes from when the label table has none (the documented fallback rule).

1. DICOM files: the PatientID tag.
2. A user-supplied regular expression on the file name (``--patient-pattern``), first group or whole match,
   e.g. ``^(person\\d+)_`` for the Kaggle pneumonia layout.
3. Otherwise each image is its own patient. DP then protects images, not patients, if one patient has several
   images: ``cxr-client check`` warns and the model card states the unit.
"""

from __future__ import annotations

import re
from pathlib import Path

from cxr_fedsynth.common.data.dicom_io import is_dicom_file, read_dicom_header
from cxr_fedsynth.common.errors import ConfigError, DataError

FROM_DICOM = "DICOM PatientID"
FROM_PATTERN = "file-name pattern"
PER_IMAGE = "one patient per image (no patient ID found)"


def compile_patient_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Compile a patient-ID regex, with a ConfigError that shows the pattern."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"patient pattern {pattern!r} is not a valid regular expression ({exc})") from None


def patient_id_for(path: Path, pattern: re.Pattern[str] | None) -> tuple[str, str]:
    """Patient ID for an image without one in a label table, and which rule gave it."""
    if is_dicom_file(path):
        try:
            patient = str(read_dicom_header(path).get("PatientID", "") or "").strip()
        except DataError:
            patient = ""  # the decode step reports the unreadable file
        if patient:
            return patient, FROM_DICOM
    if pattern is not None:
        match = pattern.search(path.name)
        if match:
            return (match.group(1) if match.groups() else match.group(0)), FROM_PATTERN
    return f"image:{path.name}", PER_IMAGE
