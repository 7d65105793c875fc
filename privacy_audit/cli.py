"""``privacy-audit report``: audit a published generator; exit 0 pass, 1 policy failure, 2 error."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cxr_fedsynth.common.atomic import write_json_atomic, write_text_atomic
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.privacy_audit.audit import AuditRequest, run_audit
from cxr_fedsynth.privacy_audit.policy import load_policy
from cxr_fedsynth.privacy_audit.report_html import render_report

POLICY_FAILURE_EXIT = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Privacy audit of synthetic chest X-rays: memorization, nearest-neighbour distance, membership inference."""


@cli.command("report")
@click.option(
    "--generator", "generator_dir", required=True, type=click.Path(path_type=Path), help="Published generator folder."
)
@click.option(
    "--train",
    "train_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Training (member) images, any format the data layer reads.",
)
@click.option(
    "--holdout",
    "holdout_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Images of other patients, same distribution (non-members).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder for report.html and report.json."
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Policy YAML (default: the policy in the README).",
)
@click.option(
    "--discriminator",
    type=click.Path(path_type=Path),
    default=None,
    help="Aggregated discriminator (checkpoint/checkpoint.safetensors) for the white-box LOGAN attack (default: the one published with the generator for guided sampling, if any).",
)
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(10), help="Generated images to draw.")
@click.option(
    "--synthetic",
    "synthetic_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Audit this folder of synthetic images (with labels.csv) instead of sampling.",
)
@click.option("--train-labels", type=click.Path(path_type=Path), default=None)
@click.option("--holdout-labels", type=click.Path(path_type=Path), default=None)
@click.option(
    "--encoder", type=click.Path(path_type=Path), default=None, help="Reuse an encoder saved with --save-encoder."
)
@click.option("--save-encoder", type=click.Path(path_type=Path), default=None)
@click.option(
    "--show-real",
    is_flag=True,
    help="Include the real training images nearest to near-copies in the HTML (leaks them!).",
)
@click.option("--seed", default=0, show_default=True, type=int)
def report_command(out_dir: Path, policy_path: Path | None, show_real: bool, **options) -> None:
    """Run every check and write report.html (for people) and report.json (for pipelines)."""
    policy = load_policy(policy_path)
    result = run_audit(AuditRequest(**options), policy)
    report = result["report"]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "report.json", report)
    write_text_atomic(out_dir / "report.html", render_report(report, result["data"], show_real=show_real))
    failed = [v["check"] for v in report["verdicts"] if not v["passed"]]
    click.echo(
        f"{'PASS' if not failed else 'FAIL'}: {len(report['verdicts']) - len(failed)}/{len(report['verdicts'])} checks pass; report at {out_dir / 'report.html'}"
    )
    for check in failed:
        click.echo(f"  failed: {check}")
    if failed:
        raise click.exceptions.Exit(POLICY_FAILURE_EXIT)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
