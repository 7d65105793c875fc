"""Render the run-config declarations (``ExperimentConfig``) into the Flower app's pyproject and the user docs.

``python -m cxr_fedsynth.common.config_docs --write`` regenerates both; ``--check`` (and the test suite) fails
when either file is out of date, so the keys, defaults and docs are declared once, in ``experiment_config``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxr_fedsynth.common.experiment_config import ExperimentConfig

APP_PYPROJECT = Path("simulations/nih_split/pyproject.toml")
CONFIGURATION_MD = Path("docs/configuration.md")
CONFIG_TABLE = "[tool.flwr.app.config]"
#: Section titles, each before the key that opens it.
SECTIONS = {
    "num-server-rounds": "run",
    "data-dir": "data",
    "public-data": "public pretraining on the server (no privacy cost; other patients than the sites' and the test set's)",
    "partition": "simulated hospitals (split by patient; holdout patients never reach a site)",
    "latent-dim": "model",
    "target-epsilon": "sites: discriminator with DP-SGD (what is requested; each site's own policy decides)",
    "g-steps": "server: generator (never sees real data)",
    "feature-matching-weight": "DP feature matching: each site releases once noisy class sums of its patients' embeddings",
    "generator-members": "published generator",
}


def toml_value(value: object) -> str:
    """A Python default as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def render_run_config() -> str:
    """The app pyproject's ``[tool.flwr.app.config]`` table, one commented line per key."""
    lines = [CONFIG_TABLE]
    defaults = ExperimentConfig().to_run_config()
    for name, key in ExperimentConfig.keys().items():
        if name in SECTIONS:
            lines.append(f"# {SECTIONS[name]}")
        lines.append(f"{f'{name} = {toml_value(defaults[name])}':<36} # {key.doc}")
    return "\n".join(lines) + "\n"


def render_configuration_md() -> str:
    """``docs/configuration.md``: every run-config key with its default, meaning and flags."""
    defaults = ExperimentConfig().to_run_config()
    out = [
        "# Run configuration",
        "",
        'Every key of a run, with its default. Pass keys with `flwr run simulations/nih_split --run-config "key=value ..."`',
        "or a TOML file (`--run-config my-run.toml`); unknown keys and wrong types are refused with the key and the fix.",
        "This page is generated from `common/experiment_config.py` (`python -m cxr_fedsynth.common.config_docs --write`).",
        "",
        "Flags: **private**: a local path or pattern, never written into the model card; **pretraining**: part of the",
        "public pretraining's reuse key (changing it trains the public pretraining again).",
    ]
    for name, key in ExperimentConfig.keys().items():
        if name in SECTIONS:
            out += [
                "",
                f"## {SECTIONS[name][0].upper()}{SECTIONS[name][1:]}",
                "",
                "| key | default | meaning | flags |",
                "|---|---|---|---|",
            ]
        flags = ", ".join(f for f, on in (("private", key.private), ("pretraining", key.pretraining)) if on)
        doc = key.doc.replace("|", "\\|")
        out.append(f"| `{name}` | `{toml_value(defaults[name])}` | {doc} | {flags} |")
    return "\n".join(out) + "\n"


def render_app_pyproject(current: str) -> str:
    """``current`` with its run-config table (the file's last table) replaced by the rendered one."""
    head = current[: current.index(CONFIG_TABLE)]
    return head + render_run_config()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the files instead of checking them")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: the current folder)")
    args = parser.parse_args(argv)
    stale = []
    for path, render in (
        (APP_PYPROJECT, render_app_pyproject),
        (CONFIGURATION_MD, lambda _: render_configuration_md()),
    ):
        target = args.root / path
        current = target.read_text() if target.exists() else ""
        wanted = render(current)
        if current != wanted:
            if args.write:
                target.write_text(wanted)
            stale.append(str(path))
    if stale and not args.write:
        print(
            f"out of date: {', '.join(stale)}; run python -m cxr_fedsynth.common.config_docs --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
