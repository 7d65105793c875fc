"""Read any supported image file (DICOM, PNG, JPEG) into a 2-D uint8 grayscale array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr_fedsynth.common.data.dicom_io import is_dicom_file, read_dicom
from cxr_fedsynth.common.errors import DataError

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


def is_supported_image(path: Path) -> bool:
    """True for files the data layer can read (by suffix, or DICOM magic for suffix-less files)."""
    suffix = path.suffix.lower()
    return suffix in RASTER_SUFFIXES or suffix in {".dcm", ".dicom"} or (suffix == "" and is_dicom_file(path))


def read_raster(path: Path) -> np.ndarray:
    """PNG/JPEG in any mode (L, RGB, RGBA, P, I;16, I, F) to uint8 gray; 16-bit and float are min-max scaled."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); copy it again from the source or remove it")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
                arr = np.asarray(img, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
                return np.round(scaled * 255.0).astype(np.uint8)
            if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, img)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: not a readable PNG/JPEG ({exc}); the file is corrupt or truncated: replace or remove it"
        ) from None


def read_grayscale(path: Path, *, allow_non_chest: bool = False) -> np.ndarray:
    """Decode one image file of any supported format to a 2-D uint8 array (bright = dense)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; fix the label table row or restore the file")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_raster(path)
    if is_dicom_file(path):
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty (0 bytes); copy it again from the source or remove it")
        return read_dicom(path, allow_non_chest=allow_non_chest)
    raise DataError(f"{path}: unsupported file type {path.suffix!r}; use DICOM, PNG or JPEG")
