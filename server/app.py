"""The Flower ServerApp: reads the run config into typed settings and runs the federated DP-cGAN."""
from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.server.federated_gan import FederatedGanServer

app = ServerApp()


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
    config = ExperimentConfig.from_run_config(context.run_config)
    run_name = config.run_name or f"run-{context.run_id}"
    published = FederatedGanServer(config, run_name=run_name).run(grid)
    print(f"cxr-fedsynth: generator published at {published}", flush=True)
