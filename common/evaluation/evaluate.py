"""Train on synthetic, test on real (TSTR) against train on real (TRTR) and against the honest baseline, a
classifier trained directly on the real images with DP-SGD at the generator's epsilon; plus fidelity."""

from __future__ import annotations

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
    TrainSettings,
    embed,
    predict_proba,
    train_classifier,
    train_dp_classifier,
)
from cxr_fedsynth.common.evaluation.realism import realism_figures
from cxr_fedsynth.common.evaluation.realism_encoder import EncoderRecipe, obtain_encoder
from cxr_fedsynth.common.evaluation.utility import classification_metrics
from cxr_fedsynth.common.progress import steps
from cxr_fedsynth.common.publish.artifacts import PublishedGenerator, load_discriminator, load_generator, sample


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate against which real data."""

    generator_dir: Path
    real_train: Path
    real_test: Path
    train_labels: Path | None = None
    test_labels: Path | None = None
    epsilon_baseline: float | None = None
    samples_per_class: int = 400
    epochs: int = 8
    seed: int = 0
    sampling_keep: float | None = None
    discriminator: Path | None = None
    cache_dir: Path | None = None
    show_progress: bool = True
    encoder: Path | None = None  # the self-supervised realism encoder (trained there from encoder_public if absent)
    encoder_public: Path | None = None
    encoder_public_labels: Path | None = None
    encoder_steps: int = EncoderRecipe.steps

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
    size = published.generator.arch.image_size
    train = request.read(request.real_train, request.train_labels, conditions, size)
    test = request.read(request.real_test, request.test_labels, conditions, size)
    _refuse_shared_patients(test, train, request.real_test, "--real-train", "test on other patients")
    synthetic, synthetic_labels = synthetic_set(published, request.samples_per_class, seed=request.seed, keep=keep)
    settings = TrainSettings(epochs=request.epochs, seed=request.seed)

    with steps(3, "training the TSTR, TRTR and DP-SGD classifiers", enabled=request.show_progress) as advance:
        tstr = train_classifier(synthetic, synthetic_labels, len(classes), settings)
        advance()
        trtr = train_classifier(train.images, train.conditions, len(classes), settings)
        advance()
        results = {
            "TSTR (train synthetic, test real)": classification_metrics(
                predict_proba(tstr, test.images), test.conditions, classes, seed=request.seed
            ),
            "TRTR (train real, test real)": classification_metrics(
                predict_proba(trtr, test.images), test.conditions, classes, seed=request.seed
            ),
            # class fidelity: does a classifier of real images see the label each synthetic image was drawn for?
            "TRTS (train real, test synthetic)": classification_metrics(
                predict_proba(trtr, synthetic), synthetic_labels, classes, seed=request.seed
            ),
        }
        baseline_note = _add_dp_baseline(results, request, published, train, test, settings)
        advance()

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
    realism = _realism(request, conditions, size, test, synthetic, synthetic_labels)
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
            "classifier": "CompactCNN (4 conv blocks, GroupNorm)",
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
    conditions: ConditionSet,
    size: int,
    test: SiteImages,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
) -> dict | None:
    """Realism figures in the self-supervised encoder's space with their real-vs-real controls (None: no encoder)."""
    if request.encoder is None:
        return None
    public = None
    if not request.encoder.is_file() and request.encoder_public is not None:
        public = request.read(request.encoder_public, request.encoder_public_labels, conditions, size)
        why = "the encoder must be trained on other patients"
        _refuse_shared_patients(public, test, request.encoder_public, "--real-test", why)
    encoder, recipe, digest = obtain_encoder(
        request.encoder,
        image_size=size,
        public_images=None if public is None else public.images,
        recipe=EncoderRecipe(image_size=size, steps=request.encoder_steps),
        show_progress=request.show_progress,
    )
    figures = realism_figures(
        test.images, test.conditions, test.patient_ids, synthetic, synthetic_labels, encoder, seed=request.seed
    )
    return {**figures, "encoder": {"sha256": digest, "recipe": asdict(recipe), "path": str(request.encoder)}}


def _add_dp_baseline(
    results: dict,
    request: EvaluationRequest,
    published: PublishedGenerator,
    train: SiteImages,
    test: SiteImages,
    settings: TrainSettings,
) -> str:
    """Train the direct DP-SGD classifier at the generator's epsilon into ``results``; returns the verdict."""
    epsilon = request.epsilon_baseline if request.epsilon_baseline is not None else published.claimed_epsilon
    if epsilon is None:
        return "no epsilon to match (a NOT PRIVATE generator without --epsilon-baseline): DP-SGD baseline skipped"
    classes = published.classes
    dp_model, spent = train_dp_classifier(
        train.images, train.conditions, len(classes), settings, epsilon=float(epsilon), delta=published.delta
    )
    name = f"DP-SGD direct (real, epsilon {epsilon:.3g})"
    results[name] = classification_metrics(
        predict_proba(dp_model, test.images), test.conditions, classes, seed=request.seed
    )
    results[name]["epsilon_spent"] = spent
    return _compare(results["TSTR (train synthetic, test real)"], results[name])


def _compare(tstr: dict, dp: dict) -> str:
    """Plain words: is the synthetic data worth more than training directly with DP-SGD?"""
    parts = []
    for key, label in (("macro_auroc", "macro AUROC"),):
        parts.append(f"{label}: TSTR {tstr[key]:.3f} vs DP-SGD direct {dp[key]:.3f}")
    if "pneumonia_vs_normal" in tstr:
        parts.append(
            f"pneumonia vs normal AUROC: TSTR {tstr['pneumonia_vs_normal']['auroc']:.3f} vs DP-SGD direct {dp['pneumonia_vs_normal']['auroc']:.3f}"
        )
    worth = tstr["macro_auroc"] > dp["macro_auroc"]
    verdict = (
        "synthetic data BEATS the direct DP-SGD classifier"
        if worth
        else "synthetic data does NOT beat the direct DP-SGD classifier: train on real data with DP-SGD instead"
    )
    return f"{verdict} ({'; '.join(parts)})"
