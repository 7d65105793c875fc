"""``cxr-evaluate``: is the synthetic data worth using? TSTR vs TRTR vs DP-SGD direct, plus fidelity."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cxr_fedsynth.common.atomic import write_json_atomic, write_text_atomic
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.common.evaluation.evaluate import EvaluationRequest, run_evaluation
from cxr_fedsynth.common.evaluation.report_html import render_evaluation


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--generator", "generator_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--real-train",
    required=True,
    type=click.Path(path_type=Path),
    help="Real training images (for TRTR and the DP-SGD baseline).",
)
@click.option("--real-test", required=True, type=click.Path(path_type=Path), help="Real test images of other patients.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--epsilon-baseline",
    type=float,
    default=None,
    help="Epsilon for the direct DP-SGD classifier (default: the generator's).",
)
@click.option("--samples-per-class", default=400, show_default=True, type=click.IntRange(2))
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(1))
@click.option("--train-labels", type=click.Path(path_type=Path), default=None)
@click.option("--test-labels", type=click.Path(path_type=Path), default=None)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--sampling-keep",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Guided sampling's share of candidates kept (default: the generator's card; 1 = plain samples).",
)
@click.option(
    "--discriminator",
    type=click.Path(path_type=Path),
    default=None,
    help="The run's discriminator (checkpoint/checkpoint.safetensors) to guide a generator published without one.",
)
def cli(out_dir: Path, **options) -> None:
    """Write evaluation.json and evaluation.html."""
    result = run_evaluation(EvaluationRequest(**options))
    report = result["report"]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "evaluation.json", report)
    write_text_atomic(
        out_dir / "evaluation.html", render_evaluation(report, result["synthetic"], result["synthetic_labels"])
    )
    for name, metrics in report["classifiers"].items():
        pn = metrics.get("pneumonia_vs_normal", {}).get("auroc", float("nan"))
        click.echo(
            f"{name}: macro AUROC {metrics['macro_auroc']:.3f}, pneumonia vs normal AUROC {pn:.3f}, accuracy {metrics['accuracy']:.3f}"
        )
    click.echo(report["baseline_verdict"])
    click.echo(f"wrote {out_dir / 'evaluation.html'}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
