"""Data loading: images/s from DICOM and PNG, decoding (cold cache) vs loading the on-disk cache (warm), side
by side in one process. Usage: python -m bench.bench_data_loading [--shared ../shared/data]"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import write_result
from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import load_site_images
from cxr_fedsynth.common.data.site_data import read_site


def _dicom_site(shared: Path, root: Path, copies: int) -> Path:
    """The real DICOM samples, copied ``copies`` times each under new names (one patient per copy)."""
    site = root / "dicom"
    site.mkdir()
    rows = []
    for path in sorted((shared / "dicom_samples").glob("*.dcm")):
        for k in range(copies):
            name = f"{k:03d}_{path.name}"
            shutil.copy(path, site / name)
            rows.append({"Image Index": name, "Finding Labels": "No Finding", "Patient ID": f"{path.stem}-{k}"})
    pd.DataFrame(rows).to_csv(site / "labels.csv", index=False)
    return site


def _measure(site: Path, size: int, cache: Path) -> dict:
    records = read_site(site, load_condition_set("coarse")).records
    start = time.perf_counter()
    cold = load_site_images(records, image_size=size, cache_dir=cache, show_progress=False)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = load_site_images(records, image_size=size, cache_dir=cache, show_progress=False)
    warm_s = time.perf_counter() - start
    assert not cold.from_cache and warm.from_cache
    return {
        "images": len(records),
        "decode_images_per_s": len(records) / cold_s,
        "cached_images_per_s": len(records) / warm_s,
        "cache_speedup": cold_s / warm_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        result = {
            "image_size": args.size,
            "png_cxr128": _measure(args.shared / "cxr128", args.size, root / "cache-png"),
            "dicom_1024px": _measure(_dicom_site(args.shared, root, copies=10), args.size, root / "cache-dicom"),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    path = write_result("data_loading", result)
    for kind in ("png_cxr128", "dicom_1024px"):
        r = result[kind]
        print(
            f"{kind}: {r['images']} images, decode {r['decode_images_per_s']:.0f} img/s, cached {r['cached_images_per_s']:.0f} img/s ({r['cache_speedup']:.1f}x)"
        )
    print(path)


if __name__ == "__main__":
    main()
