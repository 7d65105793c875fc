"""Validate a site folder end to end (labels, decoding, patients) and summarise it without identifiers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxr_fedsynth.common.data.data_config import DataConfig
from cxr_fedsynth.common.data.image_cache import SiteImages, load_site_images
from cxr_fedsynth.common.data.records import SiteRecords
from cxr_fedsynth.common.data.site_data import read_site


@dataclass
class SiteCheck:
    """The result of checking a site folder: the decoded images plus a JSON-ready summary."""

    records: SiteRecords
    images: SiteImages
    summary: dict = field(default_factory=dict)


def check_site(config: DataConfig, *, show_progress: bool = True) -> SiteCheck:
    """Read labels, decode every image (filling the cache) and summarise what is usable."""
    site = read_site(
        config.data_dir, config.condition_set(), labels=config.labels, patient_pattern=config.patient_pattern
    )
    images = load_site_images(
        site.records,
        image_size=config.image_size,
        cache_dir=config.cache_dir,
        allow_non_chest=config.allow_non_chest,
        show_progress=show_progress,
    )
    skipped = site.skipped + images.skipped
    counts = {name: 0 for name in site.conditions.names}
    for condition in images.conditions.tolist():
        counts[site.conditions.names[condition]] += 1
    sizes = images.original_sizes
    summary = {
        "data_dir": str(config.data_dir),
        "label_source": site.label_source,
        "patient_id_source": site.patient_id_source,
        "conditions": site.conditions.name,
        "images_found": len(site.records) + len(site.skipped),
        "images_readable": len(images.records),
        "images_skipped": len(skipped),
        "patients": len({r.patient_id for r in images.records}),
        "class_counts": counts,
        "original_size": {
            "min": [int(v) for v in sizes.min(axis=0)] if len(sizes) else None,
            "median": [int(v) for v in np.median(sizes, axis=0)] if len(sizes) else None,
            "max": [int(v) for v in sizes.max(axis=0)] if len(sizes) else None,
        },
        "image_size": config.image_size,
        "from_cache": images.from_cache,
        "skipped": [{"file": s.path, "reason": s.reason} for s in skipped],
        "warnings": list(site.warnings),
        "usable": len(images.records) > 0,
    }
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        summary["warnings"].append(f"no images for class(es) {empty}: the generator cannot learn them from this site")
    return SiteCheck(site, images, summary)
