"""The Flower ServerApp: reads the run config into typed settings and runs the federated DP-cGAN.

A problem the user can fix (``CxrError``: a bad run-config key, a missing folder, too few sites) is logged as
one line that names it and the fix, and the run ends as failed with that line as its reason (``flwr list``).
"""

from __future__ import annotations

import logging
import sys

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from cxr_fedsynth.common.errors import CxrError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.server.federated_gan import FederatedGanServer

app = ServerApp()
log = logging.getLogger("cxr_fedsynth.server")


def _configure_logging() -> None:
    logger = logging.getLogger("cxr_fedsynth")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s cxr-fedsynth: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run every round, publish the generator, and say where it is."""
    _configure_logging()
    try:
        config = ExperimentConfig.from_run_config(context.run_config)
        run_name = config.run_name or f"run-{context.run_id}"
        published = FederatedGanServer(config, run_name=run_name).run(grid)
    except CxrError as exc:
        log.error("run failed: %s", exc)
        # Flower records the failure with the exception's text as the run's reason and logs it: as one line,
        # not as a traceback, since this is the user's error, not the code's (the process ends here).
        sys.tracebacklimit = 0
        raise
    print(f"cxr-fedsynth: generator published at {published}", flush=True)
