"""The Flower ClientApp: a thin shell over ``client.site_round`` (all state in context.state or on disk)."""
from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from cxr_fedsynth.client.feature_release import run_feature_release
from cxr_fedsynth.client.site_config import site_from_context
from cxr_fedsynth.client.site_round import RunPrivacyState, run_site_round
from cxr_fedsynth.common.experiment_config import ExperimentConfig

app = ClientApp()
STATE_KEY = "dp-state"
logging.getLogger("cxr_fedsynth").setLevel(logging.INFO)


def _load_state(context: Context) -> RunPrivacyState:
    if STATE_KEY not in context.state:
        return RunPrivacyState()
    record = context.state[STATE_KEY]
    history = tuple(zip(record["noise"], record["rate"], record["steps"]))
    return RunPrivacyState(str(record["run-id"]), float(record["noise-multiplier"]), float(record["sample-rate"]), history)


def _save_state(context: Context, state: RunPrivacyState) -> None:
    context.state[STATE_KEY] = ConfigRecord(
        {
            "run-id": state.run_id,
            "noise-multiplier": state.noise_multiplier,
            "sample-rate": state.sample_rate,
            "noise": [float(n) for n, _, _ in state.history],
            "rate": [float(q) for _, q, _ in state.history],
            "steps": [int(s) for _, _, s in state.history],
        }
    )


def _site_config(context: Context) -> ExperimentConfig:
    config = ExperimentConfig.from_run_config(context.run_config)
    if "device" in context.node_config:  # the site decides where its data is processed
        config = config.replace(device=str(context.node_config["device"]))
    return config


def _status(status: str, reason: str, site: str) -> ConfigRecord:
    return ConfigRecord({"status": status, "reason": reason, "site": site})


@app.query()
def release_features(msg: Message, context: Context) -> Message:
    """The run's one-off DP feature release (noisy class sums of embeddings), or a refusal."""
    config = _site_config(context)
    round_info = msg.content["round"]
    site = site_from_context(config, context.node_config, run_dir=str(round_info["run-dir"]))
    reply = run_feature_release(
        config, site, space_weights=msg.content["feature-space"].to_torch_state_dict(),
        run_id=str(round_info["run-id"]), state=_load_state(context),
    )
    _save_state(context, reply.state)
    content = RecordDict({"status": _status(reply.status, reply.reason, site.name), "metrics": MetricRecord(reply.metrics)})
    if reply.sums is not None:
        content["feature-sums"] = ArrayRecord({"sums": reply.sums})
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round at this site: DP discriminator update, or a refusal when the budget would be exceeded."""
    config = _site_config(context)
    round_info = msg.content["round"]
    site = site_from_context(config, context.node_config, run_dir=str(round_info["run-dir"]))
    weights = {name: msg.content[name].to_torch_state_dict() for name in ("generator", "discriminator")}
    reply = run_site_round(
        config,
        site,
        global_weights=weights,
        run_id=str(round_info["run-id"]),
        round_number=int(round_info["round"]),
        state=_load_state(context),
    )
    _save_state(context, reply.state)
    content = RecordDict(
        {
            "status": _status(reply.status, reply.reason, site.name),
            "metrics": MetricRecord(reply.metrics),
        }
    )
    if reply.discriminator is not None:
        content["discriminator"] = ArrayRecord(reply.discriminator)
    return Message(content=content, reply_to=msg)
