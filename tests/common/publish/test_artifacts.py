"""Publishing and loading a generator: safetensors without pickle, a fresh process samples every class,
tampering is detected, and the sampling CLI writes PNG and DICOM marked synthetic."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from cxr_fedsynth.common.data.image_io import read_grayscale
from cxr_fedsynth.common.errors import ArtifactError
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.gan.super_resolution import SuperResolution, SuperResolutionSpec
from cxr_fedsynth.common.publish.artifacts import load_generator, publish_generator, sample
from tests.model_cards import minimal_card

CLASSES = ["No Finding", "Pneumonia", "COVID-19"]


@pytest.fixture
def published(tmp_path: Path) -> Path:
    generator, _ = build_models(GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8), seed=0)
    return publish_generator(tmp_path / "gen", generator, minimal_card(CLASSES, private=True), samples_per_class=2)


def test_weights_are_safetensors_and_load_in_a_fresh_process(published: Path) -> None:
    raw = (published / "generator.safetensors").read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + header_len])
    assert not any(k.startswith("_module.") for k in header if k != "__metadata__")
    code = (
        "import sys; from cxr_fedsynth.common.publish.artifacts import load_generator, sample;"
        f"g = load_generator({str(published)!r});"
        "print([tuple(sample(g, c, 3, seed=1).shape) for c in g.classes])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([(3, 1, 32, 32)] * 3)
    assert (published / "samples.png").is_file() and "Model card" in (published / "MODEL_CARD.md").read_text()


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_or_incomplete_generators_are_refused(published: Path) -> None:
    _flip_last_byte(published / "generator.safetensors")
    with pytest.raises(ArtifactError, match="SHA-256 does not match"):
        load_generator(published)
    (published / "model_card.json").unlink()
    with pytest.raises(ArtifactError, match="model_card.json: missing"):
        load_generator(published)


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from cxr_fedsynth.common.publish.generate_cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generate_cli_dicom_is_marked_synthetic_and_carries_no_identifiers(published: Path, tmp_path: Path) -> None:
    result = _generate(
        "--generator",
        str(published),
        "--class",
        "Pneumonia",
        "-n",
        "3",
        "--format",
        "dicom",
        "--out",
        str(tmp_path / "dcm"),
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "dcm").glob("*.dcm"))
    assert len(files) == 3
    datasets = [pydicom.dcmread(f) for f in files]
    uids = {ds.SOPInstanceUID for ds in datasets}
    assert len(uids) == 3 and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    for ds in datasets:
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
        assert ds.SeriesDescription.startswith("SYNTHETIC") and "SYNTHETIC" in ds.ImageComments
        assert ds.PatientID == "SYNTHETIC" and str(ds.PatientName) == "SYNTHETIC" and not ds.PatientBirthDate
        assert ds.pixel_array.shape == (32, 32)
    # Our own reader refuses them as training data unless told otherwise (Modality OT is not a radiograph).
    with pytest.raises(Exception, match="Modality is OT"):
        read_grayscale(files[0])


def test_generate_cli_png_with_labels(published: Path, tmp_path: Path) -> None:
    result = _generate("--generator", str(published), "-n", "2", "--out", str(tmp_path / "png"))
    assert result.returncode == 0, result.stderr
    labels = (tmp_path / "png" / "labels.csv").read_text().splitlines()
    assert len(labels) == 1 + 2 * len(CLASSES)
    first = tmp_path / "png" / labels[1].split(",")[0]
    with Image.open(first) as img:
        assert "SYNTHETIC" in img.info["Comment"] and np.asarray(img).shape == (32, 32)
    bad = _generate("--generator", str(published), "--class", "Flu", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "choose one of" in bad.stderr and "Traceback" not in bad.stderr


def test_not_private_generator_says_so(tmp_path: Path) -> None:
    generator, _ = build_models(GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8), seed=0)
    out = publish_generator(tmp_path / "np", generator, minimal_card(CLASSES, private=False), samples_per_class=1)
    assert "NOT PRIVATE" in (out / "MODEL_CARD.md").read_text()
    result = _generate("--generator", str(out), "-n", "1", "--format", "dicom", "--out", str(tmp_path / "d"))
    assert "NOT PRIVATE" in result.stdout
    assert "NOT PRIVATE" in pydicom.dcmread(next((tmp_path / "d").glob("*.dcm"))).ImageComments


def test_members_are_published_hashed_and_sampled_in_equal_shares(tmp_path: Path) -> None:
    arch = GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8)
    generator, member = build_models(arch, seed=0)[0], build_models(arch, seed=1)[0]
    folder = publish_generator(
        tmp_path / "gen", generator, minimal_card(CLASSES, private=True), samples_per_class=2, members=(member,)
    )
    card = json.loads((folder / "model_card.json").read_text())
    assert [m["file"] for m in card["members"]] == ["generator-member-1.safetensors"]
    assert "generator members: 2" in (folder / "MODEL_CARD.md").read_text()
    loaded = load_generator(folder)
    assert len(loaded.generators) == 2
    images = sample(loaded, "Pneumonia", 5, seed=4)
    assert images.shape == (5, 1, 32, 32)
    assert torch.equal(images[:3], sample(replace(loaded, members=()), "Pneumonia", 3, seed=4)), (
        "the run's own generator draws the first share, from the seed"
    )
    assert not torch.equal(images[3:], sample(replace(loaded, members=()), "Pneumonia", 5, seed=4)[3:]), (
        "the member draws the rest"
    )
    assert torch.equal(images, sample(loaded, "Pneumonia", 5, seed=4)), "reproducible from the seed"
    single = publish_generator(
        tmp_path / "single", generator, minimal_card(CLASSES, private=True), samples_per_class=1, members=(member,)
    )
    publish_generator(single, generator, minimal_card(CLASSES, private=True), samples_per_class=1)
    assert not list(single.glob("generator-member-*")) and load_generator(single).members == (), (
        "re-publishing drops stale members"
    )
    weights = folder / "generator-member-1.safetensors"
    _flip_last_byte(weights)
    with pytest.raises(ArtifactError, match="generator-member-1.safetensors: missing or its SHA-256 does not match"):
        load_generator(folder)
    weights.unlink()
    with pytest.raises(ArtifactError, match="generator-member-1.safetensors: missing"):
        load_generator(folder)


def test_super_resolution_enlarges_every_sample_and_is_checked_like_the_weights(tmp_path: Path) -> None:
    generator, _ = build_models(GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8), seed=0)
    network = SuperResolution(SuperResolutionSpec(2, width=4, depth=1))
    torch.nn.init.normal_(network.residual[-2].weight, std=0.1)  # not plain bicubic upsampling
    trained_on = {"name": "public phantoms", "images": 40, "image_size": 64}
    card = {**minimal_card(CLASSES, private=True), "super_resolution": {"trained_on": trained_on}}
    folder = publish_generator(tmp_path / "sr", generator, card, samples_per_class=1, super_resolution=network)
    loaded = load_generator(folder)
    assert loaded.image_size == 64 and loaded.card["super_resolution"]["trained_on"] == trained_on
    images = sample(loaded, "Pneumonia", 3, seed=2)
    assert images.shape == (3, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(images, network(sample(replace(loaded, super_resolution=None), "Pneumonia", 3, seed=2)))
    rendered = (folder / "MODEL_CARD.md").read_text()
    assert "64 x 64 px" in rendered and "G draws 32 px" in rendered
    result = _generate("--generator", str(folder), "--class", "COVID-19", "-n", "1", "--out", str(tmp_path / "png"))
    assert result.returncode == 0, result.stderr
    with Image.open(next((tmp_path / "png").glob("*.png"))) as img:
        assert np.asarray(img).shape == (64, 64)
    _flip_last_byte(folder / "super-resolution.safetensors")
    with pytest.raises(ArtifactError, match="super-resolution.safetensors: missing or its SHA-256 does not match"):
        load_generator(folder)
    publish_generator(folder, generator, minimal_card(CLASSES, private=True), samples_per_class=1)
    assert not (folder / "super-resolution.safetensors").exists() and load_generator(folder).image_size == 32, (
        "re-publishing without super-resolution drops the stale network"
    )
