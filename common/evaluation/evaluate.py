"""Train on synthetic, test on real (TSTR) against train on real (TRTR) and against what a consortium would do
without synthetic data: a classifier trained with DP-SGD on the real images at the generator's epsilon, from
scratch and after public pretraining, and one trained on the public set alone; plus fidelity and realism."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cxr_fedsynth.common.data.conditions import ConditionSet, load_condition_set
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.preprocess import to_uint8
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.evaluation import fidelity
from cxr_fedsynth.common.evaluation.classifier import (
    CompactCNN,
    TrainSettings,
    embed,
    judge_blocks,
    predict_proba,
    train_classifier,
    train_dp_classifier,
)
from cxr_fedsynth.common.evaluation.realism import DEFAULT_DRAWS, realism_figures
from cxr_fedsynth.common.evaluation.realism_encoder import EncoderRecipe, obtain_encoder
from cxr_fedsynth.common.evaluation.utility import classification_metrics
from cxr_fedsynth.common.progress import steps
from cxr_fedsynth.common.publish.artifacts import PublishedGenerator, load_discriminator, load_generator, sample

TSTR = "TSTR (train synthetic, test real)"
DP_SGD_DIRECT = "DP-SGD direct"
PUBLIC_ONLY = "public only (no privacy cost)"
PUBLIC_PRETRAINED_DP_SGD = "public-pretrained DP-SGD"


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate against which real data."""

    generator_dir: Path
    real_train: Path
    real_test: Path
    train_labels: Path | None = None
    test_labels: Path | None = None
    epsilon_baseline: float | None = None
    samples_per_class: int = 1200  # synthetic images per class for TSTR (chosen on the validation patients)
    epochs: int = 8
    seed: int = 0
    sampling_keep: float | None = None
    discriminator: Path | None = None
    cache_dir: Path | None = None
    show_progress: bool = True
    encoder: Path | None = None  # the self-supervised realism encoder (trained there on the public set if absent)
    public: Path | None = None  # public images of other patients: the public baselines and the encoder's training
    public_labels: Path | None = None
    encoder_steps: int = EncoderRecipe.steps
    realism_draws: int = DEFAULT_DRAWS  # synthetic draws the realism figures are averaged over

    def read(self, folder: Path, labels: Path | None, conditions: ConditionSet, size: int) -> SiteImages:
        """Decoded labelled images of ``folder`` at ``size`` px, through the request's cache."""
        return load_labelled_images(
            folder,
            conditions,
            labels=labels,
            image_size=size,
            cache_dir=self.cache_dir,
            show_progress=self.show_progress,
        )


def _refuse_shared_patients(images: SiteImages, others: SiteImages, where: Path, others_flag: str, fix: str) -> None:
    overlap = set(images.patient_ids) & set(others.patient_ids)
    if overlap:
        example = sorted(overlap)[0]
        raise DataError(f"{where}: {len(overlap)} patient(s) also in {others_flag} (e.g. {example}); {fix}")


def synthetic_set(
    published: PublishedGenerator, per_class: int, *, seed: int, keep: float
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` uint8 samples of every class [N, S, S] and their class indices, as ``cxr-evaluate`` draws them."""
    images = np.concatenate(
        [to_uint8(sample(published, c, per_class, seed=seed + i, keep=keep)) for i, c in enumerate(published.classes)]
    )
    return images, np.repeat(np.arange(len(published.classes)), per_class)


def run_evaluation(request: EvaluationRequest) -> dict:
    """Every utility and fidelity figure, JSON-ready, plus the image arrays the HTML shows."""
    published = load_generator(request.generator_dir)
    if request.discriminator is not None:
        published = replace(
            published, discriminator=load_discriminator(request.discriminator, published.generator.arch)
        )
    keep = published.sampling_keep if request.sampling_keep is None else request.sampling_keep
    classes = published.classes
    conditions = load_condition_set(published.card["condition_set"])
    size = published.image_size
    train = request.read(request.real_train, request.train_labels, conditions, size)
    test = request.read(request.real_test, request.test_labels, conditions, size)
    _refuse_shared_patients(test, train, request.real_test, "--real-train", "test on other patients")
    public = None
    if request.public is not None:
        public = request.read(request.public, request.public_labels, conditions, size)
        _refuse_shared_patients(
            public, test, request.public, "--real-test", "public patients must not be test patients"
        )
    synthetic, synthetic_labels = synthetic_set(published, request.samples_per_class, seed=request.seed, keep=keep)
    settings = TrainSettings(epochs=request.epochs, seed=request.seed)

    classifiers = 3 if public is None else 5
    with steps(
        classifiers, "training the TSTR, TRTR and baseline classifiers", enabled=request.show_progress
    ) as advance:
        tstr = train_classifier(synthetic, synthetic_labels, len(classes), settings)
        advance()
        trtr = train_classifier(train.images, train.conditions, len(classes), settings)
        advance()
        results = {
            TSTR: classification_metrics(predict_proba(tstr, test.images), test.conditions, classes, seed=request.seed),
            "TRTR (train real, test real)": classification_metrics(
                predict_proba(trtr, test.images), test.conditions, classes, seed=request.seed
            ),
            # class fidelity: does a classifier of real images see the label each synthetic image was drawn for?
            "TRTS (train real, test synthetic)": classification_metrics(
                predict_proba(trtr, synthetic), synthetic_labels, classes, seed=request.seed
            ),
        }
        baselines = _add_baselines(results, request, published, train, test, public, settings, advance)
    baseline_note = _compare(results, baselines)

    real_features, synthetic_features = embed(trtr, test.images), embed(trtr, synthetic)
    fid = {
        "overall": {
            **fidelity.frechet_and_kid(test.images, synthetic, trtr),
            **fidelity.prdc(real_features, synthetic_features),
        },
        "per_class": {},
    }
    diversity, histograms = {}, {}
    for i, name in enumerate(classes):
        real_c, syn_c = test.images[test.conditions == i], synthetic[synthetic_labels == i]
        if len(real_c) >= 2:
            fid["per_class"][name] = fidelity.frechet_and_kid(real_c, syn_c, trtr)
        diversity[name] = {
            "synthetic": fidelity.within_class_diversity(syn_c, seed=request.seed),
            "real": fidelity.within_class_diversity(train.images[train.conditions == i], seed=request.seed),
        }
        histograms[name] = {
            "synthetic": fidelity.intensity_histogram(syn_c),
            "real": fidelity.intensity_histogram(real_c) if len(real_c) else [],
        }
    two_sample = fidelity.two_sample_test(test.images, synthetic, seed=request.seed)
    realism = _realism(request, size, test, public, synthetic, synthetic_labels)
    report = {
        "generator": {
            "path": str(request.generator_dir),
            "run_name": published.card.get("run_name"),
            "private": published.private,
            "claimed_epsilon": published.claimed_epsilon,
            "weights_sha256": published.card.get("weights_sha256"),
        },
        "data": {
            "train_images": len(train.records),
            "train_patients": len(set(train.patient_ids)),
            "test_images": len(test.records),
            "test_patients": len(set(test.patient_ids)),
            "public_images": 0 if public is None else len(public.records),
            "synthetic_per_class": request.samples_per_class,
            "sampling_keep": keep,
        },
        "classes": classes,
        "classifiers": results,
        "baseline_verdict": baseline_note,
        "fidelity": fid,
        "realism": realism,
        "classifier_two_sample_accuracy": two_sample["accuracy"],
        "classifier_two_sample_auroc": two_sample["auroc"],
        "within_class_diversity": diversity,
        "intensity_histograms": histograms,
        "settings": {
            "epochs": request.epochs,
            "seed": request.seed,
            "classifier": f"CompactCNN ({judge_blocks(size)} conv blocks, GroupNorm)",
            "feature_encoder": "the TRTR classifier's penultimate layer",
        },
    }
    return {
        "report": report,
        "synthetic": synthetic,
        "synthetic_labels": synthetic_labels,
        "real_test": test.images,
        "real_test_labels": test.conditions,
    }


def _realism(
    request: EvaluationRequest,
    size: int,
    test: SiteImages,
    public: SiteImages | None,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
) -> dict | None:
    """Realism figures in the self-supervised encoder's space with their real-vs-real controls (None: no encoder)."""
    if request.encoder is None:
        return None
    encoder, recipe, digest = obtain_encoder(
        request.encoder,
        image_size=size,
        public_images=None if public is None else public.images,
        recipe=EncoderRecipe(image_size=size, steps=request.encoder_steps),
        show_progress=request.show_progress,
    )
    figures = realism_figures(
        test.images,
        test.conditions,
        test.patient_ids,
        synthetic,
        synthetic_labels,
        encoder,
        other_source=None if public is None else public.images,
        draws=request.realism_draws,
        seed=request.seed,
    )
    return {**figures, "encoder": {"sha256": digest, "recipe": asdict(recipe), "path": str(request.encoder)}}


def _add_baselines(
    results: dict,
    request: EvaluationRequest,
    published: PublishedGenerator,
    train: SiteImages,
    test: SiteImages,
    public: SiteImages | None,
    settings: TrainSettings,
    advance: Callable[[], None],
) -> list[str]:
    """Train the consortium's alternatives to synthetic data into ``results``; returns their names.

    DP-SGD on the real training images at the generator's epsilon (skipped without an epsilon to match), from
    scratch and, with a public set, fine-tuned from the public classifier; and the public classifier alone.
    """
    epsilon = request.epsilon_baseline if request.epsilon_baseline is not None else published.claimed_epsilon
    classes, names = published.classes, []

    def record(name: str, model: CompactCNN, spent: float | None = None) -> None:
        results[name] = classification_metrics(
            predict_proba(model, test.images), test.conditions, classes, seed=request.seed
        )
        if spent is not None:
            results[name]["epsilon_spent"] = spent
        names.append(name)

    def dp_sgd(start_from: CompactCNN | None) -> tuple[CompactCNN, float]:
        return train_dp_classifier(
            train.images,
            train.conditions,
            len(classes),
            settings,
            epsilon=float(epsilon),
            delta=published.delta,
            start_from=start_from,
        )

    if epsilon is not None:
        record(f"{DP_SGD_DIRECT} (real, epsilon {epsilon:.3g})", *dp_sgd(None))
    advance()
    if public is not None:
        public_model = train_classifier(public.images, public.conditions, len(classes), settings)
        record(PUBLIC_ONLY, public_model)
        advance()
        if epsilon is not None:
            record(f"{PUBLIC_PRETRAINED_DP_SGD} (real, epsilon {epsilon:.3g})", *dp_sgd(public_model))
        advance()
    return names


def _compare(results: dict, baselines: list[str]) -> str:
    """Plain words: is the synthetic data worth more than the strongest alternative (by macro AUROC)?"""
    if not baselines:
        return "no baseline (a NOT PRIVATE generator without --epsilon-baseline and no --public): nothing to compare"
    tstr = results[TSTR]
    strongest = max(baselines, key=lambda name: results[name]["macro_auroc"])

    def figures(metrics: dict) -> str:
        pn = metrics.get("pneumonia_vs_normal", {}).get("auroc", float("nan"))
        return f"macro AUROC {metrics['macro_auroc']:.3f}, pneumonia vs normal {pn:.3f}"

    verdict = (
        "synthetic data BEATS the strongest alternative"
        if tstr["macro_auroc"] > results[strongest]["macro_auroc"]
        else f"synthetic data does NOT beat the strongest alternative: use the {strongest} classifier instead"
    )
    return f"{verdict}: TSTR {figures(tstr)} vs {strongest} {figures(results[strongest])}"
