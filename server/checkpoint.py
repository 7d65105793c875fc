"""Server checkpoints: G, G's EMA, the aggregated D and G's optimizer after every round, atomically.

Tensors go to ``checkpoint.safetensors`` (no pickle), progress (round, per-site stats, metric rows) to
``checkpoint.json``; the JSON is written last and names the weights' hash, so a crash between the two writes
leaves the previous, consistent checkpoint in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cxr_fedsynth.common.atomic import atomic_path, write_json_atomic
from cxr_fedsynth.common.errors import ArtifactError
from cxr_fedsynth.common.publish.artifacts import clean_state_dict, file_sha256

TENSORS = "checkpoint.safetensors"
PROGRESS = "checkpoint.json"


@dataclass
class Checkpoint:
    """What a resumed server needs."""

    round: int
    tensors: dict[str, torch.Tensor]
    progress: dict


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            out[f"g_optimizer.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Load G's optimizer moments saved by :func:`save_checkpoint` (no-op when there are none)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("g_optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    if state:
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(
    folder: Path,
    *,
    round_number: int,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    progress: dict,
) -> None:
    """Write the round's tensors, then the progress record that makes them current."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{prefix}.{k}": v for prefix, module in modules.items() for k, v in clean_state_dict(module).items()}
    tensors.update(_optimizer_tensors(optimizer))
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(
        folder / PROGRESS, {**progress, "round": round_number, "tensors_sha256": file_sha256(folder / TENSORS)}
    )


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The last complete checkpoint in ``folder``, or None when there is none."""
    if not (folder / PROGRESS).is_file():
        return None
    progress = json.loads((folder / PROGRESS).read_text())
    if not (folder / TENSORS).is_file() or file_sha256(folder / TENSORS) != progress.get("tensors_sha256"):
        raise ArtifactError(
            f"{folder}: checkpoint tensors do not match checkpoint.json; delete the folder to start over"
        )
    return Checkpoint(int(progress["round"]), load_file(str(folder / TENSORS)), progress)


def module_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The state dict stored under ``prefix`` in a checkpoint."""
    return {k.removeprefix(prefix + "."): v for k, v in tensors.items() if k.startswith(prefix + ".")}
