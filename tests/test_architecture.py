"""The house rules, checked on the source: layered imports, small modules, every package installed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("common", "client", "server", "privacy_audit")
#: Which project packages each top-level package may import (besides itself).
ALLOWED = {"common": set(), "client": {"common"}, "server": {"common"}, "privacy_audit": {"common"}}
#: common/'s concept folders, bottom to top: a folder imports only folders before it (and the shared modules).
COMMON_LAYERS = ("data", "privacy", "gan", "publish", "evaluation")
MAX_LINES = 400


def _modules(root: str) -> list[Path]:
    return sorted((REPO_ROOT / root).rglob("*.py"))


def _project_imports(path: Path) -> set[str]:
    """Dotted names of the project modules a file imports (the part after ``cxr_fedsynth.``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])]
        )
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(n.removeprefix("cxr_fedsynth.") for n in names if n.startswith("cxr_fedsynth."))
    return found


@pytest.mark.parametrize("root", ROOTS)
def test_packages_import_only_the_layers_below(root: str) -> None:
    for path in _modules(root):
        for name in _project_imports(path):
            top = name.split(".")[0]
            assert top == root or top in ALLOWED[root], f"{path.relative_to(REPO_ROOT)} imports {name}"


def test_common_concept_folders_are_layered() -> None:
    for path in _modules("common"):
        parts = path.relative_to(REPO_ROOT / "common").parts
        if len(parts) < 2 or parts[0] not in COMMON_LAYERS:
            continue
        level = COMMON_LAYERS.index(parts[0])
        for name in _project_imports(path):
            sub = name.split(".")[1] if name.count(".") else ""
            if sub in COMMON_LAYERS:
                assert COMMON_LAYERS.index(sub) <= level, (
                    f"{path.relative_to(REPO_ROOT)} imports {name} (a layer above)"
                )


def test_no_module_is_longer_than_the_house_limit() -> None:
    for root in (*ROOTS, "tests"):
        for path in _modules(root):
            lines = len(path.read_text().splitlines())
            assert lines <= MAX_LINES, (
                f"{path.relative_to(REPO_ROOT)} has {lines} lines (limit {MAX_LINES}): split it by concept"
            )


def test_every_package_folder_is_installed_under_the_namespace() -> None:
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        "cxr_fedsynth." + ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for r in ROOTS
        for p in (REPO_ROOT / r).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {f"cxr_fedsynth.{r}": r for r in ROOTS}
