"""A real ``flwr run`` of the app: public pretraining, the sites' feature release and 2 rounds over 2 simulated
sites on tiny phantom images, on the test's own SuperLink; checks the run's final status (``flwr run --stream``
exits 0 on failure) and what it published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from cxr_fedsynth.common.data.phantoms import PhantomSpec, generate_phantom_dataset
from cxr_fedsynth.common.publish.artifacts import load_generator, sample
from tests.flower_processes import simulation_superlink

pytestmark = pytest.mark.slow


def test_flwr_run_two_rounds_two_sites_publishes_a_private_generator(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    public = generate_phantom_dataset(
        tmp_path / "public", PhantomSpec(num_patients=12, images_per_patient=2, image_size=32, seed=7)
    )
    run_config = (
        f"num-server-rounds=2 output-dir='{out}' run-name='e2e' image-size=32 phantom-patients=40 "
        f"local-steps=2 g-steps=2 batch-size=4 g-batch-size=8 g-width=8 d-width=8 latent-dim=16 cache-dir='{tmp_path / 'cache'}' "
        f"public-data='{public}' public-steps=2 public-batch-size=4 feature-matching-weight=10.0 feature-release-share=0.25 feature-shrinkage='pooled'"
    )
    with simulation_superlink(tmp_path / "flwr-home") as superlink:
        result = superlink.flwr(
            "run",
            "simulations/nih_split",
            "--stream",
            "--run-config",
            run_config,
            "--federation-config",
            "num-supernodes=2 client-resources-num-cpus=1",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        run_id = re.search(r"Successfully started run (\d+)", result.stdout).group(1)
        assert superlink.run_status(run_id) == "finished:completed", result.stdout[-3000:]
    run_dir = out / "e2e"
    card = json.loads((run_dir / "model_card.json").read_text())
    assert card["private"] and card["rounds_completed"] == 2
    assert sorted(s["name"] for s in card["sites"]) == ["sim-site-0", "sim-site-1"]
    assert all(0 < s["epsilon"] <= 10.0 and s["rounds"] == 2 for s in card["sites"])
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["round"].tolist() == [1, 2] and (metrics["sites_ok"] == 2).all()
    ledger = json.loads((run_dir / "ledgers" / "sim-site-0.json").read_text())
    assert [(e["round"], e["mechanism"]) for e in ledger["entries"]] == [
        (0, "gaussian-patient-count"),
        (0, "gaussian-class-feature-sums"),
        (1, "dp-sgd"),
        (2, "dp-sgd"),
    ]
    release = card["privacy"]["feature_release"]
    assert release["sites"] == 2 and release["epsilon_of_release_alone"] == 2.5 and release["noise_multiplier"] > 0
    assert release["shrinkage"] == "pooled" and all(
        0.0 <= k <= 1.0 for row in release["shrinkage_kept"].values() for k in row
    )
    assert all(row[0] == 1.0 for row in release["shrinkage_kept"].values()), "the pixel block is left as released"
    assert release["pixel_grid"] == 8 and release["embedding_dim"] == 2 * (8 + 16 + 32 + 8 * 8), (
        "default pixel block + D's 3 blocks"
    )
    assert release["count_share"] == 0.5
    assert (
        release["class_gap_scale"] == 2.0
        and release["class_gap_block"] == "pixels"
        and 0.0 <= release["class_gap_signal_share"] <= 1.0
    )
    assert release["class_gap_widened"] == (release["class_gap_signal_share"] >= 0.5)
    factors = [release["class_gap_factors"][name] for name in release["matched_classes"]]
    assert release["class_gap_cap"] == "median" and all(1.0 <= f <= 2.0 for f in factors)
    assert (max(factors, default=1.0) == 2.0) == release["class_gap_widened"], (
        "capped at the median: the classes nearest the pool are widened in full"
    )
    assert "of the released class gaps' energy in the pixel block is signal" in (run_dir / "MODEL_CARD.md").read_text()
    assert (
        "capped: no class moves further than the median class gap allows" in (run_dir / "MODEL_CARD.md").read_text()
    ) == release["class_gap_widened"]
    assert (
        "8 x 8 cell statistics" in (run_dir / "MODEL_CARD.md").read_text()
        and "the patient count (50.0%" in (run_dir / "MODEL_CARD.md").read_text()
    )
    assert "g_feature_distance" in metrics.columns
    approved = next(s["epsilon"] for s in card["sites"] if s["name"] == "sim-site-0")
    assert approved == 10.0 and 9.9 <= ledger["entries"][-1]["epsilon_after"] <= approved, "the card states the bound"
    assert card["data"]["patients_source"] == "noisy counts of the DP feature release" and "images" not in card["data"]
    generator = load_generator(run_dir)
    assert card["sampling"] == {"method": "plain", "keep": 1.0} and generator.discriminator is None, (
        "default: plain sampling, no discriminator published"
    )
    assert (
        not (run_dir / "discriminator.safetensors").exists()
        and "- sampling: plain" in (run_dir / "MODEL_CARD.md").read_text()
    )
    assert sample(generator, "COVID-19", 2, seed=0).shape == (2, 1, 32, 32)


def test_a_bad_run_config_fails_the_run_with_one_line_that_names_the_key(tmp_path: Path) -> None:
    with simulation_superlink(tmp_path / "flwr-home") as superlink:
        result = superlink.flwr(
            "run",
            "simulations/nih_split",
            "--stream",
            "--run-config",
            f"image-size=48 output-dir='{tmp_path}'",
            "--federation-config",
            "num-supernodes=1 client-resources-num-cpus=1",
        )
        run_id = re.search(r"Successfully started run (\d+)", result.stdout).group(1)
        listing = json.loads(superlink.flwr("list", "--run-id", run_id, "--format", "json", timeout=60).stdout)["runs"][
            0
        ]
    assert listing["status"] == "finished:failed", listing
    assert "image size 48 is not supported" in json.dumps(listing), listing
    output = result.stdout + result.stderr
    assert "run failed: image size 48 is not supported" in output and "Traceback" not in output, output[-3000:]
