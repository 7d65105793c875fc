"""Decode + preprocess a site's images once; later epochs and runs load one array from an on-disk cache.

The cache key hashes every file's bytes together with the preprocessing parameters, so an edited, added or
removed image, or a new resolution, builds a new entry. Entries are written atomically and loaded without
pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_fedsynth.common.atomic import atomic_path
from cxr_fedsynth.common.data.image_io import read_grayscale
from cxr_fedsynth.common.data.preprocess import check_image_size, resize_square
from cxr_fedsynth.common.data.records import ImageRecord, SkippedFile
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.progress import progress

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$CXR_CACHE_DIR`` or ``~/.cache/cxr-fedsynth`` (never inside a site's data folder)."""
    return Path(os.environ.get("CXR_CACHE_DIR", Path.home() / ".cache" / "cxr-fedsynth"))


@dataclass
class SiteImages:
    """Decoded, preprocessed images (uint8 [N, S, S]) aligned with their records."""

    images: np.ndarray
    original_sizes: np.ndarray  # [N, 2] height, width before preprocessing
    records: list[ImageRecord]
    skipped: list[SkippedFile]
    from_cache: bool

    @property
    def conditions(self) -> np.ndarray:
        return np.array([r.condition for r in self.records], dtype=np.int64)

    @property
    def patient_ids(self) -> list[str]:
        return [r.patient_id for r in self.records]


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def cache_key(records: list[ImageRecord], *, image_size: int, allow_non_chest: bool) -> str:
    """Key over the files' contents and every parameter that changes the cached pixels."""
    h = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "size": image_size, "non_chest": allow_non_chest}).encode())
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for digest in pool.map(_file_digest, (r.path for r in records)):
            h.update(digest.encode())
    return h.hexdigest()[:32]


def _decode_one(
    record: ImageRecord, image_size: int, allow_non_chest: bool
) -> tuple[np.ndarray, tuple[int, int]] | SkippedFile:
    try:
        decoded = read_grayscale(record.path, allow_non_chest=allow_non_chest)
        return resize_square(decoded, image_size), decoded.shape
    except DataError as exc:
        return SkippedFile(str(record.path), str(exc).removeprefix(f"{record.path}: "))


def load_site_images(
    records: list[ImageRecord],
    *,
    image_size: int,
    cache_dir: Path | None = None,
    allow_non_chest: bool = False,
    show_progress: bool = True,
) -> SiteImages:
    """Decode and preprocess ``records`` (or load them from the cache); unreadable files become skips."""
    check_image_size(image_size)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(records, image_size=image_size, allow_non_chest=allow_non_chest)
    entry = cache_dir / "images" / f"{key}.npz"
    if entry.is_file():
        try:
            with np.load(entry, allow_pickle=False) as data:
                kept, images, sizes = data["kept"], data["images"], data["original_sizes"]
                skipped = [
                    SkippedFile(p, r) for p, r in zip(data["skip_paths"].tolist(), data["skip_reasons"].tolist())
                ]
            return SiteImages(images, sizes, [records[i] for i in kept.tolist()], skipped, from_cache=True)
        except (OSError, KeyError, ValueError):
            entry.unlink(missing_ok=True)  # a damaged entry is rebuilt below

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(
            progress(
                pool.map(lambda r: _decode_one(r, image_size, allow_non_chest), records),
                total=len(records),
                description=f"decoding {len(records)} images at {image_size}px",
                enabled=show_progress,
            )
        )
    kept = [i for i, res in enumerate(results) if not isinstance(res, SkippedFile)]
    skipped = [res for res in results if isinstance(res, SkippedFile)]
    images = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, image_size, image_size), np.uint8)
    sizes = np.array([results[i][1] for i in kept], dtype=np.int64).reshape(-1, 2)
    entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # decoded private images: the owner only
    with atomic_path(entry, private=True) as tmp:
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                images=images,
                original_sizes=sizes,
                kept=np.array(kept, dtype=np.int64),
                skip_paths=np.array([s.path for s in skipped], dtype=str),
                skip_reasons=np.array([s.reason for s in skipped], dtype=str),
            )
    return SiteImages(images, sizes, [records[i] for i in kept], skipped, from_cache=False)
