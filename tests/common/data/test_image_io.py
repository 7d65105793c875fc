"""PNG/JPEG in every mode to 8-bit gray, and bad raster files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_fedsynth.common.data.image_io import read_grayscale
from cxr_fedsynth.common.errors import DataError

GRADIENT = np.tile(np.arange(256, dtype=np.uint8), (16, 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
def test_eight_bit_modes_keep_gray_values(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img_{mode}.png"
    Image.fromarray(GRADIENT).convert(mode).save(path)
    assert np.abs(read_grayscale(path).astype(int) - GRADIENT).max() <= 1


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, ..., 3] = 255  # top half opaque, bottom transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = read_grayscale(path)
    assert (out[:2] == 200).all() and (out[2:] == 0).all()


def test_sixteen_bit_png_is_min_max_scaled(tmp_path: Path) -> None:
    values = np.linspace(1000, 40000, 64).astype(np.uint16).reshape(8, 8)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    out = read_grayscale(path)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)


def test_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(GRADIENT).save(path, quality=95)
    assert np.abs(read_grayscale(path).astype(int) - GRADIENT).mean() < 2


def test_zero_byte_png(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(DataError, match=r"empty.png: file is empty \(0 bytes\)"):
        read_grayscale(path)


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.png: not a readable PNG/JPEG"):
        read_grayscale(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "scan.tiff"
    path.write_bytes(b"II*\x00")
    with pytest.raises(DataError, match="unsupported file type"):
        read_grayscale(path)
