"""The site's FAB check: the project's own app (no code) passes, a bundle with code passes only when its hash is
pinned in the site's policy, and a bundle naming another ClientApp is refused."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from cxr_fedsynth.client.trusted_clientapp import FabRefused, approve_fab
from cxr_fedsynth.common.privacy.site_policy import SitePolicy

APP = Path(__file__).resolve().parents[2] / "simulations" / "nih_split"


def test_the_projects_app_carries_no_code_and_passes() -> None:
    fab = build_fab_from_disk(APP)
    assert approve_fab(fab, SitePolicy()) == hashlib.sha256(fab).hexdigest()


def test_a_bundle_with_code_passes_only_when_pinned(tmp_path: Path) -> None:
    app = shutil.copytree(APP, tmp_path / "app")
    (app / "helper.py").write_text("print('runs at the site')\n")
    fab = build_fab_from_disk(app)
    with pytest.raises(FabRefused, match=r"carries code \(helper.py\)"):
        approve_fab(fab, SitePolicy())
    assert approve_fab(fab, SitePolicy(trusted_fab_hashes=(hashlib.sha256(fab).hexdigest(),)))


def test_a_bundle_naming_another_client_app_is_refused(tmp_path: Path) -> None:
    app = shutil.copytree(APP, tmp_path / "app")
    project = app / "pyproject.toml"
    project.write_text(project.read_text().replace("cxr_fedsynth.client.app:app", "somewhere.else:app"))
    with pytest.raises(FabRefused, match="its ClientApp is 'somewhere.else:app'"):
        approve_fab(build_fab_from_disk(app), SitePolicy())
    with pytest.raises(FabRefused, match="not a readable app bundle"):
        approve_fab(b"not a zip", SitePolicy())
