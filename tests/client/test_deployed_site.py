"""A deployed site takes its settings from its own node config and policy file: a folder without patient IDs is
refused unless the policy accepts image-level privacy, and then every reply says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cxr_fedsynth.client.site_config import deployed_site
from cxr_fedsynth.common.errors import ConfigError, DataError
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.protocol import OK


def _folder_without_patient_ids(root: Path) -> Path:
    for name in ("normal", "pneumonia"):
        (root / "data" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / "data" / name / f"img{i}.png")
    return root / "data"


def _node(root: Path, data: Path, policy: dict | None) -> dict:
    node = {"data-path": str(data), "ledger": str(root / "ledger.json"), "site-name": "h"}
    if policy is not None:
        (root / "policy.yaml").write_text(yaml.safe_dump(policy))
        node["policy"] = str(root / "policy.yaml")
    return node


def test_image_level_privacy_only_when_the_site_accepts_it(tmp_path: Path) -> None:
    data = _folder_without_patient_ids(tmp_path)
    with pytest.raises(DataError, match="no patient IDs were found.*privacy-unit: image"):
        deployed_site(ExperimentConfig(), _node(tmp_path, data, {}))
    site = deployed_site(
        ExperimentConfig(), _node(tmp_path, data, {"privacy-unit": "image", "allow-image-level": True})
    )
    assert len(site.records) == 4 and site.reply(OK, "x").privacy_unit == "image"


def test_a_deployed_site_needs_its_own_policy_file(tmp_path: Path) -> None:
    data = _folder_without_patient_ids(tmp_path)
    with pytest.raises(ConfigError, match="needs 'policy' and 'ledger'"):
        deployed_site(ExperimentConfig(), _node(tmp_path, data, None))
