"""Which data, ledger and policy a ClientApp uses: a simulated partition, or a hospital's own folder.

Deployment (``data-path`` in the node config, set by ``cxr-client``): the site's own folder, ledger and policy
file; nothing the server sends (paths, cache, budget, DP) is used. Simulation (``partition-id`` in the node
config): the run's dataset split by patient, read, split and decoded once per process and kept across rounds;
the policy of every simulated site comes from ``$CXR_SIMULATED_SITE_POLICY`` (the nodes' environment) or the safe
defaults; ledgers under the run folder unless ``ledger-dir`` is set.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from cxr_fedsynth.client.site_round import Site, read_site_images
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.patients import PER_IMAGE
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.data.simulated_sites import read_run_dataset, split_records
from cxr_fedsynth.common.data.site_data import read_site
from cxr_fedsynth.common.errors import ConfigError, DataError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.site_policy import SitePolicy
from cxr_fedsynth.common.protocol import PHANTOM_DATA, SITE_DATA

#: Node-config keys ``cxr-client`` sets for its SuperNode (the site's own settings).
DEPLOYED_KEYS = ("data-path", "labels", "site-name", "ledger", "policy", "device", "patient-pattern")


def site_from_context(config: ExperimentConfig, node_config: Mapping[str, object], *, run_dir: str) -> Site:
    """The Site this ClientApp serves, from the Flower node config."""
    if "data-path" in node_config:
        return deployed_site(config, node_config)
    if "partition-id" not in node_config:
        raise ConfigError("node config has neither data-path (deployment) nor partition-id (simulation)")
    partition, num = int(node_config["partition-id"]), int(node_config["num-partitions"])
    policy = SitePolicy.for_simulated_site()
    records, images = simulated_site_data(config, policy, partition, num)
    name = site_name(node_config)
    ledger_dir = Path(config.ledger_dir).expanduser() if config.ledger_dir else Path(run_dir) / "ledgers"
    kind = PHANTOM_DATA if config.uses_phantoms else SITE_DATA
    return Site(name, records, ledger_dir / f"{name}.json", policy, images, kind)


@functools.lru_cache(maxsize=4)
def simulated_site_data(
    config: ExperimentConfig, policy: SitePolicy, partition: int, num_partitions: int
) -> tuple[list[ImageRecord], SiteImages]:
    """A simulated site's records and decoded images, read and split once per process (kept across rounds)."""
    per_site = split_records(config, read_run_dataset(config).records, num_partitions).sites
    name = site_name({"partition-id": partition})
    return per_site[partition], read_site_images(config.image_size, policy, name, per_site[partition])


def deployed_site(config: ExperimentConfig, node_config: Mapping[str, object]) -> Site:
    """A hospital's site: its folder, ledger and policy as ``cxr-client`` set them in the node config."""
    policy_path, ledger = str(node_config.get("policy", "") or ""), str(node_config.get("ledger", "") or "")
    if not policy_path or not ledger:
        raise ConfigError(
            "deployment node config needs 'policy' and 'ledger' (the site's own files); cxr-client sets them"
        )
    policy = SitePolicy.load(Path(policy_path), deployed=True)
    labels = str(node_config.get("labels", "") or "")
    records = read_site(
        Path(str(node_config["data-path"])),
        config.condition_set(),
        labels=Path(labels) if labels else None,
        patient_pattern=str(node_config.get("patient-pattern", "")) or None,
    )
    if PER_IMAGE in records.patient_id_source and policy.privacy_unit != "image":
        raise DataError(
            f"{node_config['data-path']}: no patient IDs were found, so DP would protect images, not patients; give "
            "patient IDs (a table's Patient ID, the DICOM PatientID or --patient-pattern), or accept image-level "
            "privacy in the site policy (privacy-unit: image, allow-image-level: true)"
        )
    return Site(site_name(node_config), records.records, Path(ledger), policy)


def site_name(node_config: Mapping[str, object]) -> str:
    """The name a site reports: ``site-name`` of a deployed site, ``sim-site-<i>`` of a simulated one."""
    if "partition-id" in node_config and "data-path" not in node_config:
        return f"sim-site-{int(node_config['partition-id'])}"
    return str(node_config.get("site-name", "site"))
