"""Shared fixtures: the real data in ../shared/data (skip, or fail under CXR_REQUIRE_SHARED_DATA=1) and a
private cache directory per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def _require(sub: str) -> Path:
    path = shared_data_dir() / sub
    if not path.is_dir():
        message = f"real data {path} is absent (set CXR_SHARED_DATA to the shared/data folder)"
        if os.environ.get("CXR_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + "; CXR_REQUIRE_SHARED_DATA=1 makes it mandatory")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cxr128_dir() -> Path:
    return _require("cxr128")


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    return _require("dicom_samples")


@pytest.fixture(scope="session")
def nih_labels_dir() -> Path:
    return _require("nih_labels")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["CXR_CACHE_DIR"] = str(tmp_path_factory.mktemp("cxr-cache"))
