"""Procedural chest X-ray PHANTOMS: the embedded default dataset, so every job runs with no data at all.

They are drawings, not radiographs: body outline, lung fields, ribs, clavicles, spine, heart and diaphragm,
with one class-specific finding per condition of the coarse set:
- No Finding: nothing added;
- Pneumonia: a lobar opacity in one lung;
- COVID-19: several peripheral ground-glass opacities in both lower lungs;
- Other Finding: an enlarged heart (Cardiomegaly) or a pleural effusion with a meniscus (Effusion).
Each patient has fixed anatomy; their follow-up images differ by position, exposure and noise. Every file
name, table row ("Source" = PHANTOM) and log line says phantom.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from cxr_fedsynth.common.data.preprocess import check_image_size

PHANTOM_SOURCE = "PHANTOM (procedurally generated, not a real radiograph)"
CLASS_FINDINGS = {
    "No Finding": ["No Finding"],
    "Pneumonia": ["Pneumonia"],
    "COVID-19": ["Pneumonia|COVID-19"],
    "Other Finding": ["Cardiomegaly", "Effusion"],
}


@dataclass(frozen=True)
class PhantomSpec:
    """How many phantom patients, images per patient, their size and the seed."""

    num_patients: int = 240
    images_per_patient: int = 2
    image_size: int = 64
    seed: int = 0
    patient_prefix: str = "PHANTOM"  # the public phantom set's patients are other patients: another prefix


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(mask.astype(np.float64), sigma)


def render_phantom(finding: str, anatomy: dict[str, float], rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw one phantom radiograph (uint8, size x size) for a finding label and a patient's anatomy."""
    s = size / 64.0
    grid = np.linspace(-1, 1, size)
    dx, dy = rng.normal(0, 0.03, 2)
    x, y = np.meshgrid(grid - dx, grid - dy)
    lung_rx, lung_ry, heart = anatomy["lung_rx"], anatomy["lung_ry"], anatomy["heart"]
    if finding == "Cardiomegaly":
        heart *= 1.55
    img = 0.06 + 0.40 * _soft(_ellipse(x, y, 0, 0.15, anatomy["body"], 1.05), 2 * s)
    diaphragm = y > 0.42 + 0.12 * np.cos(2.2 * x) - 0.05 * (x > 0)
    lungs = (
        _ellipse(x, y, -0.38, -0.05, lung_rx, lung_ry) | _ellipse(x, y, 0.38, -0.05, lung_rx, lung_ry)
    ) & ~diaphragm
    img -= 0.28 * _soft(lungs, 1.2 * s)
    rib_phase = anatomy["rib_phase"]
    ribs = np.zeros_like(img)
    for k in range(9):
        y0 = -0.62 + 0.14 * k + rib_phase
        ribs += np.exp(-(((y - (y0 + 0.35 * x**2)) / 0.022) ** 2))
    img += 0.10 * ribs * _soft(lungs, 1.5 * s)
    img += 0.22 * _soft((np.abs(y + 0.72 - 0.18 * np.abs(x)) < 0.03) & (np.abs(x) < 0.6), 0.6 * s)  # clavicles
    img += 0.18 * _soft(np.abs(x) < 0.08, 1.0 * s)  # spine and mediastinum
    img += 0.34 * _soft(_ellipse(x, y, 0.12, 0.20, 0.27 * heart, 0.25), 1.5 * s)  # heart
    img += 0.22 * _soft(diaphragm & _ellipse(x, y, 0, 0.15, anatomy["body"], 1.05), 1.5 * s)
    left_lung = _ellipse(x, y, -0.38, -0.05, lung_rx, lung_ry) & ~diaphragm
    right_lung = _ellipse(x, y, 0.38, -0.05, lung_rx, lung_ry) & ~diaphragm
    if finding == "Pneumonia":
        side = -0.38 if rng.random() < 0.5 else 0.38
        cy = rng.choice([-0.30, 0.15]) + rng.normal(0, 0.05)
        blob = _ellipse(x, y, side + rng.normal(0, 0.04), cy, 0.20, 0.18) & (left_lung | right_lung)
        img += 0.42 * _soft(blob, 2.0 * s) * (1 + 0.3 * gaussian_filter(rng.normal(0, 1, img.shape), 1.5 * s))
    elif finding == "Pneumonia|COVID-19":
        for side in (-1, 1):
            for _ in range(rng.integers(3, 6)):
                cx = side * (0.50 + rng.uniform(-0.06, 0.08))
                cy = rng.uniform(-0.05, 0.35)
                img += 0.22 * _soft(_ellipse(x, y, cx, cy, 0.09, 0.08) & (left_lung | right_lung), 2.5 * s)
    elif finding == "Effusion":
        side = left_lung if rng.random() < 0.5 else right_lung
        level = 0.18 + rng.uniform(-0.05, 0.05)
        fluid = side & (y > level - 0.12 * np.abs(x))  # meniscus rising towards the chest wall
        img += 0.30 * _soft(fluid, 1.0 * s)
    exposure = rng.normal(1.0, 0.05)
    img = img * exposure + rng.normal(0, 0.015, img.shape)
    return np.clip(np.round(img * 255 / 0.95), 0, 255).astype(np.uint8)


def _anatomy(rng: np.random.Generator) -> dict[str, float]:
    return {
        "lung_rx": float(rng.uniform(0.24, 0.30)),
        "lung_ry": float(rng.uniform(0.48, 0.58)),
        "heart": float(rng.uniform(0.9, 1.1)),
        "body": float(rng.uniform(0.80, 0.92)),
        "rib_phase": float(rng.uniform(-0.04, 0.04)),
    }


def generate_phantom_dataset(out_dir: Path, spec: PhantomSpec) -> Path:
    """Write phantom PNGs and an NIH-style ``metadata.csv`` into ``out_dir`` (atomically: temp dir, rename)."""
    check_image_size(spec.image_size)
    out_dir = Path(out_dir)
    if (out_dir / "metadata.csv").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    classes = list(CLASS_FINDINGS)
    rows = []
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".phantoms-"))
    try:
        for p in range(spec.num_patients):
            condition = classes[p % len(classes)]
            findings = CLASS_FINDINGS[condition][rng.integers(len(CLASS_FINDINGS[condition]))]
            anatomy = _anatomy(rng)
            for k in range(spec.images_per_patient):
                name = f"{spec.patient_prefix.lower()}_{p:05d}_{k:03d}.png"
                Image.fromarray(render_phantom(findings, anatomy, rng, spec.image_size)).save(tmp / name)
                rows.append(
                    {
                        "Image Index": name,
                        "Finding Labels": findings,
                        "Follow-up #": k,
                        "Patient ID": f"{spec.patient_prefix}-{p:05d}",
                        "Source": PHANTOM_SOURCE,
                    }
                )
        pd.DataFrame(rows).to_csv(tmp / "metadata.csv", index=False)
        (tmp / "PHANTOMS.json").write_text(json.dumps({"phantom": True, **asdict(spec)}, indent=2))
        try:
            tmp.rename(out_dir)
        except OSError:
            if not (out_dir / "metadata.csv").is_file():  # unless another process finished first: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def default_phantom_dir(cache_dir: Path, spec: PhantomSpec) -> Path:
    """Where the embedded phantom set for ``spec`` lives inside the cache."""
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / "phantoms" / f"phantoms-{spec.image_size}px-{digest}"
