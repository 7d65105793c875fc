"""The embedded phantom dataset: readable through the normal data path, deterministic, class-specific."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import load_site_images
from cxr_fedsynth.common.data.phantoms import PHANTOM_SOURCE, PhantomSpec, generate_phantom_dataset
from cxr_fedsynth.common.data.site_data import read_site


def test_phantoms_are_labelled_deterministic_and_class_specific(tmp_path: Path) -> None:
    spec = PhantomSpec(num_patients=40, images_per_patient=3, image_size=64, seed=5)
    a = generate_phantom_dataset(tmp_path / "a", spec)
    b = generate_phantom_dataset(tmp_path / "b", spec)
    table = pd.read_csv(a / "metadata.csv")
    assert (table["Source"] == PHANTOM_SOURCE).all() and table["Image Index"].str.startswith("phantom_").all()
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in table["Image Index"])
    coarse = load_condition_set("coarse")
    site = read_site(a, coarse)
    assert site.num_patients == 40 and len(site.records) == 120
    assert set(site.class_counts().values()) == {30}
    images = load_site_images(site.records, image_size=64, cache_dir=tmp_path / "cache", show_progress=False)
    x = images.images.reshape(len(images.records), -1).astype(float)
    y = images.conditions
    # Class means differ far more than two halves of one class: each class carries its own finding.
    centroids = np.stack([x[y == c].mean(0) for c in range(4)])
    between = min(np.abs(centroids[i] - centroids[j]).mean() for i in range(4) for j in range(i + 1, 4))
    healthy = x[y == 0]
    within = np.abs(healthy[::2].mean(0) - healthy[1::2].mean(0)).mean()
    assert between > 1.5 * within


def test_existing_phantom_folder_is_reused(tmp_path: Path) -> None:
    spec = PhantomSpec(num_patients=4, images_per_patient=1, image_size=32)
    out = generate_phantom_dataset(tmp_path / "p", spec)
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    assert generate_phantom_dataset(tmp_path / "p", spec) == out
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".phantoms-")]
