"""Helpers shared by the benchmarks: timing (best of N, side by side in one process) and result files."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def best_time(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1) -> float:
    """Fastest of ``repeats`` wall-clock runs after ``warmup`` (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_rate(n: int = 2048, repeats: int = 3) -> float:
    """This machine's fp32 matmul rate in GFLOP/s (the floor every distance computation is measured against)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeats=repeats) / 1e9


def write_result(name: str, data: dict) -> Path:
    """Write ``bench/results/<name>.json`` with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def split_public(data: Path, out: Path, prefix: str = "nih_") -> pd.DataFrame:
    """Write ``out``/public.csv (rows whose file starts with ``prefix``, as the default experiment's public set) and
    ``out``/private.csv (the rest) from ``data``/metadata.csv; returns the private rows."""
    table = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    public = table["Image Index"].str.startswith(prefix)
    table[public].to_csv(out / "public.csv", index=False)
    table[~public].to_csv(out / "private.csv", index=False)
    return table[~public]
