"""Run every check of the privacy audit and collect the numbers into one JSON-ready report.

Members are the training patients; non-members are holdout patients (other patients, same distribution).
The holdout is split by patient into non-member candidates and a reference set for the calibrated attacks
and the embedding encoder, so no image is both a candidate and a reference.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import opacus
import torch

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.image_cache import SiteImages
from cxr_fedsynth.common.data.partition import holdout_mask
from cxr_fedsynth.common.data.preprocess import to_model_range, to_uint8
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.gan.super_resolution import downsample
from cxr_fedsynth.common.progress import progress
from cxr_fedsynth.common.publish.artifacts import PublishedGenerator, load_discriminator, load_generator, sample
from cxr_fedsynth.privacy_audit import attacks
from cxr_fedsynth.privacy_audit.embedding import load_encoder, save_encoder, train_encoder
from cxr_fedsynth.privacy_audit.memorization import distance_to_closest_record, find_copies
from cxr_fedsynth.privacy_audit.policy import Policy, verdicts
from cxr_fedsynth.privacy_audit.roc import evaluate_attack


@dataclass(frozen=True)
class AuditRequest:
    """What to audit and with which inputs."""

    generator_dir: Path
    train_dir: Path
    holdout_dir: Path
    train_labels: Path | None = None
    holdout_labels: Path | None = None
    synthetic_dir: Path | None = None
    discriminator: Path | None = None
    encoder: Path | None = None
    save_encoder: Path | None = None
    samples: int = 1000
    seed: int = 0
    cache_dir: Path | None = None
    show_progress: bool = True


@dataclass
class AuditData:
    """Everything the checks compare, as uint8 images with labels and patients."""

    generated: np.ndarray
    generated_labels: np.ndarray
    train: SiteImages
    non_members: SiteImages
    reference: SiteImages


def _subset(images: SiteImages, mask: np.ndarray) -> SiteImages:
    keep = np.flatnonzero(mask)
    return SiteImages(
        images.images[keep], images.original_sizes[keep], [images.records[i] for i in keep], [], images.from_cache
    )


def _generated(
    published: PublishedGenerator, request: AuditRequest, conditions, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    if request.synthetic_dir is not None:
        images = load_labelled_images(
            request.synthetic_dir,
            conditions,
            labels=None,
            image_size=image_size,
            cache_dir=request.cache_dir,
            show_progress=request.show_progress,
        )
        return images.images, images.conditions
    per_class = max(1, request.samples // len(published.classes))
    chunks, labels = [], []
    for index, name in enumerate(
        progress(
            published.classes,
            total=len(published.classes),
            description="sampling the generator",
            enabled=request.show_progress,
        )
    ):
        chunks.append(to_uint8(sample(published, name, per_class, seed=request.seed + index)))
        labels.append(np.full(per_class, index))
    return np.concatenate(chunks), np.concatenate(labels)


def load_audit_data(request: AuditRequest, published: PublishedGenerator) -> AuditData:
    """Read train and holdout folders at the generator's resolution and draw the generated set."""
    conditions = load_condition_set(published.card["condition_set"])
    if conditions.names != published.classes:
        raise DataError(
            f"{request.generator_dir}: model card classes {published.classes} do not match condition set {conditions.name}"
        )
    size = published.image_size
    train = load_labelled_images(
        request.train_dir,
        conditions,
        labels=request.train_labels,
        image_size=size,
        cache_dir=request.cache_dir,
        show_progress=request.show_progress,
    )
    holdout = load_labelled_images(
        request.holdout_dir,
        conditions,
        labels=request.holdout_labels,
        image_size=size,
        cache_dir=request.cache_dir,
        show_progress=request.show_progress,
    )
    shared = set(train.patient_ids) & set(holdout.patient_ids)
    if shared:
        raise DataError(
            f"{request.holdout_dir}: {len(shared)} patient(s) are in both the training and the holdout set (e.g. "
            f"{sorted(shared)[0]}); non-members must be other patients: split by patient"
        )
    as_reference = holdout_mask(holdout.patient_ids, fraction=0.5, seed=request.seed)
    non_members, reference = _subset(holdout, ~as_reference), _subset(holdout, as_reference)
    if len(non_members.records) < 2 or len(reference.records) < 2:
        raise DataError(
            f"{request.holdout_dir}: too few holdout images ({len(holdout.records)}); the audit needs at least 4 from 4 patients"
        )
    generated, generated_labels = _generated(published, request, conditions, size)
    return AuditData(generated, generated_labels, train, non_members, reference)


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def _digest(images: SiteImages) -> str:
    h = hashlib.sha256()
    for record in images.records:
        with record.path.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha1").digest())
    return h.hexdigest()


def _attack_scores(data: AuditData, feats: dict[str, dict[str, np.ndarray]], discriminator) -> dict[str, np.ndarray]:
    candidates = {space: np.concatenate([f["train"], f["non_members"]]) for space, f in feats.items()}
    scores = {
        "GAN-Leaks (full black-box)": attacks.gan_leaks(candidates["pixel"], feats["pixel"]["generated"]),
        "GAN-Leaks calibrated": attacks.gan_leaks_calibrated(
            candidates["pixel"], feats["pixel"]["generated"], feats["pixel"]["reference"]
        ),
        "Monte-Carlo": attacks.monte_carlo(candidates["pixel"], feats["pixel"]["generated"]),
        "DOMIAS (embedding KDE)": attacks.domias(
            candidates["embedding"], feats["embedding"]["generated"], feats["embedding"]["reference"]
        ),
    }
    if discriminator is not None:
        images = to_model_range(np.concatenate([data.train.images, data.non_members.images]))
        images = downsample(images, images.shape[-1] // discriminator.arch.image_size)  # to D's size (super-resolution)
        labels = torch.from_numpy(np.concatenate([data.train.conditions, data.non_members.conditions]))
        scores["LOGAN (white-box discriminator)"] = attacks.logan(images, labels, discriminator)
    return scores


def run_audit(request: AuditRequest, policy: Policy) -> dict:
    """Every check; returns the report (numbers, verdicts, provenance) and the arrays the HTML needs."""
    published = load_generator(request.generator_dir)
    data = load_audit_data(request, published)
    encoder = (
        load_encoder(request.encoder, published.image_size)
        if request.encoder
        else train_encoder(to_model_range(data.reference.images), seed=request.seed)
    )
    if request.save_encoder:
        save_encoder(encoder, request.save_encoder)
    sets = {
        "generated": data.generated,
        "train": data.train.images,
        "non_members": data.non_members.images,
        "reference": data.reference.images,
    }
    feats = {
        "pixel": {k: _pixels(v) for k, v in sets.items()},
        "embedding": {k: encoder.embed(to_model_range(v)) for k, v in sets.items()},
    }
    classes = published.classes
    delta = published.delta

    def copies(space: str, g=slice(None), t=slice(None)) -> dict:
        f = feats[space]
        unseen = f["non_members"] if space == "embedding" else None
        return find_copies(
            f["generated"][g], f["train"][t], space=space, ratio=policy.copy_ratio, unseen=unseen
        ).to_dict()

    memorization = {"overall": {space: copies(space) for space in feats}, "per_class": {}}
    distance = {
        "overall": distance_to_closest_record(
            feats["pixel"]["generated"], feats["pixel"]["train"], feats["pixel"]["non_members"], seed=request.seed
        ).to_dict(),
        "per_class": {},
    }
    for index, name in enumerate(classes):
        g, t, h = data.generated_labels == index, data.train.conditions == index, data.non_members.conditions == index
        if g.sum() and t.sum() >= 2 and h.sum() >= 1:
            memorization["per_class"][name] = {space: copies(space, g, t) for space in feats}
            dcr = distance_to_closest_record(
                feats["pixel"]["generated"][g],
                feats["pixel"]["train"][t],
                feats["pixel"]["non_members"][h],
                seed=request.seed,
            ).to_dict()
            distance["per_class"][name] = {
                k: v for k, v in dcr.items() if k not in ("synthetic_to_train", "holdout_to_train")
            }

    # The white-box attack uses the D given, else the one published for guided sampling (what anyone can use).
    discriminator = (
        load_discriminator(request.discriminator, published.generator.arch)
        if request.discriminator
        else published.discriminator
    )
    scores = _attack_scores(data, feats, discriminator)
    patients = data.train.patient_ids + data.non_members.patient_ids
    membership = np.concatenate([np.ones(len(data.train.records)), np.zeros(len(data.non_members.records))])
    candidate_classes = np.concatenate([data.train.conditions, data.non_members.conditions])
    attack_results = {"overall": [], "per_class": {}}
    for name, score in scores.items():
        patient_scores, patient_labels = attacks.patient_level(score, patients, membership)
        attack_results["overall"].append(
            evaluate_attack(name, patient_scores, patient_labels, delta=delta, seed=request.seed).to_dict()
        )
        for index, cls in enumerate(classes):
            mask = candidate_classes == index
            if mask.sum() and len(set(membership[mask])) == 2:
                ps, pl = attacks.patient_level(score[mask], [p for p, m in zip(patients, mask) if m], membership[mask])
                if len(set(pl)) == 2:
                    result = evaluate_attack(name, ps, pl, delta=delta, seed=request.seed).to_dict()
                    attack_results["per_class"].setdefault(cls, []).append(
                        {
                            k: result[k]
                            for k in ("name", "auc", "auc_ci", "tpr_at_fpr", "advantage", "members", "non_members")
                        }
                    )

    report = {
        "generator": {
            "path": str(request.generator_dir),
            "run_name": published.card.get("run_name"),
            "weights_sha256": published.card.get("weights_sha256"),
            "private": published.private,
            "classes": classes,
        },
        "claimed_epsilon": published.claimed_epsilon,
        "delta": delta,
        "inputs": {
            "train": {
                "images": len(data.train.records),
                "patients": len(set(data.train.patient_ids)),
                "sha256": _digest(data.train),
            },
            "holdout_non_members": {
                "images": len(data.non_members.records),
                "patients": len(set(data.non_members.patient_ids)),
                "sha256": _digest(data.non_members),
            },
            "holdout_reference": {
                "images": len(data.reference.records),
                "patients": len(set(data.reference.patient_ids)),
            },
            "generated": {
                "images": len(data.generated),
                "source": str(request.synthetic_dir) if request.synthetic_dir else "sampled from the generator",
                "seed": request.seed,
            },
        },
        "memorization": memorization,
        "distance": distance,
        "attacks": attack_results,
        "policy": policy.to_dict(),
        "versions": {
            "cxr-fedsynth": version("cxr-fedsynth"),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "opacus": opacus.__version__,
            "python": platform.python_version(),
        },
    }
    report["verdicts"] = verdicts(report, policy)
    report["passed"] = all(v["passed"] for v in report["verdicts"])
    return {"report": report, "data": data}
