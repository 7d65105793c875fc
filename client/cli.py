"""``cxr-client``: what a hospital runs. ``check`` validates a site folder before it joins a federation."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from cxr_fedsynth.client.join import JoinSettings, default_ledger, start_supernode
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.common.data.data_config import DataConfig
from cxr_fedsynth.common.data.site_check import check_site
from cxr_fedsynth.common.errors import ConfigError, DataError
from cxr_fedsynth.common.privacy.ledger import SiteLedger
from cxr_fedsynth.common.privacy.site_keys import create_site_key
from cxr_fedsynth.common.privacy.site_policy import SitePolicy

MAX_SKIPS_SHOWN = 20


def data_options(func):
    """Options shared by every command that reads a site folder."""
    options = [
        click.option(
            "--data", "data_dir", required=True, type=click.Path(path_type=Path), help="Site folder with the X-rays."
        ),
        click.option(
            "--labels",
            type=click.Path(path_type=Path),
            default=None,
            help="Label CSV (default: a Data_Entry_2017.csv/metadata.csv in --data, else class folders).",
        ),
        click.option(
            "--conditions",
            default="coarse",
            show_default=True,
            help="Condition set: coarse, nih6, nih14, or a YAML file; ':A,B' keeps only those classes.",
        ),
        click.option(
            "--image-size", default=64, show_default=True, type=int, help="Training resolution (32, 64, 128, 256)."
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Preprocessed-image cache (default $CXR_CACHE_DIR or ~/.cache/cxr-fedsynth).",
        ),
        click.option(
            "--patient-pattern",
            default=None,
            help=r"Regex on file names giving the patient ID when no table column or DICOM tag has it, e.g. '^(person\d+)_'.",
        ),
        click.option(
            "--allow-non-chest",
            is_flag=True,
            help="Accept DICOMs whose Modality/BodyPartExamined say they are not chest radiographs.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _print_check(summary: dict) -> None:
    console = Console()
    table = Table(title=f"Site check: {summary['data_dir']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "label_source",
        "patient_id_source",
        "conditions",
        "images_found",
        "images_readable",
        "images_skipped",
        "patients",
        "image_size",
    ):
        table.add_row(key.replace("_", " "), str(summary[key]))
    for name, count in summary["class_counts"].items():
        table.add_row(f"class {name}", str(count))
    size = summary["original_size"]
    table.add_row("original size (min / median / max)", f"{size['min']} / {size['median']} / {size['max']}")
    console.print(table)
    for skip in summary["skipped"][:MAX_SKIPS_SHOWN]:
        console.print(f"[yellow]skipped[/] {skip['file']}: {skip['reason']}", highlight=False, soft_wrap=True)
    if len(summary["skipped"]) > MAX_SKIPS_SHOWN:
        console.print(f"... and {len(summary['skipped']) - MAX_SKIPS_SHOWN} more skipped (see --json)")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning[/] {warning}", highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option(
    "--data", "data_dir", type=click.Path(path_type=Path), help="Site folder with the X-rays (joins the federation)."
)
@click.option("--superlink", help="The operator's SuperLink, HOST:PORT.")
@click.option(
    "--root-certificates",
    type=click.Path(path_type=Path),
    help="CA certificate (PEM) that signed the SuperLink's TLS certificate.",
)
@click.option(
    "--auth-key",
    type=click.Path(path_type=Path),
    help="This site's private key (OpenSSH ECDSA), registered by the operator.",
)
@click.option(
    "--labels", type=click.Path(path_type=Path), help="Label CSV (default: a table in --data, else class folders)."
)
@click.option("--site-name", default="site", show_default=True, help="How the site appears in the model card.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path),
    help="The site's privacy policy (YAML; docs/hospitals.md). Flags below override its keys; defaults are safe.",
)
@click.option("--budget-epsilon", type=float, help="The site's total privacy budget over all runs [policy: 10].")
@click.option("--budget-delta", type=float, help="The site's delta [policy: 1e-5].")
@click.option("--max-run-epsilon", type=float, help="The most epsilon one run may spend [policy: 10].")
@click.option(
    "--trust-fab-hash", "trusted_fab_hashes", multiple=True, help="SHA-256 of an app bundle (FAB) the site reviewed."
)
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Where decoded images are cached (mode 0600).")
@click.option("--allow-non-chest", is_flag=True, default=None, help="Read DICOMs that are not chest radiographs.")
@click.option(
    "--image-level-privacy",
    is_flag=True,
    default=None,
    help="Accept DP per image when the folder has no patient IDs (recorded in the model card).",
)
@click.option(
    "--ledger",
    type=click.Path(path_type=Path),
    help="Privacy ledger (default ~/.config/cxr-fedsynth/<site>/ledger.json).",
)
@click.option("--gpu/--cpu", "use_gpu", default=None, help="Train on the GPU / on the CPU (default: GPU when present).")
@click.option(
    "--patient-pattern", default=None, help="Regex on file names giving the patient ID when the table has none."
)
@click.option("--port", default=9094, show_default=True, type=int, help="Local port of the SuperNode's runtime API.")
@click.option("--insecure", is_flag=True, help="No TLS, no node authentication (local test networks only).")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: Path | None,
    superlink: str | None,
    ledger: Path | None,
    use_gpu: bool | None,
    **options,
) -> None:
    """cxr-fedsynth site client. With --data and --superlink: validate the folder, then join the federation.

    Subcommands: check (validate a folder), budget (privacy spent), keygen (a site key for node authentication),
    fab-hash (the hash of an app bundle to pin in the site policy).
    """
    if ctx.invoked_subcommand is not None:
        return
    if data_dir is None or superlink is None:
        click.echo(ctx.get_help())
        raise ConfigError("to join a federation pass --data DIR and --superlink HOST:PORT (or use a subcommand)")
    device = "auto" if use_gpu is None else ("cuda" if use_gpu else "cpu")
    policy = site_policy(
        options.pop("policy_file"),
        budget_epsilon=options.pop("budget_epsilon"),
        budget_delta=options.pop("budget_delta"),
        max_run_epsilon=options.pop("max_run_epsilon"),
        trusted_fab_hashes=options.pop("trusted_fab_hashes"),
        cache_dir=options.pop("cache_dir"),
        allow_non_chest=options.pop("allow_non_chest"),
        image_level=options.pop("image_level_privacy"),
    )
    settings = JoinSettings(
        data_dir=data_dir,
        superlink=superlink,
        ledger=ledger or default_ledger(options["site_name"]),
        device=device,
        policy=policy,
        **options,
    )
    settings.validate()
    check = check_site(
        DataConfig(
            data_dir=data_dir,
            labels=options["labels"],
            patient_pattern=options["patient_pattern"],
            cache_dir=Path(policy.cache_dir) if policy.cache_dir else None,
            allow_non_chest=policy.allow_non_chest,
        )
    )
    if not check.summary["usable"]:
        raise DataError(f"{data_dir}: no readable images; run 'cxr-client check --data {data_dir}' for the details")
    click.echo(
        f"site folder ok: {check.summary['images_readable']} images of {check.summary['patients']} patients ({check.summary['images_skipped']} skipped)",
        err=True,
    )
    start_supernode(settings)


def site_policy(
    path: Path | None,
    *,
    budget_epsilon: float | None,
    budget_delta: float | None,
    max_run_epsilon: float | None,
    trusted_fab_hashes: tuple[str, ...],
    cache_dir: Path | None,
    allow_non_chest: bool | None,
    image_level: bool | None,
) -> SitePolicy:
    """The site's policy: its YAML file (or the safe defaults) with the flags given on the command line on top."""
    values = SitePolicy.load(path, deployed=True).to_mapping() if path else SitePolicy().to_mapping()
    if budget_epsilon is not None:
        values["budget-epsilon"] = budget_epsilon
        if max_run_epsilon is None:
            values["max-run-epsilon"] = min(values["max-run-epsilon"], budget_epsilon)
    if budget_delta is not None:
        values["budget-delta"] = budget_delta
        values["max-run-delta"] = min(values["max-run-delta"], budget_delta)
    if max_run_epsilon is not None:
        values["max-run-epsilon"] = max_run_epsilon
    values["trusted-fab-hashes"] = [*values["trusted-fab-hashes"], *trusted_fab_hashes]
    if cache_dir is not None:
        values["cache-dir"] = str(cache_dir.expanduser().resolve())
    if allow_non_chest:
        values["allow-non-chest"] = True
    if image_level:
        values.update({"privacy-unit": "image", "allow-image-level": True})
    return SitePolicy.from_mapping(values, source=str(path or "command line"))


@cli.command("fab-hash")
@click.argument("app", type=click.Path(exists=True, path_type=Path))
def fab_hash_command(app: Path) -> None:
    """SHA-256 of an app bundle (a .fab file or an app folder) to pin in the site policy's trusted-fab-hashes."""
    from flwr.cli.build import build_fab_from_disk

    content = app.read_bytes() if app.is_file() else build_fab_from_disk(app)
    click.echo(hashlib.sha256(content).hexdigest())


@cli.command("budget")
@click.option(
    "--ledger", type=click.Path(path_type=Path), default=None, help="Ledger file (default: the one for --site-name)."
)
@click.option("--site-name", default="site", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def budget_command(ledger: Path | None, site_name: str, as_json: bool) -> None:
    """Privacy spent and remaining, per run and in total."""
    summary = SiteLedger.open_existing(ledger or default_ledger(site_name)).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(
        title=f"Privacy ledger {summary['ledger']} ({summary['accountant']} accountant, delta {summary['budget']['delta']})"
    )
    for column in ("run", "rounds", "DP steps", "other releases", "epsilon"):
        table.add_column(column, justify="left" if column in ("run", "other releases") else "right")
    for run, info in summary["runs"].items():
        table.add_row(
            run, str(info["rounds"]), str(info["steps"]), ", ".join(info["other_releases"]), f"{info['epsilon']:.3f}"
        )
    table.add_row("total (composed)", "", "", "", f"{summary['spent_epsilon']:.3f}")
    Console().print(table)
    click.echo(
        f"budget {summary['budget']['epsilon']}: spent {summary['spent_epsilon']:.3f}, remaining {summary['remaining_epsilon']:.3f}"
    )


@cli.command("keygen")
@click.option(
    "--out",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Private key file to create (the .pub goes to the operator).",
)
def keygen_command(key_path: Path) -> None:
    """Create this site's key pair for node authentication."""
    if key_path.exists():
        raise ConfigError(f"{key_path}: exists already; keep the registered key or choose another path")
    public = create_site_key(key_path)
    click.echo(f"private key {key_path} (keep it at the site); send {public} to the operator to register")


@cli.command("check")
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for pipelines).")
def check_command(as_json: bool, **options) -> None:
    """Validate a site folder: images found, readable and skipped (with reasons), patients, classes, sizes."""
    config = DataConfig(**options)
    result = check_site(config, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
    else:
        _print_check(result.summary)
    if not result.summary["usable"]:
        raise DataError(f"{config.data_dir}: no readable images; fix the skipped files listed above")


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
