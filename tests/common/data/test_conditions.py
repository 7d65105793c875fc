"""Condition sets: built-ins load, the multi-label rule, YAML errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.errors import ConfigError


@pytest.mark.parametrize("name, size", [("coarse", 4), ("nih6", 7), ("nih14", 15)])
def test_builtin_sets(name: str, size: int) -> None:
    assert len(load_condition_set(name)) == size


@pytest.mark.parametrize(
    "findings, expected",
    [
        (["No Finding"], "No Finding"),
        (["Pneumonia", "COVID-19"], "COVID-19"),
        (["Effusion", "Pneumonia"], "Pneumonia"),
        (["Effusion", "Infiltration"], "Other Finding"),
        (["ARDS"], "Other Finding"),
    ],
)
def test_coarse_rule(findings: list[str], expected: str) -> None:
    coarse = load_condition_set("coarse")
    assert coarse.names[coarse.classify(findings)] == expected


def test_rare_first_priority_in_nih14() -> None:
    nih14 = load_condition_set("nih14")
    assert nih14.names[nih14.classify(["Infiltration", "Hernia"])] == "Hernia"
    assert nih14.classify([]) is None


def test_subset_keeps_the_full_rule() -> None:
    two = load_condition_set("coarse:No Finding,Pneumonia")
    assert two.names == ["No Finding", "Pneumonia"]
    assert two.classify(["Pneumonia", "COVID-19"]) is None  # a COVID row is not silently relabelled
    assert two.classify(["Pneumonia"]) == 1
    assert two.classify_folder("NORMAL") == 0 and two.classify_folder("covid") is None


def test_yaml_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("classes:\n  - name: Healthy\n    findings: [No Finding]\n  - name: Sick\n    findings: ['*']\n")
    mine = load_condition_set(str(good))
    assert mine.names == ["Healthy", "Sick"] and mine.classify(["Mass"]) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes:\n  - name: A\npriority: [A, B]\n")
    with pytest.raises(ConfigError, match="bad.yaml: 'priority' must list every class"):
        load_condition_set(str(bad))
    with pytest.raises(ConfigError, match="neither a built-in set"):
        load_condition_set(str(tmp_path / "absent.yaml"))
