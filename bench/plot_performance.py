"""Draw docs/img/performance.png from bench/results/*.json. Usage: python -m bench.plot_performance"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import RESULTS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "performance.png"


def main() -> None:
    dp = json.loads((RESULTS / "dp_step.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [f"{r['size']}px/B{r['batch']}" for r in dp["rows"]]
    modes = [m for m in dp["rows"][0]["ratio_to_plain"] if m != "plain"]
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        axes[0].bar(
            [x + i * width for x in range(len(labels))],
            [r["ratio_to_plain"][mode] for r in dp["rows"]],
            width,
            label="book-keeping (common.privacy.bookkeeping_clipping)" if mode == "bk" else f"Opacus {mode}",
        )
    axes[0].axhline(2.0, color="k", ls="--", lw=0.8, label="goal 2x")
    axes[0].set_xticks([x + width for x in range(len(labels))], labels)
    axes[0].set_ylabel("DP step time / plain step time")
    axes[0].set_title("Private discriminator step (CPU)")
    axes[0].legend(fontsize=7)
    loading = json.loads((RESULTS / "data_loading.json").read_text())
    kinds = ["png_cxr128", "dicom_1024px"]
    axes[1].bar([0, 1], [loading[k]["decode_images_per_s"] for k in kinds], 0.4, label="decode")
    axes[1].bar([0.4, 1.4], [loading[k]["cached_images_per_s"] for k in kinds], 0.4, label="cache")
    axes[1].set_xticks([0.2, 1.2], ["PNG (cxr128)", "DICOM 1024 px"])
    axes[1].set_yscale("log")
    axes[1].set_ylabel("images / s")
    axes[1].set_title("Data loading")
    axes[1].legend(fontsize=7)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90, bbox_inches="tight")
    print(OUT)


if __name__ == "__main__":
    main()
