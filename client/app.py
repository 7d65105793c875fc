"""The Flower ClientApp: a thin shell over ``client.site_round`` (all state in context.state or on disk).

Messages are read and written only through ``common.protocol``; the run config is parsed and the run's privacy
plan computed once per process, and the site's DP-SGD noise once per run (kept in ``context.state``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from cxr_fedsynth.client.feature_release import run_feature_release
from cxr_fedsynth.client.site_config import site_from_context, site_name
from cxr_fedsynth.client.site_round import RunPrivacyState, run_site_round
from cxr_fedsynth.common.errors import CxrError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.plan import PrivacyPlan
from cxr_fedsynth.common.protocol import REFUSED, ReleaseRequest, SiteReply, TrainRequest

app = ClientApp()
STATE_KEY = "dp-state"
logging.getLogger("cxr_fedsynth").setLevel(logging.INFO)
log = logging.getLogger("cxr_fedsynth.client")
Handler = Callable[[Message, Context], Message]


def refuse_on_user_error(handler: Handler) -> Handler:
    """A problem the site can fix (``CxrError``) is logged at the site as one line and answered with a refusal
    that names only the kind of problem: its details (paths, findings) stay in the site's log."""

    @functools.wraps(handler)
    def guarded(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except CxrError as exc:
            name = site_name(context.node_config)
            log.error("site %s refused the request: %s", name, exc)
            reason = f"site refused: {type(exc).__name__} (details in the site's log)"
            return Message(content=SiteReply(name, REFUSED, reason).to_content(), reply_to=msg)

    return guarded


def _load_state(context: Context) -> RunPrivacyState:
    if STATE_KEY not in context.state:
        return RunPrivacyState()
    record = context.state[STATE_KEY]
    history = tuple(zip(record["noise"], record["rate"], record["steps"]))
    return RunPrivacyState(
        str(record["run-id"]), float(record["noise-multiplier"]), float(record["sample-rate"]), history
    )


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


def _site_config(context: Context) -> tuple[ExperimentConfig, PrivacyPlan | None]:
    """The run's typed config at this site and its privacy plan (parsed and planned once per process)."""
    device = context.node_config.get("device")  # the site decides where its data is processed
    return _parse_run_config(tuple(sorted(context.run_config.items())), None if device is None else str(device))


@functools.lru_cache(maxsize=4)
def _parse_run_config(
    items: tuple[tuple[str, object], ...], device: str | None
) -> tuple[ExperimentConfig, PrivacyPlan | None]:
    config = ExperimentConfig.from_run_config(dict(items))
    if device is not None:
        config = config.replace(device=device)
    return config, config.privacy_plan()


@app.query()
@refuse_on_user_error
def release_features(msg: Message, context: Context) -> Message:
    """The run's one-off DP feature release (noisy class sums of embeddings), or a refusal."""
    config, plan = _site_config(context)
    request = ReleaseRequest.from_content(msg.content)
    site = site_from_context(config, context.node_config, run_dir=request.info.run_dir)
    reply, state = run_feature_release(
        config,
        site,
        space_weights=request.feature_space,
        run_id=request.info.run_id,
        state=_load_state(context),
        plan=plan,
    )
    _save_state(context, state)
    return Message(content=reply.to_content(), reply_to=msg)


@app.train()
@refuse_on_user_error
def train(msg: Message, context: Context) -> Message:
    """One round at this site: DP discriminator update, or a refusal when the budget would be exceeded."""
    config, plan = _site_config(context)
    request = TrainRequest.from_content(msg.content)
    site = site_from_context(config, context.node_config, run_dir=request.info.run_dir)
    reply, state = run_site_round(
        config,
        site,
        global_weights={"generator": request.generator, "discriminator": request.discriminator},
        run_id=request.info.run_id,
        round_number=request.info.round,
        state=_load_state(context),
        plan=plan,
    )
    _save_state(context, state)
    return Message(content=reply.to_content(), reply_to=msg)
