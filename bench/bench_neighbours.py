"""Audit nearest-neighbour search vs the GEMM floor: blockwise top-1 search over N x M rows of D features
against the bare matrix product of the same shape, in one process. Usage: python -m bench.bench_neighbours"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import best_time, gemm_rate, write_result
from cxr_fedsynth.common.evaluation.neighbours import nearest_neighbours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=4096, help="features per row (64x64 pixels = 4096)")
    parser.add_argument("--block", type=int, default=4096)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    q = rng.random((args.n, args.dim), dtype=np.float32)
    r = rng.random((args.n, args.dim), dtype=np.float32)
    tq, tr = torch.from_numpy(q), torch.from_numpy(r)
    flops = 2.0 * args.n * args.n * args.dim
    t_gemm = best_time(lambda: tq @ tr.T, repeats=2)
    t_search = best_time(lambda: nearest_neighbours(q, r, k=1, block=args.block), repeats=2)
    peak_block_mib = args.block * args.block * 4 * 3 / 2**20  # distances + top-k candidates, per block
    result = {
        "n": args.n,
        "dim": args.dim,
        "block": args.block,
        "gemm_s": t_gemm,
        "search_s": t_search,
        "search_over_gemm": t_search / t_gemm,
        "search_gflops": flops / t_search / 1e9,
        "square_gemm_gflops": gemm_rate(),
        "full_matrix_mib": args.n * args.n * 4 / 2**20,
        "block_working_set_mib": peak_block_mib,
    }
    path = write_result("neighbours", result)
    print(
        f"search {t_search:.2f}s vs GEMM {t_gemm:.2f}s: {t_search / t_gemm:.2f}x the floor "
        f"({result['search_gflops']:.0f} GFLOP/s); block working set {peak_block_mib:.0f} MiB vs full matrix "
        f"{result['full_matrix_mib']:.0f} MiB -> {path}"
    )


if __name__ == "__main__":
    main()
