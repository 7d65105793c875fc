"""DP feature matching: one patient moves the released table by at most 1 (the sensitivity the noise is set
for), the server decodes the class means exactly, the noise has the planned scale, and G trained with the
matching term moves its class means towards the targets without collapsing a class onto one image."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxr_fedsynth.common.gan.feature_matching import (
    MIN_CLASS_PATIENTS,
    EmbeddingSpec,
    FeatureMatcher,
    add_release_noise,
    block_lengths,
    embed,
    embedding_dim,
    patient_class_sums,
    pixel_cells,
)
from cxr_fedsynth.common.gan.generator_training import GeneratorSettings, GeneratorTrainer
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models

ARCH = GanArchitecture(image_size=32, num_classes=3, latent_dim=8, g_width=8, d_width=8)


def _unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize(("statistics", "dim"), [("mean", 8 + 16 + 32), ("mean-std", 2 * (8 + 16 + 32))])
def test_embedding_is_unit_norm_with_the_documented_length(statistics: str, dim: int) -> None:
    _, discriminator = build_models(ARCH, seed=0)
    images = torch.rand(5, 1, 32, 32) * 2 - 1
    spec = EmbeddingSpec(statistics)
    emb = embed(discriminator.features, images, spec)
    assert emb.shape == (5, dim) == (5, embedding_dim(discriminator.features, spec))
    assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize(
    ("statistics", "grid", "share", "dim"),
    [("mean", 4, 0.2, 8 + 16 + 32 + 16), ("mean-std", 8, 0.6, 2 * (8 + 16 + 32 + 64))],
)
def test_pixel_block_comes_first_with_its_share_of_a_unit_norm(
    statistics: str, grid: int, share: float, dim: int
) -> None:
    _, discriminator = build_models(ARCH, seed=0)
    images = torch.rand(5, 1, 32, 32) * 2 - 1
    spec = EmbeddingSpec(statistics, grid, share)
    emb = embed(discriminator.features, images, spec)
    assert emb.shape == (5, dim) == (5, embedding_dim(discriminator.features, spec))
    assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    pixels = (2 if statistics == "mean-std" else 1) * grid * grid
    assert torch.allclose(emb[:, :pixels].pow(2).sum(1), torch.full((5,), share), atol=1e-5)


def test_pixel_cells_are_the_means_and_stds_of_each_cell() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[..., :4, :4] = 0.5  # top-left cell flat at 0.5
    image[..., 4:, 4:] = torch.tensor([[-1.0, 1.0] * 2] * 4)  # bottom-right cell: mean 0, std 1
    cells = pixel_cells(image, 2, "mean-std")
    assert torch.allclose(cells[0, :4], torch.tensor([0.5, 0.0, 0.0, 0.0]))
    assert torch.allclose(cells[0, 4:], torch.tensor([0.0, 0.0, 0.0, 1.0]), atol=1e-3)


@pytest.mark.parametrize("share", [0.5, 0.04, 0.9])
@pytest.mark.parametrize("removed", ["p0", "p1", "p2"])
def test_removing_one_patient_moves_the_table_by_at_most_one(removed: str, share: float) -> None:
    # p0: one image; p1: three images of three classes; p2: two images of one class
    patients = ["p0", "p1", "p1", "p1", "p2", "p2", "p3", "p4"]
    labels = torch.tensor([0, 0, 1, 2, 1, 1, 2, 0])
    emb = _unit_rows(len(patients), 6, seed=1)
    full = patient_class_sums(emb, labels, patients, 3, count_share=share)
    keep = [i for i, p in enumerate(patients) if p != removed]
    without = patient_class_sums(emb[keep], labels[keep], [patients[i] for i in keep], 3, count_share=share)
    change = (full - without).norm()
    assert change <= 1.0 + 1e-6
    if removed == "p0":  # one image: the bound is reached, so noise calibrated to 1 is not loose
        assert change == pytest.approx(1.0, abs=1e-6)


def test_an_over_long_embedding_is_clipped_to_the_sensitivity_bound() -> None:
    emb = torch.tensor([[3.0, 4.0]])  # norm 5
    sums = patient_class_sums(emb, torch.tensor([0]), ["p"], 2, count_share=0.04)
    assert sums.norm().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="count_share"):
        patient_class_sums(emb, torch.tensor([0]), ["p"], 2, count_share=1.0)


@pytest.mark.parametrize(
    "spec", [EmbeddingSpec(count_share=0.5), EmbeddingSpec(count_share=0.0)], ids=["equal-split", "optimal-share"]
)
def test_server_decodes_patient_weighted_class_means_and_counts(spec: EmbeddingSpec) -> None:
    patients = ["a", "a", "b", "c", "d"]
    labels = torch.tensor([1, 1, 1, 0, 1])
    emb = _unit_rows(5, embedding_dim(build_models(ARCH, seed=0)[1].features), seed=2)
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3, spec)
    site_one = patient_class_sums(emb[:3], labels[:3], patients[:3], 3, count_share=matcher.count_share)
    site_two = patient_class_sums(emb[3:], labels[3:], patients[3:], 3, count_share=matcher.count_share)
    matcher.set_targets(site_one + site_two)
    expected_class_1 = (0.5 * emb[0] + 0.5 * emb[1] + emb[2] + emb[4]) / 3.0  # patient a's two images weigh 1/2 each
    assert torch.allclose(matcher.targets[1], expected_class_1, atol=1e-6)
    assert torch.allclose(matcher.targets[0], emb[3], atol=1e-6)
    assert matcher.patients.tolist() == pytest.approx([1.0, 3.0, 0.0])
    assert not matcher.matched_classes.any(), f"fewer than {MIN_CLASS_PATIENTS} patients: no class is matched"


def test_optimal_count_share_about_halves_the_noise_of_the_decoded_means() -> None:
    spec = EmbeddingSpec("mean-std", pixel_grid=8, count_share=0.0)
    features = build_models(ARCH, seed=0)[1].features
    rows = _unit_rows(400, embedding_dim(features, spec), seed=3)
    labels, patients = torch.arange(400) % 2, [str(i) for i in range(400)]
    errors = {}
    for name, share_spec in {"equal": EmbeddingSpec("mean-std", 8, count_share=0.5), "optimal": spec}.items():
        matcher = FeatureMatcher(features, 2, share_spec)
        table = patient_class_sums(rows, labels, patients, 2, count_share=matcher.count_share)
        matcher.set_targets(table.clone())
        exact = matcher.targets.clone()
        errors[name] = (
            torch.stack(
                [(_decoded(matcher, add_release_noise(table, 2.0, seed=s)) - exact).pow(2).sum() for s in range(20)]
            )
            .mean()
            .item()
        )
    assert FeatureMatcher(features, 2, spec).count_share == pytest.approx(
        1 / (1 + embedding_dim(features, spec) ** 0.5)
    )
    assert errors["optimal"] < 0.6 * errors["equal"], errors


def _decoded(matcher: FeatureMatcher, table: torch.Tensor) -> torch.Tensor:
    matcher.set_targets(table)
    return matcher.targets.clone()


def test_shrinkage_keeps_clean_targets_and_drops_pure_noise() -> None:
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3, EmbeddingSpec(count_share=0.5))
    dim = matcher.targets.shape[1]
    table = torch.zeros(3, dim + 1)
    table[:, -1] = 100.0 / math.sqrt(2)  # 100 patients per class
    table[:, 0] = 100.0 / math.sqrt(2) * torch.tensor([0.5, 0.5, 0.01])  # class means 0.5, 0.5, 0.01 on the first axis
    prior = torch.zeros(3, dim)
    matcher.set_targets(table.clone())
    assert torch.equal(matcher.shrink_towards(prior, 0.0), torch.ones(3)), "no noise: every deviation is kept"
    matcher.set_targets(table.clone())
    noise_std = 0.5  # noise energy on each class mean: dim * 0.25 / (100 / sqrt 2)^2
    energy = dim * noise_std**2 / (100.0 / math.sqrt(2)) ** 2
    kept = matcher.shrink_towards(prior, noise_std)
    assert kept[0].item() == pytest.approx(1 - energy / 0.25, rel=1e-4) and kept[2].item() == 0.0
    assert matcher.targets[2].abs().max().item() == 0.0, "a class buried in noise stays at the prior"
    assert matcher.targets[0, 0].item() == pytest.approx(0.5 * kept[0].item(), rel=1e-4)


def test_pooled_shrinkage_pulls_noisy_feature_blocks_to_the_pooled_mean_and_keeps_the_pixel_block() -> None:
    spec = EmbeddingSpec("mean-std", pixel_grid=4, count_share=0.5)
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3, spec)
    lengths = block_lengths(matcher.features, spec)
    counts = torch.tensor([200.0, 80.0, 30.0])
    exact = torch.full((3, sum(lengths)), 0.05)  # the look all classes share
    exact[0, : lengths[0]] += 0.2  # a class gap in the pixel block only
    table = torch.cat([exact * counts[:, None], counts[:, None]], dim=1) / math.sqrt(2)
    matcher.set_targets(table.clone())
    assert torch.equal(matcher.shrink_feature_blocks_towards_pooled(0.0), torch.ones(3, len(lengths))), (
        "no noise: all kept"
    )
    assert torch.allclose(matcher.targets, exact, atol=1e-6)

    noise_std = 1.0
    matcher.set_targets(add_release_noise(table, noise_std, seed=5))
    released = matcher.targets.clone()
    kept = matcher.shrink_feature_blocks_towards_pooled(noise_std)
    pixels = slice(0, lengths[0])
    assert torch.equal(kept[:, 0], torch.ones(3)) and torch.equal(matcher.targets[:, pixels], released[:, pixels])
    assert (kept[:, 1:] < 0.5).all(), f"the D blocks hold no class gap, only noise: most of it goes ({kept})"
    features = slice(lengths[0], None)
    error_before = (released[:, features] - exact[:, features]).pow(2).sum(dim=1)
    error_after = (matcher.targets[:, features] - exact[:, features]).pow(2).sum(dim=1)
    assert error_after.sum() < 0.5 * error_before.sum(), (
        f"shrinkage removes most of the noise ({error_before} -> {error_after})"
    )
    assert (error_after[1:] < 0.5 * error_before[1:]).all(), "above all on the small, noisy classes"


def test_release_noise_has_the_planned_scale_and_fresh_draws() -> None:
    table = torch.zeros(8, 5000)
    noisy = add_release_noise(table, 2.5, seed=11)
    assert noisy.std().item() == pytest.approx(2.5, rel=0.02) and abs(noisy.mean().item()) < 0.02
    assert not torch.equal(noisy, add_release_noise(table, 2.5, seed=12))


def test_a_class_is_matched_only_with_enough_patients_beyond_the_count_noise() -> None:
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3)
    table = torch.zeros(3, matcher.targets.shape[1] + 1)
    table[:, -1] = torch.tensor([250.0, 13.0, 9.0]) * math.sqrt(matcher.count_share)  # released (noisy) patient counts
    matcher.set_targets(table, table_noise_std=0.0)
    assert matcher.matched_classes.tolist() == [True, True, False], "exact counts: 10 patients are enough"
    matcher.set_targets(table, table_noise_std=1.9)  # epsilon 10 over 4 sites: count noise std 1.9 / sqrt(0.5) = 2.7
    assert matcher.matched_classes.tolist() == [True, False, False], "13 patients could be 3 plus noise: no target"


def test_class_gap_scale_widens_matched_class_means_around_their_pooled_mean() -> None:
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3)
    dim = matcher.targets.shape[1]
    counts = torch.tensor([300.0, 100.0, 2.0])  # class 2: too few patients, not matched
    means = torch.zeros(3, dim)
    means[:, 0] = torch.tensor([0.1, 0.5, 0.9])
    share = matcher.count_share
    table = torch.cat([means * counts[:, None] * math.sqrt(1 - share), counts[:, None] * math.sqrt(share)], dim=1)
    matcher.set_targets(table)
    matcher.scale_class_gaps(1.0)
    assert torch.allclose(matcher.targets, means, atol=1e-6), "scale 1 leaves the decoded means as they are"
    matcher.scale_class_gaps(2.0)
    pooled = (300 * 0.1 + 100 * 0.5) / 400  # patient-weighted, matched classes only: 0.2
    assert matcher.targets[:2, 0].tolist() == pytest.approx(
        [pooled + 2 * (0.1 - pooled), pooled + 2 * (0.5 - pooled)], abs=1e-6
    )
    assert matcher.targets[2, 0].item() == pytest.approx(0.9, abs=1e-6), "an unmatched class keeps its decoded mean"
    assert torch.equal(matcher.targets[:, 1:], torch.zeros(3, dim - 1)), "no gap, nothing to widen"


def test_class_gap_scale_on_the_pixel_block_leaves_the_feature_blocks_as_released() -> None:
    spec = EmbeddingSpec("mean-std", pixel_grid=4)
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3, spec)
    pixels = block_lengths(matcher.features, spec)[0]
    counts = torch.tensor([300.0, 100.0, 50.0])
    means = torch.rand(3, matcher.targets.shape[1], generator=torch.Generator().manual_seed(3))
    share = matcher.count_share
    matcher.set_targets(
        torch.cat([means * counts[:, None] * math.sqrt(1 - share), counts[:, None] * math.sqrt(share)], dim=1)
    )
    matcher.scale_class_gaps(2.0, pixels_only=True)
    pooled = (means[:, :pixels] * counts[:, None]).sum(dim=0) / counts.sum()
    assert torch.allclose(matcher.targets[:, :pixels], pooled + 2 * (means[:, :pixels] - pooled), atol=1e-5)
    assert torch.allclose(matcher.targets[:, pixels:], means[:, pixels:], atol=1e-6), "D-feature blocks as released"


def test_class_gap_median_cap_widens_a_far_class_less_and_the_others_in_full() -> None:
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3)
    dim = matcher.targets.shape[1]
    counts = torch.tensor([200.0, 200.0, 100.0])
    means = torch.zeros(3, dim)
    means[:, 0] = torch.tensor([-0.1, 0.1, 0.8])  # pooled 0.16: gaps -0.26, -0.06, 0.64 (class 2 lies far out)
    share = matcher.count_share
    matcher.set_targets(
        torch.cat([means * counts[:, None] * math.sqrt(1 - share), counts[:, None] * math.sqrt(share)], dim=1)
    )
    factors = matcher.scale_class_gaps(2.0, cap="median")
    pooled = (200 * -0.1 + 200 * 0.1 + 100 * 0.8) / 500
    gaps = means[:, 0] - pooled
    median = gaps.abs().median().item()  # class 0's 0.26
    assert factors[:2].tolist() == pytest.approx([2.0, 2.0]), "classes no further out than the median: x scale"
    assert factors[2].item() == pytest.approx(1 + median / gaps[2].abs().item(), rel=1e-4)
    assert (matcher.targets[2, 0] - means[2, 0]).item() == pytest.approx(median, rel=1e-4), (
        "the far class moves by the median gap"
    )
    assert matcher.targets[:2, 0].tolist() == pytest.approx((pooled + 2 * gaps[:2]).tolist(), abs=1e-6)


def test_class_gap_signal_share_is_one_for_exact_tables_and_falls_with_the_release_noise() -> None:
    spec = EmbeddingSpec("mean-std", pixel_grid=4)
    matcher = FeatureMatcher(build_models(ARCH, seed=0)[1].features, 3, spec)
    pixels = block_lengths(matcher.features, spec)[0]
    counts = torch.tensor([300.0, 200.0, 100.0])
    means = torch.full((3, matcher.targets.shape[1]), 0.02)
    means[:, :pixels] += torch.tensor([-0.02, 0.0, 0.04])[:, None]  # class gaps in the pixel block
    share = matcher.count_share
    table = torch.cat([means * counts[:, None] * math.sqrt(1 - share), counts[:, None] * math.sqrt(share)], dim=1)
    matcher.set_targets(table)
    assert matcher.class_gap_signal_share(0.0, pixels_only=True) == pytest.approx(1.0)
    shares = []
    for noise_std in (0.5, 2.0, 8.0):
        estimates = []
        for seed in range(20):
            matcher.set_targets(add_release_noise(table, noise_std, seed=seed), noise_std)
            estimates.append(matcher.class_gap_signal_share(noise_std, pixels_only=True))
        shares.append(sum(estimates) / len(estimates))
    scaled = [n * math.sqrt(1 - share) for n in counts.tolist()]  # what divides a table entry's noise in a decoded mean
    total = sum(scaled)
    per_unit_noise = sum((1 / n - 1 / total) ** 2 + 2 / total**2 for n in scaled)
    noise_energy = [pixels * std**2 * per_unit_noise for std in (0.5, 2.0, 8.0)]
    gap_energy = float(((means[:, :pixels] - (means[:, :pixels] * counts[:, None]).sum(0) / counts.sum()) ** 2).sum())
    for estimate, noise in zip(
        shares, noise_energy
    ):  # E[observed] = gap + noise, so the share estimates gap / (gap + noise)
        assert estimate == pytest.approx(gap_energy / (gap_energy + noise), abs=0.1)
    assert shares[0] > 0.5 > shares[2], f"little noise: mostly signal; much noise: mostly noise ({shares})"


def test_unmatched_classes_add_nothing_to_the_loss() -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    matcher = FeatureMatcher(discriminator.features, 3)
    targets = torch.zeros(3, matcher.targets.shape[1] + 1)
    targets[:, -1] = torch.tensor([50.0, 50.0, 1.0]) * math.sqrt(matcher.count_share)  # class 2: one patient, no target
    matcher.set_targets(targets)
    labels = torch.tensor([2, 2, 2, 2]).repeat(2)
    assert matcher.loss(generator(torch.randn(8, 8), labels), labels).item() == 0.0


def test_generator_moves_its_class_means_towards_the_targets_and_keeps_diversity() -> None:
    generator, discriminator = build_models(ARCH, seed=0)
    matcher = FeatureMatcher(discriminator.features, 3)
    with torch.no_grad():  # targets: the class means of bright-striped "real" images, far from G's start
        real = -torch.ones(60, 1, 32, 32)
        real[:, :, ::4] = 1.0
        real += 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(3))
        labels = torch.arange(60) % 3
        sums = patient_class_sums(
            embed(matcher.features, real), labels, [str(i) for i in range(60)], 3, count_share=matcher.count_share
        )
        matcher.set_targets(sums)

    def distance() -> float:
        z = torch.randn(300, ARCH.latent_dim, generator=torch.Generator().manual_seed(5))
        fake_labels = torch.arange(300) % 3
        with torch.no_grad():
            emb = embed(matcher.features, generator(z, fake_labels))
        return sum(float((emb[fake_labels == c].mean(0) - matcher.targets[c]).pow(2).sum()) for c in range(3))

    settings = GeneratorSettings(
        batch_size=32, steps=60, lr=2e-3, aux_weight=0.0, mode_seeking_weight=0.0, feature_matching_weight=100.0
    )
    trainer = GeneratorTrainer(generator, settings)
    before = distance()
    metrics = trainer.train_against(discriminator, seed=0, matcher=matcher)
    assert distance() < 0.5 * before and "g_feature_distance" in metrics
    with torch.no_grad():
        samples = generator(torch.randn(16, ARCH.latent_dim), torch.zeros(16, dtype=torch.long))
    assert samples.std(dim=0).mean() > 0.01, "the unbiased loss does not reward collapsing a class onto one image"
