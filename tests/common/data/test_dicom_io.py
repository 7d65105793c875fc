"""DICOM decoding on every real sample, LUT/window maths on a constructed file, and every bad-DICOM case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from cxr_fedsynth.common.data.dicom_io import read_dicom
from cxr_fedsynth.common.data.image_io import read_grayscale
from cxr_fedsynth.common.errors import DataError

SIIM = "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
SIIM_MONO1 = "siim_Fake_MONOHR1.dcm"
NIH_GCP = "nih_gcp_1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
CR_MONO1 = "CR-MONO1-10-chest.dcm"


def _spine_minus_lungs(image: np.ndarray) -> float:
    """Mean of the central column band minus the mean of both lung fields: > 0 for a correctly shown chest."""
    h, w = image.shape
    rows = slice(int(0.3 * h), int(0.6 * h))
    spine = image[rows, int(0.47 * w) : int(0.53 * w)].mean()
    lungs = np.concatenate([image[rows, int(0.2 * w) : int(0.3 * w)], image[rows, int(0.7 * w) : int(0.8 * w)]], axis=1)
    return float(spine - lungs.mean())


@pytest.mark.parametrize("name, shape", [(SIIM, (1024, 1024)), (NIH_GCP, (1024, 1024)), (CR_MONO1, (440, 440))])
def test_real_samples_decode_to_full_range_with_bright_spine(
    dicom_dir: Path, name: str, shape: tuple[int, int]
) -> None:
    image = read_grayscale(dicom_dir / name)
    assert image.shape == shape and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    assert _spine_minus_lungs(image) > 20, "a chest radiograph shows the spine brighter than the lung fields"


def test_monochrome1_is_inverted(dicom_dir: Path) -> None:
    normal = read_grayscale(dicom_dir / SIIM).astype(int)
    flagged_mono1 = read_grayscale(dicom_dir / SIIM_MONO1).astype(int)
    # Same stored pixels, only PhotometricInterpretation differs: the reader must show the inverse.
    assert np.abs(normal + flagged_mono1 - 255).max() <= 1


def test_file_without_preamble_or_meta_is_decoded_and_inverted(dicom_dir: Path) -> None:
    raw = pydicom.dcmread(dicom_dir / CR_MONO1, force=True)
    assert "TransferSyntaxUID" not in getattr(raw, "file_meta", {})
    raw.file_meta = pydicom.dataset.FileMetaDataset()
    raw.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    stored = raw.pixel_array.astype(float)
    assert stored.max() <= 1023  # 10-bit data in 16-bit words
    image = read_grayscale(dicom_dir / CR_MONO1).astype(float)
    # MONOCHROME1: high stored values are shown dark, so display and stored values anti-correlate.
    assert np.corrcoef(stored.ravel(), image.ravel())[0, 1] < -0.9


def _base_dataset(dicom_dir: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(dicom_dir / NIH_GCP)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_modality_lut_and_window_applied_to_12_bit_data(dicom_dir: Path, tmp_path: Path) -> None:
    ds = _base_dataset(dicom_dir)
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (256, 1))  # 256 x 256, 0..4080
    ds.Rows, ds.Columns = ramp.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000  # modality values -1000 .. 7160
    ds.WindowCenter, ds.WindowWidth = 3000, 2000  # displays 2000 .. 4000
    ds.PixelData = ramp.tobytes()
    path = tmp_path / "ramp.dcm"
    ds.save_as(path, enforce_file_format=True)
    image = read_dicom(path)
    modality = ramp.astype(float) * 2 - 1000
    assert image[0][modality[0] < 1990].max() == 0
    assert image[0][modality[0] > 4010].min() == 255
    inside = (modality[0] > 2100) & (modality[0] < 3900)
    expected = (modality[0][inside] - 2000) / 2000 * 255
    assert np.abs(image[0][inside] - expected).max() < 4


@pytest.mark.parametrize(
    "tag, value, words",
    [
        ("Modality", "CT", "Modality is CT"),
        ("Modality", "MR", "Modality is MR"),
        ("BodyPartExamined", "HEAD", "BodyPartExamined is HEAD"),
    ],
)
def test_non_chest_refused_unless_overridden(dicom_dir: Path, tmp_path: Path, tag: str, value: str, words: str) -> None:
    ds = _base_dataset(dicom_dir)
    setattr(ds, tag, value)
    path = tmp_path / "other.dcm"
    ds.save_as(path)
    with pytest.raises(DataError) as err:
        read_grayscale(path)
    assert str(path) in str(err.value) and words in str(err.value) and "--allow-non-chest" in str(err.value)
    assert read_grayscale(path, allow_non_chest=True).shape == (1024, 1024)


def test_truncated_dicom_names_the_file(dicom_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.dcm"
    path.write_bytes((dicom_dir / NIH_GCP).read_bytes()[:300_000])
    with pytest.raises(DataError, match="truncated.dcm"):
        read_grayscale(path)


def test_dicom_without_pixel_data(dicom_dir: Path, tmp_path: Path) -> None:
    ds = _base_dataset(dicom_dir)
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(DataError, match="no pixel data"):
        read_grayscale(path)


def test_garbage_with_dcm_suffix(tmp_path: Path) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"this is not dicom at all" * 10)
    with pytest.raises(DataError, match="garbage.dcm"):
        read_grayscale(path)
