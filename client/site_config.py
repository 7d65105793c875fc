"""Which data, ledger and budget a ClientApp uses: a simulated partition, or a hospital's own folder.

Simulation (``partition-id`` in the node config): the run's dataset split by patient, read, split and decoded
once per process and kept across rounds; ledgers under the run folder unless ``ledger-dir`` is set. Deployment (``data-path`` in the node config, set by ``cxr-client``): the
site's own folder, ledger and budget; the site's settings win over the run config.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from cxr_fedsynth.client.site_round import Site, read_site_images
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.data.simulated_sites import read_run_dataset, split_records
from cxr_fedsynth.common.data.site_data import read_site
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.ledger import Budget


def site_from_context(config: ExperimentConfig, node_config: Mapping[str, object], *, run_dir: str) -> Site:
    """The Site this ClientApp serves, from the Flower node config."""
    if "data-path" in node_config:
        return _deployed_site(config, node_config)
    if "partition-id" not in node_config:
        raise ConfigError("node config has neither data-path (deployment) nor partition-id (simulation)")
    partition, num = int(node_config["partition-id"]), int(node_config["num-partitions"])
    records, images = simulated_site_data(config, partition, num)
    name = site_name(node_config)
    ledger_dir = Path(config.ledger_dir).expanduser() if config.ledger_dir else Path(run_dir) / "ledgers"
    return Site(name, records, ledger_dir / f"{name}.json", Budget(config.site_budget, config.target_delta), images)


@functools.lru_cache(maxsize=4)
def simulated_site_data(
    config: ExperimentConfig, partition: int, num_partitions: int
) -> tuple[list[ImageRecord], SiteImages]:
    """A simulated site's records and decoded images, read and split once per process (kept across rounds)."""
    per_site, _holdout = split_records(config, read_run_dataset(config).records, num_partitions)
    name = f"sim-site-{partition}"
    return per_site[partition], read_site_images(config, name, per_site[partition])


def _deployed_site(config: ExperimentConfig, node_config: Mapping[str, object]) -> Site:
    data = Path(str(node_config["data-path"]))
    labels = str(node_config.get("labels", "") or "")
    site = read_site(
        data,
        config.condition_set(),
        labels=Path(labels) if labels else None,
        patient_pattern=str(node_config.get("patient-pattern", "")) or None,
    )
    ledger = str(node_config.get("ledger", "") or "")
    if not ledger:
        raise ConfigError("deployment node config needs 'ledger' (the site's privacy ledger path); cxr-client sets it")
    budget = Budget(
        float(node_config.get("budget-epsilon", config.site_budget)),
        float(node_config.get("budget-delta", config.target_delta)),
    )
    return Site(site_name(node_config), site.records, Path(ledger), budget)


def site_name(node_config: Mapping[str, object]) -> str:
    """The name a site reports: ``site-name`` of a deployed site, ``sim-site-<i>`` of a simulated one."""
    if "partition-id" in node_config and "data-path" not in node_config:
        return f"sim-site-{int(node_config['partition-id'])}"
    return str(node_config.get("site-name", "site"))
