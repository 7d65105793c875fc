"""The Flower ClientApp: a thin shell over ``client.site_round`` (all state in context.state or on disk).

Messages are read and written only through ``common.protocol``. The run config is a request: the site's own
policy (``client.site_config``) decides; the run's privacy plan is computed once per process, the site's DP-SGD
noise once per run (kept in ``context.state``). A user error is answered with a refusal that names only its kind.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from cxr_fedsynth.client.feature_release import run_feature_release
from cxr_fedsynth.client.site_config import site_from_context, site_name
from cxr_fedsynth.client.site_round import RunPrivacyState, run_site_round, site_plan
from cxr_fedsynth.common.errors import CxrError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.protocol import REFUSED, ReleaseRequest, SiteReply, TrainRequest

app = ClientApp()
STATE_KEY = "dp-state"
logging.getLogger("cxr_fedsynth").setLevel(logging.INFO)
log = logging.getLogger("cxr_fedsynth.client")
Handler = Callable[[Message, Context], Message]


def refuse_on_user_error(handler: Handler) -> Handler:
    """A problem the site can fix (``CxrError``) is logged at the site as one line, any other failure with its
    traceback; the server gets a refusal that names only the kind of problem, never its text (paths, findings)."""

    @functools.wraps(handler)
    def guarded(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except CxrError as exc:
            name = site_name(context.node_config)
            log.error("site %s refused the request: %s", name, exc)
            reason = f"site refused: {type(exc).__name__} (details in the site's log)"
        except Exception:  # a bug's text may hold paths or values: it stays in the site's log, with its traceback
            name = site_name(context.node_config)
            log.exception("site %s failed on a request", name)
            reason = "site error (details in the site's log)"
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


def _site_config(context: Context) -> ExperimentConfig:
    """The run's typed config at this site (parsed once per process); the device is the site's choice."""
    device = context.node_config.get("device")  # the site decides where its data is processed
    return _parse_run_config(tuple(sorted(context.run_config.items())), None if device is None else str(device))


@functools.lru_cache(maxsize=4)
def _parse_run_config(items: tuple[tuple[str, object], ...], device: str | None) -> ExperimentConfig:
    config = ExperimentConfig.from_run_config(dict(items))
    return config if device is None else config.replace(device=device)


_site_plan = functools.lru_cache(maxsize=4)(site_plan)  # the run's privacy plan under the site's policy, once


@app.query()
@refuse_on_user_error
def release_features(msg: Message, context: Context) -> Message:
    """The run's one-off DP feature release (noisy class sums of embeddings), or a refusal."""
    config = _site_config(context)
    request = ReleaseRequest.from_content(msg.content)
    site = site_from_context(config, context.node_config, run_dir=request.info.run_dir)
    plan = _site_plan(config, site.policy)
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
    config = _site_config(context)
    request = TrainRequest.from_content(msg.content)
    site = site_from_context(config, context.node_config, run_dir=request.info.run_dir)
    plan = _site_plan(config, site.policy)
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


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Not a mechanism of this product: refused, nothing is read."""
    name = site_name(context.node_config)
    log.warning("site %s refused an evaluate message: not a mechanism its policy knows", name)
    return Message(
        content=SiteReply(name, REFUSED, "site policy: unknown mechanism evaluate").to_content(), reply_to=msg
    )
