"""What the realism encoder's figures respond to, and whether post-processing fixes the synthetic images.

    python simulations/experiments/realism_references.py runs/default-nodp [runs/default-eps10 ...]
        --encoder runs/realism-encoder-nih_64px.safetensors [--on holdout|test]

Against half A of the real evaluated patients (as ``cxr-evaluate`` splits them), one row each for: half B (the
control); half B with its detail removed (downsampled by 2, 4 or 8, then bicubic back to full size); the public
real X-rays (other patients, another source); and, per run, its synthetic images as published and after a
public-only upsampler: the product's super-resolution network (``common.gan.super_resolution``), trained on the
public images alone, restoring the detail that area downsampling by 2 or 4 removes, applied to the synthetic
images as post-processing (no privacy cost). The upsampler's rows on half B say how much it restores on real images.
Further rows per run (none costs privacy): the truncation trick (latents scaled by TRUNCATION_PSI), film
grain (Gaussian noise of GRAIN_SD grey levels), an unsharp mask, and public-critic selection (of twice as many
synthetic images, the half a CNN trained to tell the public X-rays from other synthetic images rates most real,
class by class). A second table gives the probe within each class: half A's images of the class against half
B's (the control) and against as many synthetic images of the class.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from run_experiment import DATA, EVALUATIONS  # the script beside this one (run as a script, its folder is on sys.path)

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.preprocess import to_model_range, to_uint8
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.evaluation.classifier import TrainSettings, embed, predict_proba, train_classifier
from cxr_fedsynth.common.evaluation.evaluate import synthetic_set
from cxr_fedsynth.common.evaluation.realism import (
    class_mix_counts,
    encoder_figures,
    linear_probe_auroc,
    patient_halves,
    pick_per_class,
)
from cxr_fedsynth.common.evaluation.realism_encoder import RealismEncoder, load_encoder
from cxr_fedsynth.common.gan.super_resolution import (
    SuperResolution,
    SuperResolutionSpec,
    downsample,
    train_super_resolution,
)
from cxr_fedsynth.common.publish.artifacts import PublishedGenerator, load_generator, member_share
from cxr_fedsynth.common.publish.model_card import published_image_size

DETAIL_FACTORS = (2, 4, 8)
UPSAMPLER_FACTORS = (2, 4)
GRAIN_SD = 4.0  # grey levels of the film-grain row
UNSHARP_SIGMA, UNSHARP_AMOUNT = 1.0, 1.0
TRUNCATION_PSI = 0.8
CRITIC_TRAINING_IMAGES = 200  # synthetic images per class the public critic learns from (a draw of their own)
MIN_PER_CLASS = 10  # the per-class probe needs this many images of a class in each half


def remove_detail(images: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by ``factor`` (area) and interpolate back to full size (bicubic)."""
    low = downsample(to_model_range(images), factor)
    return to_uint8(F.interpolate(low, size=images.shape[1:], mode="bicubic", align_corners=False))


def train_upsampler(public: np.ndarray, factor: int) -> SuperResolution:
    """The product's public super-resolution network (``super-resolution`` = ``factor``), trained on the public images."""
    return train_super_resolution(to_model_range(public), SuperResolutionSpec(factor), show_progress=False)


def upsample(network: SuperResolution, images: np.ndarray) -> np.ndarray:
    """The images' detail removed by area downsampling, then restored by the network."""
    with torch.inference_mode():
        return to_uint8(network(downsample(to_model_range(images), network.spec.factor)))


def truncated_draw(published: PublishedGenerator, counts: dict[int, int], *, seed: int = 0) -> np.ndarray:
    """``counts[c]`` images of each class c drawn from latents scaled by TRUNCATION_PSI, in equal shares from every
    published generator member."""
    generators = published.generators
    gen = torch.Generator().manual_seed(seed)
    images = []
    for c, n in counts.items():
        for index, g in enumerate(generators):
            share = member_share(n, len(generators), index)
            z = TRUNCATION_PSI * torch.randn(share, g.arch.latent_dim, generator=gen)
            with torch.inference_mode():
                images.append(to_uint8(g(z, torch.full((share,), c))))
    return np.concatenate(images)


def add_grain(images: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Images plus Gaussian noise of GRAIN_SD grey levels."""
    noisy = images + np.random.default_rng(seed).normal(0.0, GRAIN_SD, images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def unsharp_mask(images: np.ndarray) -> np.ndarray:
    """Images plus UNSHARP_AMOUNT times their difference from a Gaussian blur of UNSHARP_SIGMA px."""
    x = to_model_range(images)
    blurred = TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[UNSHARP_SIGMA, UNSHARP_SIGMA])
    return to_uint8((x + UNSHARP_AMOUNT * (x - blurred)).clamp(-1, 1))


def public_critic_selection(public: np.ndarray, published: PublishedGenerator, counts: dict[int, int]) -> np.ndarray:
    """``counts[c]`` synthetic images of each class c: of twice as many, those a public-vs-synthetic CNN rates most
    real (the critic learns from the public X-rays and another draw of synthetic images: no privacy cost)."""
    training, _ = synthetic_set(published, CRITIC_TRAINING_IMAGES, seed=1000, keep=1.0)
    x = np.concatenate([public, training])
    y = np.r_[np.zeros(len(public), int), np.ones(len(training), int)]
    critic = train_classifier(x, y, 2, TrainSettings())
    candidates, labels = synthetic_set(published, 2 * max(counts.values()), seed=0, keep=1.0)
    fake = predict_proba(critic, candidates)[:, 1]
    kept = [np.flatnonzero(labels == c)[np.argsort(fake[labels == c])[:n]] for c, n in counts.items()]
    return candidates[np.concatenate(kept)]


def per_class_probe(
    features_a: np.ndarray, labels_a: np.ndarray, other: np.ndarray, other_labels: np.ndarray, encoder: RealismEncoder
) -> dict[int, float]:
    """The linear probe of half A (its encoder features) against ``other`` within each class both hold
    MIN_PER_CLASS images of."""
    features_other = embed(encoder, other)
    return {
        int(c): linear_probe_auroc(features_a[labels_a == c], features_other[other_labels == c])
        for c in np.unique(labels_a)
        if min(np.sum(labels_a == c), np.sum(other_labels == c)) >= MIN_PER_CLASS
    }


def figures(a: np.ndarray, other: np.ndarray, encoder: RealismEncoder) -> list[float]:
    """Frechet distance, precision, recall and the linear probe of ``other`` against half A, as cxr-evaluate has them."""
    found = encoder_figures(a, other, encoder)
    return [found[key] for key in ("frechet_distance", "precision", "recall", "linear_probe_auroc")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of run_experiment.py (one shared split)")
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--on", choices=sorted(EVALUATIONS), default="holdout")
    args = parser.parse_args()
    size = published_image_size(json.loads((args.runs[0] / "model_card.json").read_text()))
    split, conditions = args.runs[0] / "split", load_condition_set("coarse")
    encoder, _, _ = load_encoder(args.encoder)

    def read(table: str) -> SiteImages:
        return load_labelled_images(DATA, conditions, labels=split / table, image_size=size, show_progress=False)

    evaluated, public = read(f"{args.on}.csv"), read("public.csv")
    a, b = patient_halves(evaluated.patient_ids)
    real_a, real_b = evaluated.images[a], evaluated.images[b]
    labels_a, labels_b = np.asarray(evaluated.conditions)[a], np.asarray(evaluated.conditions)[b]
    features_a = embed(encoder, real_a)
    within_class = {"real half B (control)": per_class_probe(features_a, labels_a, real_b, labels_b, encoder)}
    rows = {"real half B (control)": real_b}
    rows |= {f"real half B, detail removed x{f}": remove_detail(real_b, f) for f in DETAIL_FACTORS}
    drawn = np.random.default_rng(0).choice(len(public.images), min(len(real_b), len(public.images)), replace=False)
    rows["public real X-rays (another source)"] = public.images[drawn]
    upsamplers = {f: train_upsampler(public.images, f) for f in UPSAMPLER_FACTORS}
    rows |= {f"real half B through the public upsampler x{f}": upsample(u, real_b) for f, u in upsamplers.items()}
    for run in args.runs:
        published = load_generator(run)
        synthetic, labels = synthetic_set(published, 400, seed=0, keep=1.0)
        counts = class_mix_counts(labels, labels_b)
        picked = pick_per_class(labels, counts)
        fake = synthetic[picked]
        rows[f"{run.name}: synthetic"] = fake
        rows |= {f"{run.name}: synthetic through the upsampler x{f}": upsample(u, fake) for f, u in upsamplers.items()}
        rows[f"{run.name}: synthetic, truncation psi {TRUNCATION_PSI:g}"] = truncated_draw(published, counts)
        rows[f"{run.name}: synthetic with film grain (sd {GRAIN_SD:g} grey levels)"] = add_grain(fake)
        rows[f"{run.name}: synthetic through an unsharp mask"] = unsharp_mask(fake)
        rows[f"{run.name}: synthetic, public-critic selection"] = public_critic_selection(
            public.images, published, counts
        )
        within_class[f"{run.name}: synthetic"] = per_class_probe(features_a, labels_a, fake, labels[picked], encoder)
    print(f"Against real half A of the {args.on} patients ({len(real_a)} images):\n")
    print("| images | FD | precision | recall | linear probe |\n| --- | ---: | ---: | ---: | ---: |")
    for name, images in rows.items():
        print(
            f"| {name} | " + " | ".join(f"{v:.3f}" for v in figures(real_a, images, encoder)) + " |",
            flush=True,
        )
    classes = sorted({c for probes in within_class.values() for c in probes})
    names = [conditions.names[c] for c in classes]
    print(f"\nLinear probe within each class against half A:\n\n| images | {' | '.join(names)} |")
    print("| --- |" + " ---: |" * len(classes))
    for name, probes in within_class.items():
        print(f"| {name} | " + " | ".join(f"{probes[c]:.3f}" if c in probes else "" for c in classes) + " |")


if __name__ == "__main__":
    main()
