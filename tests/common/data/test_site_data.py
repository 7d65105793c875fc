"""Reading a site folder: NIH-style tables, class folders, DICOM + UID table, and every bad-input case."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.patients import PER_IMAGE
from cxr_fedsynth.common.data.site_data import read_site
from cxr_fedsynth.common.errors import ConfigError, DataError

COARSE = load_condition_set("coarse")


def _small_site(cxr128_dir: Path, tmp_path: Path, n: int = 12) -> tuple[Path, pd.DataFrame]:
    """A site folder with n real images and an NIH-style table (copied into tmp, never into the repo)."""
    table = (
        pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False)
        .sample(n, random_state=0)
        .reset_index(drop=True)
    )
    site = tmp_path / "site"
    site.mkdir()
    for name in table["Image Index"]:
        shutil.copy(cxr128_dir / name, site / name)
    table[["Image Index", "Finding Labels", "Patient ID"]].to_csv(site / "Data_Entry_2017.csv", index=False)
    return site, table


def test_real_table_matches_the_published_coarse_labels(cxr128_dir: Path) -> None:
    site = read_site(cxr128_dir, COARSE)
    table = pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(site.records) == len(table) == 2244 and not site.skipped
    expected = dict(zip(table["Image Index"], table["Coarse Label"]))
    assert all(COARSE.names[r.condition] == expected[r.path.name] for r in site.records)
    assert site.num_patients == 1307 and site.patient_id_source == "label table"


def test_missing_required_column(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    pd.DataFrame({"Image Index": ["a.png"], "Labels": ["No Finding"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(
        DataError, match=r"labels.csv: label table is missing required column\(s\) \['Finding Labels'\]"
    ):
        read_site(tmp_path, COARSE)


def test_duplicate_rows_are_refused_with_line_numbers(cxr128_dir: Path, tmp_path: Path) -> None:
    site, table = _small_site(cxr128_dir, tmp_path, 3)
    doubled = pd.concat([table, table.head(1)])[["Image Index", "Finding Labels", "Patient ID"]]
    doubled.to_csv(site / "Data_Entry_2017.csv", index=False)
    with pytest.raises(DataError, match=r"appear on more than one row .* lines \[2, 5\]\); keep one row per image"):
        read_site(site, COARSE)


def test_row_whose_file_is_missing_is_a_counted_skip(cxr128_dir: Path, tmp_path: Path) -> None:
    site, table = _small_site(cxr128_dir, tmp_path, 4)
    (site / table["Image Index"].iloc[1]).unlink()
    result = read_site(site, COARSE)
    assert len(result.records) == 3
    assert len(result.skipped) == 1 and "listed on line 3" in result.skipped[0].reason


@pytest.mark.parametrize("escape", ["../outside.png", "/etc/passwd", "sub/../../x.png"])
def test_image_index_escaping_the_folder_is_refused(cxr128_dir: Path, tmp_path: Path, escape: str) -> None:
    site, table = _small_site(cxr128_dir, tmp_path, 2)
    table.loc[0, "Image Index"] = escape
    table[["Image Index", "Finding Labels", "Patient ID"]].to_csv(site / "Data_Entry_2017.csv", index=False)
    with pytest.raises(DataError, match="points outside the data folder"):
        read_site(site, COARSE)


def test_rows_matching_no_class_are_skipped(cxr128_dir: Path, tmp_path: Path) -> None:
    site, _ = _small_site(cxr128_dir, tmp_path, 12)
    subset = load_condition_set("coarse:No Finding,Pneumonia")
    result = read_site(site, subset)
    assert all(subset.names[r.condition] in {"No Finding", "Pneumonia"} for r in result.records)
    assert all("match no class" in s.reason for s in result.skipped)
    assert len(result.records) + len(result.skipped) == 12


def test_unknown_condition_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown condition\(s\) \['Flu'\]"):
        load_condition_set("coarse:Pneumonia,Flu")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder is empty"):
        read_site(tmp_path, COARSE)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_site(tmp_path / "nope", COARSE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder, so permissions cannot make one unreadable")
def test_unreadable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.png").write_bytes(b"x")
    locked.chmod(0)
    try:
        with pytest.raises(DataError, match="not readable"):
            read_site(locked, COARSE)
    finally:
        locked.chmod(0o755)


def test_folder_without_labels(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no labels found"):
        read_site(tmp_path, COARSE)


def test_kaggle_class_folder_layout(cxr128_dir: Path, tmp_path: Path) -> None:
    table = pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False)
    kermany = table[table["Source"].str.startswith("Kermany")].head(16)
    for i, row in enumerate(kermany.itertuples()):
        folder = tmp_path / ("train" if i % 2 else "test") / ("NORMAL" if row[3] == "No Finding" else "PNEUMONIA")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(cxr128_dir / row[1], folder / row[1].removeprefix("kermany_"))
    (tmp_path / "train" / "XRAYS_OF_CATS").mkdir()
    (tmp_path / "train" / "XRAYS_OF_CATS" / "cat.png").write_bytes(b"meow")
    result = read_site(tmp_path, COARSE, patient_pattern=r"^(person\d+)_")
    assert result.label_source == "class folders" and len(result.records) == 16
    for rec in result.records:
        assert COARSE.names[rec.condition] == ("No Finding" if rec.path.parent.name == "NORMAL" else "Pneumonia")
    pneumonia = [r for r in result.records if r.path.parent.name == "PNEUMONIA"]
    assert all(r.patient_id.startswith("person") for r in pneumonia)
    normals = [r for r in result.records if r.path.parent.name == "NORMAL"]
    assert all(r.patient_id.startswith("image:") for r in normals)  # documented fallback
    assert PER_IMAGE in result.patient_id_source and result.warnings
    assert len(result.skipped) == 1 and "XRAYS_OF_CATS" in result.skipped[0].reason


def test_dicoms_with_table_keyed_by_sop_instance_uid(dicom_dir: Path, tmp_path: Path) -> None:
    for name in (
        "nih_gcp_1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
        "CR-MONO1-10-chest.dcm",
    ):
        shutil.copy(dicom_dir / name, tmp_path / name)
    uids = [
        str(pydicom.dcmread(p, force=True, stop_before_pixels=True).SOPInstanceUID)
        for p in sorted(tmp_path.glob("*.dcm"))
    ]
    pd.DataFrame(
        {"SOPInstanceUID": uids + ["1.2.3.4"], "Finding Labels": ["Effusion", "No Finding", "Pneumonia"]}
    ).to_csv(tmp_path / "labels.csv", index=False)
    result = read_site(tmp_path, COARSE)
    by_name = {r.path.name: r for r in result.records}
    assert COARSE.names[by_name["CR-MONO1-10-chest.dcm"].condition] == "Other Finding"
    gcp = next(r for n, r in by_name.items() if n.startswith("nih_gcp"))
    assert gcp.patient_id == "Covid0000"  # from the DICOM PatientID tag
    assert len(result.skipped) == 1 and "1.2.3.4" in result.skipped[0].reason
