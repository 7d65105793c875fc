"""Per block of a run's feature release: how large is the class gap, and how large the release's noise?

    python simulations/experiments/release_gap.py runs/<run> [--classes "No Finding" Pneumonia]

For a run of ``run_experiment.py`` with feature matching, embeds the sites' training images (the run's
``split/train.csv``, from ``$CXR_SHARED_DATA/cxr128``) in the run's frozen feature space, decodes the exact
patient-weighted class means the sites would have released without noise, and prints, block by block, the
squared gap between the two classes' exact means next to each target's squared distance from its exact mean (the
release's noise; in runs that widen the class gaps, the widening too, as G is given the targets), then how well
the targets' gap and the gap between G's own samples (400 per class, plain sampling, as ``cxr-evaluate`` draws
them) point the exact gap's way (cosines).
Offline analysis of numbers the server already holds plus the private images: a diagnostic, not part of a run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.preprocess import to_model_range
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.evaluation.evaluate import synthetic_set
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import FeatureMatcher, block_lengths, embed_in_batches, patient_class_sums
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.publish.artifacts import load_generator

#: The run-config keys that shape the feature space (the card's training settings also hold keys that only
#: make sense with the run's data paths, which the card leaves out).
SPACE_KEYS = (
    "seed",
    "image-size",
    "latent-dim",
    "g-width",
    "d-width",
    "feature-statistics",
    "feature-pixel-grid",
    "feature-pixel-share",
    "feature-count-share",
)


def block_names(matcher: FeatureMatcher) -> list[str]:
    """A name for every block of the matcher's embedding, in order."""
    grid = matcher.spec.pixel_grid
    channels = [layer.out_channels for layer in matcher.features if isinstance(layer, torch.nn.Conv2d)]
    return ([f"pixels {grid} x {grid}"] if grid else []) + [
        f"D block {i + 1} ({c} channels)" for i, c in enumerate(channels)
    ]


def block_columns(matcher: FeatureMatcher) -> list[tuple[str, slice]]:
    """Each block's name and columns in the embedding, then ("all", every column)."""
    offsets = [0]
    for length in block_lengths(matcher.features, matcher.spec):
        offsets.append(offsets[-1] + length)
    return [(name, slice(start, stop)) for name, start, stop in zip(block_names(matcher), offsets, offsets[1:])] + [
        ("all", slice(None))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--classes", nargs=2, default=["No Finding", "Pneumonia"])
    args = parser.parse_args()
    card = json.loads((args.run / "model_card.json").read_text())
    settings = {k: v for k, v in card["training"].items() if k in SPACE_KEYS}
    settings.setdefault("feature-pixel-grid", 0)  # cards written before the pixel block existed
    config = ExperimentConfig.from_run_config(settings)
    conditions = load_condition_set(card["condition_set"])
    _, discriminator = build_models(config.architecture(len(conditions.names)), seed=config.seed)
    matcher = FeatureMatcher(discriminator.features, len(conditions.names), config.embedding_spec)
    state = load_file(str(args.run / "checkpoint" / "checkpoint.safetensors"))
    matcher.load_state_dict(
        {k.removeprefix("feature_matcher."): v for k, v in state.items() if k.startswith("feature_matcher.")}
    )
    data = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()
    train = load_labelled_images(
        data, conditions, labels=args.run / "split" / "train.csv", image_size=config.image_size, show_progress=False
    )
    embeddings = embed_in_batches(matcher.embed, to_model_range(train.images), device=torch.device("cpu"))
    sums = patient_class_sums(
        embeddings,
        torch.from_numpy(train.conditions),
        train.patient_ids,
        len(conditions.names),
        count_share=matcher.count_share,
    )
    exact_space = copy.deepcopy(matcher)
    exact_space.set_targets(sums)
    exact, noisy = exact_space.targets, matcher.targets
    a, b = (conditions.names.index(name) for name in args.classes)
    print(
        f"| block | numbers | squared {args.classes[0]}-{args.classes[1]} gap (exact) | squared noise, {args.classes[0]} | squared noise, {args.classes[1]} | gap / noise ({args.classes[0]}) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, cols in block_columns(matcher):
        gap = (exact[a, cols] - exact[b, cols]).pow(2).sum().item()
        noise_a, noise_b = ((noisy[c, cols] - exact[c, cols]).pow(2).sum().item() for c in (a, b))
        print(
            f"| {name} | {exact[0, cols].numel()} | {gap:.4f} | {noise_a:.4f} | {noise_b:.4f} | {gap / noise_a:.2f} |"
        )
    images, labels = synthetic_set(load_generator(args.run), 400, seed=0, keep=1.0)
    generated = embed_in_batches(matcher.embed, to_model_range(images), device=torch.device("cpu"))
    labels = torch.from_numpy(labels)
    generated_means = torch.stack([generated[labels == c].mean(0) for c in (a, b)])
    print(
        "\n| block | cos(target gap, exact gap) | cos(G's gap, exact gap) | cos(G's gap, target gap) | G's gap length / target's |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, cols in block_columns(matcher):
        exact_gap, target_gap, generated_gap = (
            m[0, cols] - m[1, cols] for m in (exact[[a, b]], noisy[[a, b]], generated_means)
        )
        cosines = [
            torch.nn.functional.cosine_similarity(u, v, dim=0).item()
            for u, v in ((target_gap, exact_gap), (generated_gap, exact_gap), (generated_gap, target_gap))
        ]
        print(
            f"| {name} | "
            + " | ".join(f"{c:.2f}" for c in cosines)
            + f" | {(generated_gap.norm() / target_gap.norm()).item():.2f} |"
        )


if __name__ == "__main__":
    main()
