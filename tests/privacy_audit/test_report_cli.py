"""``privacy-audit report`` end to end on real X-rays: a memorizing 'generator' fails, an independent one
passes, exit codes follow the policy, and the HTML verdict table is visible in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from tests.privacy_audit.audit_fixtures import patient_groups, site_folder, synthetic_folder, tiny_generator


@pytest.fixture(scope="module")
def audit_inputs(cxr128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audit")
    train, holdout = patient_groups(cxr128_dir, [80, 80])
    return {
        "train": site_folder(cxr128_dir, train, root / "train"),
        "holdout": site_folder(cxr128_dir, holdout, root / "holdout"),
        "replay": synthetic_folder(cxr128_dir, train, root / "replay", noise=0.02, size=32),
        "generator": tiny_generator(root / "generator"),
        "generator-x2": tiny_generator(root / "generator-x2", size=64, super_resolution=2),
        "root": root,
    }


def _audit(inputs: dict[str, Path], out: Path, *extra: str) -> tuple[int, dict, str]:
    args = [
        "report",
        "--generator",
        str(inputs["generator"]),
        "--train",
        str(inputs["train"]),
        "--holdout",
        str(inputs["holdout"]),
        "--out",
        str(out),
        *extra,
    ]
    result = subprocess.run(
        [sys.executable, "-c", "from cxr_fedsynth.privacy_audit.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    return result.returncode, report, result.stdout + result.stderr


def test_memorizing_generator_fails_with_copies_and_auc_near_one(audit_inputs: dict[str, Path]) -> None:
    code, report, output = _audit(
        audit_inputs, audit_inputs["root"] / "r-replay", "--synthetic", str(audit_inputs["replay"])
    )
    assert code == 1, output
    assert report["memorization"]["overall"]["pixel"]["copies"] >= 70
    gan_leaks = next(a for a in report["attacks"]["overall"] if a["name"].startswith("GAN-Leaks (full"))
    assert gan_leaks["auc"] > 0.95 and gan_leaks["empirical_epsilon"] > report["claimed_epsilon"]
    html = (audit_inputs["root"] / "r-replay" / "report.html").read_text()
    assert "FAIL" in html and "data:image/png;base64" in html
    assert "REAL TRAINING IMAGES SHOWN" not in html  # no real image without --show-real


def test_independent_generator_passes(audit_inputs: dict[str, Path]) -> None:
    # A generator publishing 64 px images through super-resolution x2: its D sees 32 px. The server checkpoint's
    # layout ("discriminator.*" keys) for the white-box LOGAN attack.
    _, discriminator = build_models(GanArchitecture(image_size=32, num_classes=4, latent_dim=8, g_width=8), seed=1)
    checkpoint = audit_inputs["root"] / "checkpoint.safetensors"
    save_file({f"discriminator.{k}": v.contiguous() for k, v in discriminator.state_dict().items()}, str(checkpoint))
    inputs = dict(audit_inputs, generator=audit_inputs["generator-x2"])
    code, report, output = _audit(
        inputs, audit_inputs["root"] / "r-indep", "--samples", "200", "--discriminator", str(checkpoint)
    )
    assert code == 0, output
    names = [a["name"] for a in report["attacks"]["overall"]]
    assert any(n.startswith("LOGAN") for n in names) and len(names) == 5
    assert all(0.3 < a["auc"] < 0.7 for a in report["attacks"]["overall"])
    assert report["passed"] and report["inputs"]["train"]["sha256"] and report["generator"]["weights_sha256"]


def test_bad_inputs_exit_2(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    same = dict(audit_inputs, holdout=audit_inputs["train"])
    code, _, output = _audit(same, tmp_path / "o")
    assert code == 2 and "both the training and the holdout set" in output and "Traceback" not in output
    code, _, output = _audit(dict(audit_inputs, generator=tmp_path), tmp_path / "o2")
    assert code == 2 and "model_card.json: missing" in output


def test_html_verdict_table_is_visible_in_headless_chromium(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CXR_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required (CXR_REQUIRE_CHROMIUM=1); .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = audit_inputs["root"] / "r-replay"
    if not (out / "report.html").is_file():
        _audit(audit_inputs, out, "--synthetic", str(audit_inputs["replay"]))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120
    )
    assert "Overall verdict" in dom.stdout and "near-copies (pixel)" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,900", (out / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    import numpy as np
    from PIL import Image

    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    fail_red = ((np.abs(pixels - [0xF8, 0xD0, 0xD0]).sum(1)) < 12).mean()
    assert fail_red > 0.02, "the red FAIL rows of the verdict table must be visible in the first screen"
