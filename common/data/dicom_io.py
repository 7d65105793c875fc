"""Read chest radiographs from DICOM files into 8-bit grayscale, refusing what is not a chest X-ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ImplicitVRLittleEndian

from cxr_fedsynth.common.errors import DataError

#: Projection radiography modalities (CR computed, DX digital, RG radiographic, DR legacy spelling).
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "DR"})
#: Body parts accepted when the tag is present (absent tags are accepted: many exports drop it).
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "TORSO", "PORT CHEST", "CHEST PA", "CHEST AP"})
OVERRIDE_HINT = "if it really is a chest radiograph, pass --allow-non-chest (or allow-non-chest=true)"


def is_dicom_file(path: Path) -> bool:
    """True for ``.dcm`` files and for files carrying the DICM preamble magic."""
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_header(path: Path) -> pydicom.Dataset:
    """Header only (no pixels); tolerates files with no preamble or file meta."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc}); re-export it from the PACS or remove it") from None


def check_chest_radiograph(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse CT, MR and other non-radiograph or non-chest series, naming the tag that decided."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise DataError(
            f"{path}: Modality is {modality}, not a chest radiograph (expected one of "
            f"{sorted(RADIOGRAPH_MODALITIES)}); remove it from the site folder, or {OVERRIDE_HINT}"
        )
    body_part = str(ds.get("BodyPartExamined", "") or "").upper().strip()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise DataError(
            f"{path}: BodyPartExamined is {body_part}, not the chest; remove it from the site folder, or {OVERRIDE_HINT}"
        )


def _pixel_array(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM has no pixel data (a report or structured document?); remove it")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # Raw dataset with no file meta (old CR exports): implicit VR little endian is the DICOM default.
        ds.file_meta = ds.get("file_meta", pydicom.dataset.FileMetaDataset())
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated or undecodable pixel data
        raise DataError(
            f"{path}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is truncated or uses a "
            "compression without an installed decoder: re-export it uncompressed"
        ) from None


def read_dicom(path: Path, *, allow_non_chest: bool = False) -> np.ndarray:
    """Decode a DICOM radiograph to a 2-D uint8 array where bright = dense (MONOCHROME2 convention).

    Applies the modality LUT (rescale slope/intercept), the VOI LUT or window, inverts MONOCHROME1, converts
    colour to gray and scales the displayed range to 0-255. Works for 8 to 16-bit data, JPEG-baseline
    compressed pixel data (via Pillow) and files without preamble or file meta.
    """
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc}); re-export it from the PACS or remove it") from None
    if not allow_non_chest:
        check_chest_radiograph(ds, path)
    raw = _pixel_array(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3:
        raw = raw.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        photometric = "MONOCHROME2"
    elif raw.ndim != 2:
        raise DataError(
            f"{path}: has {raw.shape[0]} frames; a chest radiograph is one 2-D image (export single frames)"
        )
    values = apply_modality_lut(raw, ds) if raw.dtype.kind in "iu" else raw
    values = apply_voi_lut(values, ds) if ("WindowCenter" in ds or "VOILUTSequence" in ds) else values
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise DataError(f"{path}: every pixel has the same value ({lo}); the image is blank: remove it")
    unit = (values - lo) / (hi - lo)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.round(unit * 255.0).astype(np.uint8)
