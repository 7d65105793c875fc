"""``cxr-evaluate``: is the synthetic data worth using? TSTR vs TRTR vs the consortium's alternatives, plus
fidelity and realism."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cxr_fedsynth.common.atomic import write_json_atomic, write_text_atomic
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.common.evaluation.evaluate import EvaluationRequest, run_evaluation
from cxr_fedsynth.common.evaluation.realism_encoder import EncoderRecipe
from cxr_fedsynth.common.evaluation.report_html import render_evaluation
from cxr_fedsynth.common.publish.generate_cli import sampling_keep_option

REALISM_SHOWN = ("frechet_distance", "precision", "recall", "linear_probe_auroc", "cnn_two_sample_auroc")


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
@click.option(
    "--samples-per-class",
    default=EvaluationRequest.samples_per_class,
    show_default=True,
    type=click.IntRange(2),
    help="Synthetic images per class drawn for the TSTR classifier and the fidelity figures.",
)
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(1))
@click.option("--train-labels", type=click.Path(path_type=Path), default=None)
@click.option("--test-labels", type=click.Path(path_type=Path), default=None)
@click.option("--seed", default=0, show_default=True, type=int)
@sampling_keep_option
@click.option(
    "--discriminator",
    type=click.Path(path_type=Path),
    default=None,
    help="The run's discriminator (checkpoint/checkpoint.safetensors) to guide a generator published without one.",
)
@click.option(
    "--encoder",
    type=click.Path(path_type=Path),
    default=None,
    help="Self-supervised realism encoder (safetensors); with --public it is trained there when absent.",
)
@click.option(
    "--public",
    type=click.Path(path_type=Path),
    default=None,
    help="Public images of other patients: adds the public-only and public-pretrained DP-SGD baselines, and trains "
    "the realism encoder when --encoder is absent (without their labels).",
)
@click.option("--public-labels", type=click.Path(path_type=Path), default=None)
@click.option(
    "--encoder-steps",
    default=EncoderRecipe.steps,
    show_default=True,
    type=click.IntRange(1),
    help="Training steps when the encoder is trained (the recipe's other settings are fixed).",
)
@click.option(
    "--realism-draws",
    default=EvaluationRequest.realism_draws,
    show_default=True,
    type=click.IntRange(1),
    help="Draws of synthetic (and other-source) images the realism figures are averaged over.",
)
@click.option(
    "--show-real",
    is_flag=True,
    help="Show real held-out images beside the synthetic ones in evaluation.html (off: the page holds no real image).",
)
def cli(out_dir: Path, show_real: bool, **options) -> None:
    """Write evaluation.json and evaluation.html."""
    result = run_evaluation(EvaluationRequest(**options))
    report = result["report"]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "evaluation.json", report)
    write_text_atomic(
        out_dir / "evaluation.html",
        render_evaluation(
            report,
            result["synthetic"],
            result["synthetic_labels"],
            real=(result["real_test"], result["real_test_labels"]) if show_real else None,
        ),
    )
    for name, metrics in report["classifiers"].items():
        pn = metrics.get("pneumonia_vs_normal", {}).get("auroc", float("nan"))
        click.echo(
            f"{name}: macro AUROC {metrics['macro_auroc']:.3f}, pneumonia vs normal AUROC {pn:.3f}, accuracy {metrics['accuracy']:.3f}"
        )
    click.echo(report["baseline_verdict"])
    if report["realism"]:
        synthetic, control = report["realism"]["synthetic"], report["realism"]["real_control"]
        draws = len(report["realism"]["draws"]["synthetic"])
        click.echo(
            f"realism (synthetic, mean of {draws} draws / real-vs-real control): "
            + ", ".join(f"{k} {synthetic[k]:.3f} / {control[k]:.3f}" for k in REALISM_SHOWN)
        )
        other = report["realism"].get("other_source_real")
        if other:
            click.echo(
                f"realism of the public real X-rays (another source, mean of {draws} draws) for reference: "
                + ", ".join(f"{k} {other[k]:.3f}" for k in REALISM_SHOWN)
            )
    click.echo(f"wrote {out_dir / 'evaluation.html'}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
