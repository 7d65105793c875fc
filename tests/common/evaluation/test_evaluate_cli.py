"""``cxr-evaluate`` on real X-rays: the real-data classifier works, an untrained generator is judged useless,
the DP-SGD baselines (from scratch and public-pretrained) are trained at the generator's epsilon, and the
public-only baseline works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import save_file

from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.publish.artifacts import file_sha256
from tests.privacy_audit.audit_fixtures import patient_groups, site_folder, tiny_generator


def test_evaluate_untrained_generator_against_real_patients(cxr128_dir: Path, tmp_path: Path) -> None:
    train, test, public = patient_groups(cxr128_dir, [240, 120, 120], seed=3)
    # A generator published without a discriminator, guided at evaluation time by one in the server checkpoint's layout.
    _, discriminator = build_models(GanArchitecture(image_size=32, num_classes=4, latent_dim=8, g_width=8), seed=1)
    checkpoint = tmp_path / "checkpoint.safetensors"
    save_file({f"discriminator.{k}": v.contiguous() for k, v in discriminator.state_dict().items()}, str(checkpoint))
    args = [
        "--generator",
        str(tiny_generator(tmp_path / "gen")),
        "--real-train",
        str(site_folder(cxr128_dir, train, tmp_path / "train")),
        "--real-test",
        str(site_folder(cxr128_dir, test, tmp_path / "test")),
        "--out",
        str(tmp_path / "out"),
        "--samples-per-class",
        "40",
        "--epochs",
        "4",
        "--discriminator",
        str(checkpoint),
        "--sampling-keep",
        "0.5",
        "--encoder",
        str(tmp_path / "encoder.safetensors"),
        "--public",
        str(site_folder(cxr128_dir, public, tmp_path / "public")),
        "--encoder-steps",
        "20",
        "--realism-draws",
        "2",
        "--show-real",
    ]
    result = subprocess.run(
        [sys.executable, "-c", "from cxr_fedsynth.common.evaluation.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert report["data"]["sampling_keep"] == 0.5
    classifiers = report["classifiers"]
    trtr = classifiers["TRTR (train real, test real)"]
    tstr = classifiers["TSTR (train synthetic, test real)"]
    dp = next(v for k, v in classifiers.items() if k.startswith("DP-SGD direct"))
    public_only = classifiers["public only (no privacy cost)"]
    fine_tuned = next(v for k, v in classifiers.items() if k.startswith("public-pretrained DP-SGD"))
    assert trtr["macro_auroc"] > 0.75, "a classifier trained on real images must work on real test patients"
    assert tstr["macro_auroc"] < 0.7, "an untrained generator's images cannot teach anything"
    assert classifiers["TRTS (train real, test synthetic)"]["macro_auroc"] < 0.7, "nor carry their labels"
    assert dp["epsilon_spent"] <= 1.0 + 1e-6 and fine_tuned["epsilon_spent"] <= 1.0 + 1e-6  # the generator's epsilon
    assert public_only["macro_auroc"] > 0.7, "120 public patients already teach a classifier (no privacy cost)"
    assert fine_tuned["macro_auroc"] > dp["macro_auroc"], "public pretraining is worth having before DP-SGD"
    assert report["data"]["public_images"] > 0
    assert "does NOT beat the strongest alternative" in report["baseline_verdict"]
    assert report["classifier_two_sample_accuracy"] > 0.8 and report["classifier_two_sample_auroc"] > 0.9, (
        "an untrained G's images are easy to tell apart"
    )
    realism = report["realism"]
    assert realism["encoder"]["sha256"] == file_sha256(tmp_path / "encoder.safetensors")
    assert realism["synthetic"]["linear_probe_auroc"] > 0.9, "an untrained G's images are told apart on frozen features"
    assert realism["real_control"]["linear_probe_auroc"] < realism["synthetic"]["linear_probe_auroc"] - 0.2
    assert realism["synthetic"]["frechet_distance"] > realism["real_control"]["frechet_distance"]
    other = realism["other_source_real"]  # the public real X-rays: real images of another population
    assert other["linear_probe_auroc"] < realism["synthetic"]["linear_probe_auroc"]
    assert realism["images"]["other_source"] > 0
    assert len(realism["draws"]["synthetic"]) == len(realism["draws"]["other_source_real"]) == 2
    assert "mean of 2 draws" in result.stdout
    page = (tmp_path / "out" / "evaluation.html").read_text()
    assert (
        "Is the synthetic data worth using?" in page and "real vs real (control)" in page and "another source" in page
    )
    assert "2 draws: their mean +- standard deviation" in page and " +- " in page
    assert 'alt="real held-out images"' in page, "--show-real puts the real held-out grid beside the synthetic one"
