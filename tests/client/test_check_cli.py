"""``cxr-client check`` as a hospital runs it: JSON report, clear errors and exit codes, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from cxr_fedsynth.client.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_reports_real_folder(cxr128_dir: Path) -> None:
    result = _run("check", "--data", str(cxr128_dir), "--image-size", "32", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images_readable"] == 2244 and report["patients"] == 1307
    assert report["class_counts"] == {"No Finding": 692, "Pneumonia": 859, "COVID-19": 344, "Other Finding": 349}
    assert report["original_size"]["max"] == [128, 128]


def test_check_lists_skips_with_reasons(cxr128_dir: Path, tmp_path: Path) -> None:
    table = pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False).sample(5, random_state=2)
    for name in table["Image Index"]:
        (tmp_path / name).write_bytes((cxr128_dir / name).read_bytes())
    (tmp_path / table["Image Index"].iloc[0]).write_bytes(b"")
    table.to_csv(tmp_path / "metadata.csv", index=False)
    result = _run("check", "--data", str(tmp_path), "--image-size", "32")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and "0 bytes" in result.stdout and table["Image Index"].iloc[0] in result.stdout


def test_unusable_folders_exit_2_with_the_fix(tmp_path: Path) -> None:
    result = _run("check", "--data", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "folder is empty" in result.stderr and "one sub-folder per class" in result.stderr
    (tmp_path / "labels.csv").write_text("Image Index,Labels\na.png,x\n")
    result = _run("check", "--data", str(tmp_path))
    assert result.returncode == 2 and "missing required column" in result.stderr
    result = _run("check", "--data", str(tmp_path), "--conditions", "coarse:Flu")
    assert result.returncode == 2 and "unknown condition" in result.stderr
