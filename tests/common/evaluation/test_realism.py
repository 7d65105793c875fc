"""The realism protocol can fail: its real-vs-real control sits near chance while images that are not X-rays are
told apart; the self-supervised encoder is saved without pickle, named by its hash and refused at the wrong size."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cxr_fedsynth.common.data.conditions import load_condition_set
from cxr_fedsynth.common.data.phantoms import PhantomSpec, generate_phantom_dataset
from cxr_fedsynth.common.data.site_data import load_labelled_images
from cxr_fedsynth.common.errors import DataError
from cxr_fedsynth.common.evaluation.classifier import embed
from cxr_fedsynth.common.evaluation.realism import (
    class_mix_counts,
    mean_figures,
    patient_halves,
    pick_per_class,
    realism_figures,
)
from cxr_fedsynth.common.evaluation.realism_encoder import (
    EncoderRecipe,
    load_encoder,
    nt_xent,
    obtain_encoder,
)

RECIPE = EncoderRecipe(image_size=32, width=8, projection_dim=16, steps=30, batch_size=64)


def _phantoms(tmp: Path, seed: int, prefix: str):
    spec = PhantomSpec(num_patients=80, image_size=32, seed=seed, patient_prefix=prefix)
    folder = generate_phantom_dataset(tmp / prefix, spec)
    return load_labelled_images(folder, load_condition_set("coarse"), labels=None, image_size=32, show_progress=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realism")
    public, held_out = _phantoms(tmp, 11, "PUBLIC"), _phantoms(tmp, 12, "HELD")
    path = tmp / "encoder.safetensors"
    encoder, recipe, digest = obtain_encoder(path, image_size=32, public_images=public.images, recipe=RECIPE)
    return public, held_out, encoder, path, digest


def test_nt_xent_prefers_matching_views() -> None:
    z = torch.randn(16, 8)
    assert nt_xent(z, z + 0.01 * torch.randn_like(z), 0.2) < nt_xent(z, torch.randn(16, 8), 0.2)


def test_control_is_near_chance_and_non_xrays_are_told_apart(sets) -> None:
    _, held_out, encoder, _, _ = sets
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, held_out.images.shape, dtype=np.uint8)  # no reader takes these for X-rays
    labels = np.asarray(held_out.conditions)
    figures = realism_figures(held_out.images, labels, held_out.patient_ids, noise, labels.copy(), encoder)
    control, fake = figures["real_control"], figures["synthetic"]
    assert control["linear_probe_auroc"] < 0.75, "two halves of the same real set must look alike"
    assert fake["linear_probe_auroc"] > 0.95 and fake["cnn_two_sample_auroc"] > 0.95
    assert fake["frechet_distance"] > 5 * control["frechet_distance"]
    assert fake["precision"] < control["precision"]


def test_other_source_reference_scores_real_images_of_other_patients(sets) -> None:
    public, held_out, encoder, _, _ = sets
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, held_out.images.shape, dtype=np.uint8)
    labels = np.asarray(held_out.conditions)
    args = (held_out.images, labels, held_out.patient_ids, noise, labels.copy(), encoder)
    plain = realism_figures(*args, draws=2)
    assert "other_source_real" not in plain, "no reference without other-source images"
    figures = realism_figures(*args, other_source=public.images, draws=2)
    other = figures["other_source_real"]
    assert figures["images"]["other_source"] == min(len(public.images), figures["images"]["compared"])
    assert other["linear_probe_auroc"] < figures["synthetic"]["linear_probe_auroc"] - 0.2, (
        "real X-rays of other patients must score as real images, not as noise"
    )
    assert figures["synthetic"] == plain["synthetic"], "the reference changes no other figure"
    with pytest.raises(DataError, match="other-source images are"):
        realism_figures(*args, other_source=noise[:, :16, :16])


def test_figures_are_means_over_independent_synthetic_draws(sets) -> None:
    _, held_out, encoder, _, _ = sets
    noise = np.random.default_rng(2).integers(0, 256, held_out.images.shape, dtype=np.uint8)
    labels = np.asarray(held_out.conditions)
    args = (held_out.images, labels, held_out.patient_ids, noise, labels.copy(), encoder)
    single, three = realism_figures(*args, draws=1), realism_figures(*args, draws=3)
    assert three["synthetic"]["cnn_two_sample_auroc"] == single["synthetic"].pop("cnn_two_sample_auroc")
    assert three["draws"]["synthetic"][0] == single["synthetic"], "the first draw is the single-draw protocol's"
    assert three["synthetic"] == {**mean_figures(three["draws"]["synthetic"]), "cnn_two_sample_auroc": ANY}
    assert len({draw["frechet_distance"] for draw in three["draws"]["synthetic"]}) == 3, "every draw picks anew"
    assert three["real_control"] == single["real_control"], "the control does not depend on the synthetic draws"
    with pytest.raises(ValueError, match="at least 1"):
        realism_figures(*args, draws=0)


def test_halves_split_patients_and_synthetic_follows_the_class_mix(sets) -> None:
    _, held_out, _, _, _ = sets
    a, b = patient_halves(held_out.patient_ids)
    assert not {held_out.patient_ids[i] for i in a} & {held_out.patient_ids[i] for i in b}
    available = np.repeat(np.arange(4), 5)
    assert class_mix_counts(available, np.array([0, 0, 0, 2])) == {0: 3, 2: 1}
    assert class_mix_counts(available, np.array([0] * 10 + [1] * 2)) == {0: 5, 1: 1}, "scaled down, mix kept"
    assert sorted(available[pick_per_class(available, {0: 3, 2: 1})].tolist()) == [0, 0, 0, 2]


def test_encoder_checkpoint_is_reused_hashed_and_checked(sets, tmp_path: Path) -> None:
    public, held_out, encoder, path, digest = sets
    again, recipe, same = obtain_encoder(path, image_size=32)  # no public images: must load, not train
    assert same == digest and len(digest) == 64 and recipe == RECIPE
    assert np.allclose(embed(again, held_out.images[:8]), embed(encoder, held_out.images[:8]))
    with pytest.raises(DataError, match="trained at 32 px"):
        obtain_encoder(path, image_size=64)
    stranger = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(stranger))
    with pytest.raises(DataError, match="not a realism encoder"):
        load_encoder(stranger)
    with pytest.raises(DataError, match="give --public"):
        obtain_encoder(tmp_path / "missing.safetensors", image_size=32)
