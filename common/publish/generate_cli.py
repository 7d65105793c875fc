"""``cxr-generate``: sample labelled synthetic chest X-rays from a published generator (PNG or DICOM)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from PIL import Image, PngImagePlugin

from cxr_fedsynth.common.atomic import atomic_path, write_json_atomic
from cxr_fedsynth.common.cli_errors import run_cli
from cxr_fedsynth.common.data.preprocess import to_uint8
from cxr_fedsynth.common.publish.artifacts import load_generator, sample
from cxr_fedsynth.common.publish.synthetic_dicom import write_synthetic_dicoms

sampling_keep_option = click.option(
    "--sampling-keep",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Guided sampling's share of candidates kept (default: the generator's card; 1 = plain samples).",
)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--generator",
    "generator_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of a published generator.",
)
@click.option("--class", "class_names", multiple=True, help="Class to sample (repeatable; default: every class).")
@click.option(
    "-n", "--count", default=16, show_default=True, type=click.IntRange(1, 1_000_000), help="Images per class."
)
@click.option("--format", "fmt", type=click.Choice(["png", "dicom"]), default="png", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@sampling_keep_option
def cli(
    generator_dir: Path,
    class_names: tuple[str, ...],
    count: int,
    fmt: str,
    out_dir: Path,
    seed: int,
    sampling_keep: float | None,
) -> None:
    """Write COUNT synthetic images per class, plus a labels.csv naming each file's class."""
    published = load_generator(generator_dir)
    classes = list(class_names) or published.classes
    out_dir.mkdir(parents=True, exist_ok=True)
    note = "SYNTHETIC (cxr-fedsynth)" + ("" if published.private else " - NOT PRIVATE: generator trained without DP")
    rows = ["Image Index,Finding Labels,Synthetic,Generator"]
    for offset, name in enumerate(classes):
        images = to_uint8(sample(published, name, count, seed=seed + 1_000_003 * offset, keep=sampling_keep))
        prefix = f"synthetic_{_slug(name)}"
        if fmt == "dicom":
            files = write_synthetic_dicoms(
                images,
                out_dir,
                class_name=name,
                generator_name=published.card["run_name"],
                private=published.private,
                prefix=prefix,
            )
        else:
            files = []
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", f"{note}; class {name}")
            for i, image in enumerate(images):
                path = out_dir / f"{prefix}_{i:05d}.png"
                with atomic_path(path) as tmp:
                    Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
                files.append(path)
        rows += [f"{p.name},{name},true,{published.card['run_name']}" for p in files]
        click.echo(f"{name}: {len(files)} {fmt.upper()} file(s)")
    with atomic_path(out_dir / "labels.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    write_json_atomic(
        out_dir / "SYNTHETIC.json",
        {
            "synthetic": True,
            "private": published.private,
            "generator": published.card["run_name"],
            "weights_sha256": published.card["weights_sha256"],
            "note": note,
        },
    )
    click.echo(f"wrote {len(rows) - 1} synthetic images to {out_dir}" + ("" if published.private else " (NOT PRIVATE)"))


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(cli))
