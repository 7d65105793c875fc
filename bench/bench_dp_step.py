"""Private discriminator step vs plain torch: book-keeping clipping (bk, the default) and every Opacus grad-sample
mode (hooks, ew, functorch, ghost with this project's conv/GroupNorm norm samplers), 64 and 128 px, batch 32 and 64.

Times are measured side by side in one process (interleaved, best of N); peak memory (RSS) per mode in a child
process each, since a process' peak cannot be reset. Plain-step throughput is set against this machine's fp32
GEMM rate with FLOPs counted by torch's FlopCounterMode. Usage: python -m bench.bench_dp_step [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import best_time, gemm_rate, write_result
from cxr_fedsynth.common.gan.discriminator_training import DiscriminatorSettings, DiscriminatorTrainer, DPSettings
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.privacy.accounting import make_accountant

MODES = ("plain", "bk", "hooks", "ew", "functorch", "ghost")


def make_step(mode: str, size: int, batch: int):
    """A closure running one D step (B real + B fake rows) in ``mode`` ("plain" or an Opacus mode)."""
    arch = GanArchitecture(image_size=size, num_classes=4, latent_dim=64, g_width=32, d_width=16)
    _, discriminator = build_models(arch, seed=0)
    settings = DiscriminatorSettings(batch_size=batch, grad_sample_mode="hooks" if mode == "plain" else mode)
    dp = None if mode == "plain" else DPSettings(1.0, 1.0, 0.1)
    trainer = DiscriminatorTrainer(discriminator, settings, dp=dp, accountant=make_accountant() if dp else None)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(batch, 1, size, size, generator=gen) * 2 - 1
    fake = torch.rand(batch, 1, size, size, generator=gen) * 2 - 1
    labels = torch.randint(0, 4, (batch,), generator=gen)
    return lambda: trainer.step(real, labels, fake, labels)


def plain_flops(size: int, batch: int) -> float:
    step = make_step("plain", size, batch)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def child_peak_rss(mode: str, size: int, batch: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds and runs a few steps in ``mode``."""
    # A forked child inherits the parent's high-water mark: reset it (clear_refs 5), then read VmHWM.
    code = (
        "import re; open('/proc/self/clear_refs', 'w').write('5');"
        "from bench.bench_dp_step import make_step;"
        f"s = make_step({mode!r}, {size}, {batch}); [s() for _ in range(3)];"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="64 px, batch 32 only")
    args = parser.parse_args()
    configs = [(64, 32)] if args.quick else [(64, 32), (64, 64), (128, 32), (128, 64)]
    gemm = gemm_rate()
    rows = []
    for size, batch in configs:
        steps = {mode: make_step(mode, size, batch) for mode in MODES}
        times = {mode: best_time(step, repeats=5, warmup=2) for mode, step in steps.items()}
        flops = plain_flops(size, batch)
        row = {
            "size": size,
            "batch": batch,
            "gemm_gflops": gemm,
            "plain_step_s": times["plain"],
            "plain_gflops": flops / times["plain"] / 1e9,
            "plain_fraction_of_gemm": flops / times["plain"] / 1e9 / gemm,
            "real_images_per_s": {m: batch / t for m, t in times.items()},
            "ratio_to_plain": {m: times[m] / times["plain"] for m in MODES},
        }
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("size", "batch", "ratio_to_plain")}), flush=True)
    # Peak memory, one child per mode at the largest config (a process' peak cannot be reset).
    size, batch = configs[-1]
    peaks = {mode: child_peak_rss(mode, size, batch) for mode in MODES}
    path = write_result("dp_step", {"rows": rows, "peak_rss_mib": {"size": size, "batch": batch, **peaks}})
    print(f"peak RSS MiB at {size}px batch {batch}: {peaks} -> {path}")


if __name__ == "__main__":
    main()
