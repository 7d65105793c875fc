"""Folders for audit tests: disjoint patient groups from the real cxr128 set, and synthetic sets built from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.gan.super_resolution import SuperResolution, SuperResolutionSpec
from cxr_fedsynth.common.publish.artifacts import publish_generator
from tests.model_cards import minimal_card

CLASSES = ["No Finding", "Pneumonia", "COVID-19", "Other Finding"]


def patient_groups(cxr128: Path, sizes: list[int], *, seed: int = 0) -> list[pd.DataFrame]:
    """Disjoint groups of whole patients (one image each keeps the fixture small)."""
    table = pd.read_csv(cxr128 / "metadata.csv", dtype=str, keep_default_na=False)
    table = table[table["Upsampled"] == "False"].drop_duplicates("Patient ID")
    table = table.sample(frac=1.0, random_state=seed)
    out, start = [], 0
    for size in sizes:
        out.append(table.iloc[start : start + size])
        start += size
    return out


def site_folder(cxr128: Path, rows: pd.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in rows["Image Index"]:
        shutil.copy(cxr128 / name, folder / name)
    rows[["Image Index", "Finding Labels", "Patient ID"]].to_csv(folder / "metadata.csv", index=False)
    return folder


def synthetic_folder(cxr128: Path, rows: pd.DataFrame, folder: Path, *, noise: float, size: int, seed: int = 0) -> Path:
    """Images derived from ``rows`` (resized to ``size``, plus Gaussian noise), labelled like generator output."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines = ["Image Index,Finding Labels"]
    for i, row in enumerate(rows.itertuples()):
        with Image.open(cxr128 / row[1]) as img:
            arr = np.asarray(img.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=float)
        arr = np.clip(arr + rng.normal(0, noise * 255, arr.shape), 0, 255).astype(np.uint8)
        name = f"synthetic_{i:04d}.png"
        Image.fromarray(arr).save(folder / name)
        lines.append(f"{name},{row[3]}")  # Coarse Label is the class the generator would have been asked for
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def tiny_generator(folder: Path, *, size: int = 32, private: bool = True, super_resolution: int = 1) -> Path:
    """An untrained generator publishing ``size`` px images; with ``super_resolution`` > 1, G draws at
    ``size // super_resolution`` and an (untrained: bicubic) super-resolution network enlarges its images."""
    arch = GanArchitecture(image_size=size // super_resolution, num_classes=4, latent_dim=8, g_width=8)
    generator, _ = build_models(arch, seed=0)
    card = minimal_card(CLASSES, private=private, run_name="audit-test", site_epsilon=1.0)
    network = SuperResolution(SuperResolutionSpec(super_resolution)) if super_resolution > 1 else None
    return publish_generator(folder, generator, card, samples_per_class=1, super_resolution=network)
