"""``cxr-split``: write the simulation's patient-level split (sites and holdout) as label tables.

Uses the same code and settings as ``flwr run simulations/nih_split``, so ``holdout.csv`` lists exactly the
patients no simulated site saw: pass it to ``cxr-evaluate --test-labels`` and ``privacy-audit --holdout-labels``
(with the same data folder), and ``train.csv`` as the members. With ``test-fraction`` > 0, ``test.csv`` holds
the untouched test patients (neither sites nor holdout): choose settings on the holdout, report once on these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pandas as pd
from flwr.common.config import parse_config_args

from cxr_fedsynth.common.atomic import atomic_path
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.common.data.records import ImageRecord
from cxr_fedsynth.common.data.simulated_sites import dataset_dir, read_run_dataset, split_records
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.experiment_config import ExperimentConfig


def _write_table(records: list[ImageRecord], data_dir: Path, path: Path) -> None:
    rows = [
        {
            "Image Index": str(r.path.relative_to(data_dir)),
            "Finding Labels": "|".join(r.findings),
            "Patient ID": r.patient_id,
        }
        for r in records
    ]
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=["Image Index", "Finding Labels", "Patient ID"]).to_csv(tmp, index=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--num-sites", default=2, show_default=True, type=click.IntRange(1))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--public-prefix",
    default="",
    help="File-name prefix of the images that form the PUBLIC set (e.g. nih_): written to public.csv, the rest to "
    "private.csv, which the sites and the holdout are then drawn from (run the simulation with labels=<out>/private.csv).",
)
@click.option(
    "--run-config",
    "overrides",
    multiple=True,
    help="Run-config settings exactly as given to flwr run --run-config, e.g. \"data-dir='/data' seed=0\".",
)
def cli(num_sites: int, out_dir: Path, public_prefix: str, overrides: tuple[str, ...]) -> None:
    """Write train.csv, holdout.csv, site-<k>.csv and, with test-fraction, test.csv for a simulation's settings
    (and public/private tables)."""
    config = ExperimentConfig.from_run_config(parse_config_args(list(overrides)))
    data_dir = dataset_dir(config)
    records = read_run_dataset(config).records
    out_dir.mkdir(parents=True, exist_ok=True)
    if public_prefix:
        records = _split_public(config, records, data_dir, out_dir, public_prefix)
    split = split_records(config, records, num_sites)
    for k, records in enumerate(split.sites):
        _write_table(records, data_dir, out_dir / f"site-{k}.csv")
    _write_table([r for site in split.sites for r in site], data_dir, out_dir / "train.csv")
    _write_table(split.holdout, data_dir, out_dir / "holdout.csv")
    tested = f", {len(split.test)} test images" if split.test else ""
    if split.test:
        _write_table(split.test, data_dir, out_dir / "test.csv")
    click.echo(
        f"data {data_dir}: {sum(map(len, split.sites))} training images at {num_sites} sites, "
        f"{len(split.holdout)} holdout images{tested} -> {out_dir}"
    )


def _split_public(
    config: ExperimentConfig, records: list[ImageRecord], data_dir: Path, out_dir: Path, prefix: str
) -> list[ImageRecord]:
    """Write public.csv / private.csv by file-name prefix; returns the private records as the simulation reads them."""
    public = [r for r in records if r.path.name.startswith(prefix)]
    private = [r for r in records if not r.path.name.startswith(prefix)]
    if not public or not private:
        raise DataError(
            f"--public-prefix {prefix!r} matches {len(public)} of {len(records)} images in {data_dir}; both sets must be non-empty"
        )
    shared = {r.patient_id for r in public} & {r.patient_id for r in private}
    if shared:
        raise DataError(
            f"--public-prefix {prefix!r}: {len(shared)} patient(s) have public and private images (e.g. {sorted(shared)[0]}); choose a prefix that splits by patient"
        )
    _write_table(public, data_dir, out_dir / "public.csv")
    _write_table(private, data_dir, out_dir / "private.csv")
    click.echo(
        f"public set: {len(public)} images of {len({r.patient_id for r in public})} patients -> {out_dir / 'public.csv'}"
    )
    return read_run_dataset(config.replace(labels=str(out_dir / "private.csv"))).records


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
