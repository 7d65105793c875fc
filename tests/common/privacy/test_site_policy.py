"""A site's policy: safe defaults, strict parsing, no DP-off for a deployed site, and the threat model's table of
protections kept in step with the protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.privacy.site_policy import MECHANISMS, SIMULATED_POLICY_ENV, SitePolicy
from cxr_fedsynth.common.protocol import PROTECTION

THREAT_MODEL = Path(__file__).resolve().parents[3] / "docs" / "threat-model.md"


def test_defaults_are_safe() -> None:
    policy = SitePolicy()
    assert policy.dp and policy.privacy_unit == "patient" and not policy.allow_image_level
    assert policy.max_run_epsilon <= policy.budget_epsilon and set(policy.mechanisms) == set(MECHANISMS)
    assert not policy.trusted_fab_hashes and not policy.allow_non_chest


def test_a_deployed_site_cannot_turn_dp_off(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"dp": False}))
    with pytest.raises(ConfigError, match="dp: false is not possible for a deployed site"):
        SitePolicy.load(path, deployed=True)
    assert not SitePolicy.load(path, deployed=False).dp, "a simulated baseline site may"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max-epsilon": 3}, "unknown site-policy key"),
        ({"max-run-epsilon": 20}, "within the budget"),
        ({"privacy-unit": "image"}, "allow-image-level: true"),
        ({"mechanisms": ["dp-sgd", "laplace-histogram"]}, "unknown mechanism"),
    ],
)
def test_bad_policies_are_refused_with_the_fix(values: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=message):
        SitePolicy.load(path, deployed=True)


def test_simulated_sites_read_their_policy_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    assert SitePolicy.for_simulated_site() == SitePolicy()
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump({"max-run-epsilon": 3.0}))
    monkeypatch.setenv(SIMULATED_POLICY_ENV, str(path))
    assert SitePolicy.for_simulated_site().max_run_epsilon == 3.0
    assert SitePolicy.from_mapping(SitePolicy().to_mapping(), source="x") == SitePolicy(), "round trip"


def test_the_threat_model_names_the_protection_of_every_value_a_site_sends() -> None:
    text = THREAT_MODEL.read_text()
    for key, protection in PROTECTION.items():
        assert f"| `{key}`" in text and protection in text, f"docs/threat-model.md is missing {key}: {protection}"
