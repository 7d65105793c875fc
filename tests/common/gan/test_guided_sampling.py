"""Guided sampling: of 1 / keep candidates per image asked, exactly the ones the run's D scores best are kept;
keep 1 is plain sampling; a published guided generator carries its discriminator, checked by hash."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cxr_fedsynth.common.errors import ArtifactError
from cxr_fedsynth.common.gan.guided_sampling import draw, guide_scores
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.publish.artifacts import DISCRIMINATOR, load_generator, publish_generator, sample
from tests.model_cards import minimal_card

CLASSES = ["No Finding", "Pneumonia", "COVID-19"]
ARCH = GanArchitecture(image_size=32, num_classes=len(CLASSES), latent_dim=8, g_width=8, d_width=8)


def test_guided_draw_keeps_exactly_the_best_scored_candidates() -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    count, keep = 5, 0.25
    kept = draw(generator, 1, count, gen=torch.Generator().manual_seed(3), keep=keep, discriminator=discriminator)
    candidates = draw(generator, 1, math.ceil(count / keep), gen=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scores = guide_scores(discriminator, candidates, torch.full((len(candidates),), 1))
        kept_scores = guide_scores(discriminator, kept, torch.full((count,), 1))
    assert kept.shape == (count, 1, 32, 32)
    assert torch.allclose(kept_scores.sort().values, scores.topk(count).values.sort().values, atol=1e-5)
    assert kept_scores.mean() > scores.mean(), "guidance moves the kept images up D's ranking"


def test_keep_one_is_plain_sampling_and_guidance_needs_a_discriminator() -> None:
    generator, _ = build_models(ARCH, seed=0)
    plain = draw(generator, 0, 4, gen=torch.Generator().manual_seed(1))
    z = torch.randn(4, ARCH.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain, generator(z, torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="needs the run's discriminator"):
        draw(generator, 0, 4, gen=torch.Generator(), keep=0.5)


def test_published_guided_generator_carries_its_discriminator_checked_by_hash(tmp_path: Path) -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    folder = publish_generator(
        tmp_path / "gen",
        generator,
        minimal_card(CLASSES, private=True),
        discriminator=discriminator,
        sampling_keep=0.25,
        samples_per_class=2,
    )
    published = load_generator(folder)
    assert published.sampling_keep == 0.25 and published.discriminator is not None
    assert "guided" in (folder / "MODEL_CARD.md").read_text()
    guided, plain = sample(published, "Pneumonia", 6, seed=2), sample(published, "Pneumonia", 6, seed=2, keep=1.0)
    assert guided.shape == plain.shape == (6, 1, 32, 32) and not torch.equal(guided, plain)

    data = bytearray((folder / DISCRIMINATOR).read_bytes())
    data[-1] ^= 0xFF
    (folder / DISCRIMINATOR).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="discriminator.safetensors: missing or its SHA-256 does not match"):
        load_generator(folder)
    with pytest.raises(ArtifactError, match="needs the run's discriminator"):
        publish_generator(tmp_path / "bad", generator, minimal_card(CLASSES, private=True), sampling_keep=0.5)


def test_plain_generator_refuses_guided_sampling_with_the_fix(tmp_path: Path) -> None:
    generator, _ = build_models(ARCH, seed=0)
    published = load_generator(
        publish_generator(tmp_path / "gen", generator, minimal_card(CLASSES, private=True), samples_per_class=1)
    )
    assert published.sampling_keep == 1.0 and published.discriminator is None
    assert not (tmp_path / "gen" / DISCRIMINATOR).exists(), "no discriminator is published without guided sampling"
    with pytest.raises(ArtifactError, match="published without one; use keep 1"):
        sample(published, "COVID-19", 2, seed=0, keep=0.5)
