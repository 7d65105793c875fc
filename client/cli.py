"""``cxr-client``: what a hospital runs. ``check`` validates a site folder before it joins a federation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from common.cli_errors import run_cli
from common.data_config import DataConfig
from common.errors import DataError
from common.site_check import check_site

MAX_SKIPS_SHOWN = 20


def data_options(func):
    """Options shared by every command that reads a site folder."""
    options = [
        click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path), help="Site folder with the X-rays."),
        click.option("--labels", type=click.Path(path_type=Path), default=None, help="Label CSV (default: a Data_Entry_2017.csv/metadata.csv in --data, else class folders)."),
        click.option("--conditions", default="coarse", show_default=True, help="Condition set: coarse, nih6, nih14, or a YAML file; ':A,B' keeps only those classes."),
        click.option("--image-size", default=64, show_default=True, type=int, help="Training resolution (32, 64, 128, 256)."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Preprocessed-image cache (default $CXR_CACHE_DIR or ~/.cache/cxr-fedsynth)."),
        click.option("--patient-pattern", default=None, help=r"Regex on file names giving the patient ID when no table column or DICOM tag has it, e.g. '^(person\d+)_'."),
        click.option("--allow-non-chest", is_flag=True, help="Accept DICOMs whose Modality/BodyPartExamined say they are not chest radiographs."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _print_check(summary: dict) -> None:
    console = Console()
    table = Table(title=f"Site check: {summary['data_dir']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("label_source", "patient_id_source", "conditions", "images_found", "images_readable", "images_skipped", "patients", "image_size"):
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """cxr-fedsynth site client: check a site's X-ray folder and join a federation."""


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
