"""A labelled grid of generated samples: one row per class (the picture a model card shows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxr_fedsynth.common.atomic import atomic_path

LABEL_WIDTH = 120
BANNER_HEIGHT = 18


def grid_image(rows: list[np.ndarray], names: list[str], *, title: str) -> Image.Image:
    """Compose rows of uint8 images [n, S, S] with a class name at the left of each and a title on top."""
    size = rows[0].shape[-1]
    cell = max(size, 32)
    per_row = max(len(r) for r in rows)
    canvas = Image.new("L", (LABEL_WIDTH + per_row * (cell + 2), BANNER_HEIGHT + len(rows) * (cell + 2)), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill=255)
    for r, (images, name) in enumerate(zip(rows, names)):
        top = BANNER_HEIGHT + r * (cell + 2)
        draw.text((4, top + cell // 2 - 5), name[:18], fill=255)
        for c, image in enumerate(images):
            tile = Image.fromarray(image).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + c * (cell + 2), top))
    return canvas


def save_sample_grid(path: Path, rows: list[np.ndarray], classes: list[str], *, private: bool) -> None:
    """Write one row of uint8 samples [n, S, S] per class as one PNG (atomically)."""
    title = "SYNTHETIC chest X-rays (cxr-fedsynth)" + ("" if private else " - NOT PRIVATE: trained without DP")
    with atomic_path(Path(path)) as tmp:
        grid_image(rows, classes, title=title).save(tmp, format="PNG")
