"""Blockwise k-nearest-neighbour search under squared L2: never an N x M distance matrix larger than a block.

Distances come from one GEMM per block (||q||^2 + ||r||^2 - 2 q.r), the floor for this computation; a running
top-k per query row is merged block by block.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BLOCK = 4096


def nearest_neighbours(
    queries: np.ndarray, references: np.ndarray, *, k: int = 1, block: int = DEFAULT_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (L2, ascending) and indices of the ``k`` nearest references for every query row.

    Memory is O(block * block + N * k): query and reference blocks of ``block`` rows each.
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32))
    k = min(k, len(r))
    out_d = np.empty((len(q), k), dtype=np.float32)
    out_i = np.empty((len(q), k), dtype=np.int64)
    r_norms = (r * r).sum(1)
    for qs in range(0, len(q), block):
        qb = q[qs : qs + block]
        qn = (qb * qb).sum(1, keepdim=True)
        best_d = torch.full((len(qb), k), float("inf"))
        best_i = torch.zeros((len(qb), k), dtype=torch.long)
        for rs in range(0, len(r), block):
            rb = r[rs : rs + block]
            d2 = (qn + r_norms[rs : rs + block].unsqueeze(0) - 2.0 * qb @ rb.T).clamp_min_(0.0)  # [bq, br]
            kk = min(k, d2.shape[1])
            cand_d, cand_i = torch.topk(d2, kk, dim=1, largest=False)
            merged_d = torch.cat([best_d, cand_d], 1)
            merged_i = torch.cat([best_i, cand_i + rs], 1)
            best_d, order = torch.topk(merged_d, k, dim=1, largest=False)
            best_i = torch.gather(merged_i, 1, order)
        out_d[qs : qs + len(qb)] = best_d.sqrt().numpy()
        out_i[qs : qs + len(qb)] = best_i.numpy()
    return out_d, out_i


def count_within(
    queries: np.ndarray, references: np.ndarray, radius: np.ndarray | float, *, block: int = DEFAULT_BLOCK
) -> np.ndarray:
    """For every query, how many references lie within ``radius`` (L2), blockwise."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32))
    radius2 = torch.as_tensor(np.broadcast_to(np.asarray(radius, dtype=np.float32), (len(q),)).copy()) ** 2
    counts = np.zeros(len(q), dtype=np.int64)
    r_norms = (r * r).sum(1)
    for qs in range(0, len(q), block):
        qb = q[qs : qs + block]
        qn = (qb * qb).sum(1, keepdim=True)
        total = torch.zeros(len(qb), dtype=torch.long)
        for rs in range(0, len(r), block):
            d2 = qn + r_norms[rs : rs + block].unsqueeze(0) - 2.0 * qb @ r[rs : rs + block].T
            total += (d2 <= radius2[qs : qs + len(qb)].unsqueeze(1)).sum(1)
        counts[qs : qs + len(qb)] = total.numpy()
    return counts
