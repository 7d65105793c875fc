"""The site's ClientApp runner: Flower's ``flwr-clientapp``, with every FAB checked before its app is loaded.

``cxr-client`` puts this runner first on its SuperNode's PATH, so every message of every run goes through it. A
FAB passes when the site's policy pins its SHA-256 (``trusted-fab-hashes``: the site reviewed that exact bundle),
or when it carries no code at all and names the ClientApp installed at the site. Anything else, e.g. a FAB whose
client code was changed, is refused before any app code is loaded or any image read; the refusal is logged at the
site and the server sees a failed ClientApp with the reason.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tomllib
import zipfile
from pathlib import Path

from cxr_fedsynth.common.errors import PolicyRefusal
from cxr_fedsynth.common.privacy.site_policy import SitePolicy

#: The ClientApp a site runs: the one installed with cxr-fedsynth.
APPROVED_CLIENTAPP = "cxr_fedsynth.client.app:app"
#: Environment variable naming the site's policy file (set by cxr-client for its SuperNode).
POLICY_ENV = "CXR_SITE_POLICY"
#: Files a FAB may carry without its hash being pinned: configuration and documentation, never code.
DATA_SUFFIXES = (".toml", ".md", ".yaml", ".yml", ".json", ".jsonl", "LICENSE", "/")
#: Flower's own metadata inside every FAB (the list of its files and their hashes).
FAB_METADATA = ".info/"
log = logging.getLogger("cxr_fedsynth.client")


class FabRefused(PolicyRefusal):
    """A FAB the site's policy does not trust."""


def approve_fab(content: bytes, policy: SitePolicy) -> str:
    """Return the FAB's SHA-256 if the site may run it; raise FabRefused (saying why) if not."""
    digest = hashlib.sha256(content).hexdigest()
    if digest in policy.trusted_fab_hashes:
        return digest
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            names = fab.namelist()
            config = tomllib.loads(fab.read("pyproject.toml").decode())
    except (zipfile.BadZipFile, KeyError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FabRefused(f"FAB {digest[:16]} refused: not a readable app bundle ({exc})") from None
    code = [name for name in names if not name.endswith(DATA_SUFFIXES) and not name.startswith(FAB_METADATA)]
    if code:
        raise FabRefused(
            f"FAB {digest[:16]} refused: it carries code ({', '.join(code[:3])}) and its SHA-256 {digest} is not "
            "in the site policy's trusted-fab-hashes"
        )
    component = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {}).get("clientapp")
    if component != APPROVED_CLIENTAPP:
        raise FabRefused(
            f"FAB {digest[:16]} refused: its ClientApp is {component!r}, not the installed {APPROVED_CLIENTAPP}"
        )
    return digest


def main() -> None:
    """Run Flower's ClientApp process with the FAB check in front of the FAB's installation."""
    import flwr.supernode.runtime.run_clientapp as runner
    from flwr.supernode.cli import flwr_clientapp

    policy = SitePolicy.load(Path(os.environ[POLICY_ENV]), deployed=True)
    install = runner.install_from_fab

    def install_approved(fab_content: bytes, *args: object, **kwargs: object) -> object:
        try:
            approve_fab(fab_content, policy)
        except FabRefused as exc:
            log.error("%s", exc)
            raise
        return install(fab_content, *args, **kwargs)

    runner.install_from_fab = install_approved
    flwr_clientapp()


if __name__ == "__main__":
    main()
