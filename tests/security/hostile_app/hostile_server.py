"""A hostile ServerApp for the security tests: it sends a site the requests named by its run's ``run-name``
(honest ones and attacks) and writes what came back to ``<output-dir>/<run-name>.json`` for the test to check.

It speaks the product's own protocol (``cxr_fedsynth.common.protocol``), as a curious or malicious operator
would, and never trusts a reply to be well-formed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import FeatureMatcher
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.protocol import ReleaseRequest, RoundInfo, SiteReply, TrainRequest, sent_keys
from cxr_fedsynth.common.publish.artifacts import clean_state_dict

app = ServerApp()


def _config(run_config: dict) -> ExperimentConfig:
    """The keys the product knows (an attack may add others, which only the site is meant to see)."""
    known = ExperimentConfig.keys()
    return ExperimentConfig.from_run_config({k: v for k, v in run_config.items() if k in known})


def _send(grid: Grid, node: int, content: RecordDict, kind: str, timeout: float) -> dict:
    replies = list(
        grid.send_and_receive([Message(content=content, message_type=kind, dst_node_id=node)], timeout=timeout)
    )
    if not replies:
        return {"outcome": "no reply"}
    reply = replies[0]
    if reply.has_error():
        return {"outcome": "error", "error": reply.error.reason}
    content = reply.content
    keys = sorted(sent_keys(content))
    answer = SiteReply.from_content(content)
    return {"outcome": answer.status, "reason": answer.reason, "keys": keys, "metrics": dict(answer.metrics)}


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = _config(dict(context.run_config))
    deadline = time.monotonic() + 120
    while not (nodes := list(grid.get_node_ids())) and time.monotonic() < deadline:
        time.sleep(1)
    node, timeout = nodes[0], config.round_timeout
    generator, discriminator = build_models(config.architecture(len(config.condition_set())), seed=0)
    info = RoundInfo(config.run_name, 1, str(Path(config.output_dir) / config.run_name))
    honest = TrainRequest(clean_state_dict(generator), clean_state_dict(discriminator), info)
    space = clean_state_dict(FeatureMatcher(discriminator.features, len(config.condition_set()), config.embedding_spec))
    release = ReleaseRequest(space, RoundInfo(config.run_name, 0, info.run_dir))
    results: dict[str, dict] = {}
    if config.run_name.endswith("sequence"):
        results["release"] = _send(grid, node, release.to_content(), MessageType.QUERY, timeout)
        results["second-release"] = _send(grid, node, release.to_content(), MessageType.QUERY, timeout)
        poisoned = clean_state_dict(discriminator)
        first = next(iter(poisoned))
        poisoned[first] = torch.full_like(poisoned[first], float("nan"))
        nan_request = TrainRequest(clean_state_dict(generator), poisoned, info)
        results["nan-discriminator"] = _send(grid, node, nan_request.to_content(), MessageType.TRAIN, timeout)
        results["evaluate"] = _send(grid, node, honest.to_content(), MessageType.EVALUATE, timeout)
        results["garbage"] = _send(grid, node, RecordDict({}), MessageType.TRAIN, timeout)
    results["train"] = _send(grid, node, honest.to_content(), MessageType.TRAIN, timeout)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{config.run_name}.json").write_text(json.dumps(results, indent=2))
