"""The preprocessed-image cache: reuse, invalidation by content and parameters, damaged entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import load_site_images
from cxr_fedsynth.common.data.site_data import read_site


def _site(cxr128_dir: Path, tmp_path: Path) -> Path:
    table = pd.read_csv(cxr128_dir / "metadata.csv", dtype=str, keep_default_na=False).sample(8, random_state=1)
    site = tmp_path / "site"
    site.mkdir()
    for name in table["Image Index"]:
        shutil.copy(cxr128_dir / name, site / name)
    table.to_csv(site / "metadata.csv", index=False)
    return site


def test_cache_reuse_and_invalidation(cxr128_dir: Path, tmp_path: Path) -> None:
    site = _site(cxr128_dir, tmp_path)
    cache = tmp_path / "cache"
    records = read_site(site, load_condition_set("coarse")).records
    first = load_site_images(records, image_size=64, cache_dir=cache, show_progress=False)
    assert not first.from_cache and first.images.shape == (8, 64, 64)
    second = load_site_images(records, image_size=64, cache_dir=cache, show_progress=False)
    assert second.from_cache and np.array_equal(first.images, second.images)
    assert not load_site_images(records, image_size=32, cache_dir=cache, show_progress=False).from_cache

    # Same file name, new content: a new entry, never the stale pixels.
    target = records[0].path
    Image.fromarray(np.full((128, 128), 255, np.uint8)).save(target)
    third = load_site_images(records, image_size=64, cache_dir=cache, show_progress=False)
    assert not third.from_cache and (third.images[0] == 255).all()
    assert not list((cache / "images").glob(".*.tmp"))


def test_damaged_entry_is_rebuilt_and_bad_files_are_counted(cxr128_dir: Path, tmp_path: Path) -> None:
    site = _site(cxr128_dir, tmp_path)
    cache = tmp_path / "cache"
    records = read_site(site, load_condition_set("coarse")).records
    records[1].path.write_bytes(b"")  # zero-byte PNG
    built = load_site_images(records, image_size=64, cache_dir=cache, show_progress=False)
    assert len(built.records) == 7 and "0 bytes" in built.skipped[0].reason
    entry = next((cache / "images").glob("*.npz"))
    entry.write_bytes(b"garbage")
    rebuilt = load_site_images(records, image_size=64, cache_dir=cache, show_progress=False)
    assert not rebuilt.from_cache and np.array_equal(rebuilt.images, built.images)
    assert [s.path for s in rebuilt.skipped] == [s.path for s in built.skipped]
