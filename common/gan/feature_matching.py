"""DP feature matching (DP-MEPF, Harder et al. 2023): one noisy release of class-mean embeddings per site.

A site embeds its images (by default, cell statistics of the image itself, and D's convolutional features,
pretrained on public data, so the embedding costs no privacy), sums them per class with per-patient weights, and
releases the sums once with Gaussian noise. The server adds up the sites' sums and trains G to make the mean
embedding of each class of its samples match.

Sensitivity: every image's embedding is clipped to norm at most 1 (the embeddings are unit-norm already), its
row is ``[sqrt(1 - s) embedding, sqrt(s)]`` (norm at most 1; s = :func:`count_share`) and a patient's m images each
weigh 1/m, so adding or removing one patient moves the [classes x (dim + 1)] table by at most 1 in L2 norm,
whatever the classes of its images. The release is the Gaussian mechanism at that sensitivity: in the RDP accountant it
is one step at sample rate 1 with the release's noise multiplier, composed with the site's DP-SGD rounds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxr_fedsynth.common.privacy.secure_noise import secure_gaussian_like

#: Per block of D's features: channel means and spatial standard deviations ("mean-std"), or channel means
#: only ("mean": half the dimensions, so half the noise energy, but worse synthetic data; docs/results.md).
STATISTICS = ("mean", "mean-std")
#: Noise-aware shrinkage of the decoded class means (post-processing, no privacy cost): "off"; "generator": each
#: whole target towards G's own class mean; "pooled": per D-feature block, each class's deviation from the mean
#: over all classes (the pixel block, which carries the class gap above the noise, stays as released).
SHRINKAGE = ("off", "generator", "pooled")
#: A class gets a target only when its released patient count, less MATCH_CONFIDENCE_Z times the count's noise
#: std, is at least this: its mean would be mostly noise otherwise (and a class of 3 patients must not pass on noise).
MIN_CLASS_PATIENTS = 10.0
MATCH_CONFIDENCE_Z = 3.0
#: The server widens the class gaps (feature-class-gap-scale) only when at least this share of the released
#: deviations is signal: 0.62-0.69 in the pixel block at epsilon 10 over 4 sites, 0.10-0.33 at epsilon 3, 0-0.23 at
#: epsilon 1, where widening doubled the noise and G collapsed (docs/results.md).
MIN_SIGNAL_SHARE_TO_WIDEN = 0.5
#: How far the widening may move a class (FeatureMatcher.scale_class_gaps): "median": at most (scale - 1) times the
#: median class's gap length; "none": every matched class x scale.
GAP_CAPS = ("median", "none")


@dataclass(frozen=True)
class EmbeddingSpec:
    """What :func:`embed` computes: per block of D's features the channel ``statistics``; with ``pixel_grid`` > 0
    also the image's own :func:`pixel_cells`, as a block carrying ``pixel_share`` of the squared norm."""

    statistics: str = "mean-std"
    pixel_grid: int = 0
    pixel_share: float = 0.2
    count_share: float = (
        0.5  # share of a release row's squared norm spent on the patient count; 0 = the least noise (count_share)
    )


def pixel_cells(images: torch.Tensor, grid: int, statistics: str = "mean-std") -> torch.Tensor:
    """[B, cells] of the image itself on a ``grid`` x ``grid`` raster: each cell's mean ("mean-std": and std).

    Linear in the pixels (means) or nearly so (stds), so G cannot meet it with textures the way it can meet
    learned features; it carries most of the class gap that survives the release's noise (docs/results.md).
    """
    means = F.adaptive_avg_pool2d(images, grid)
    if statistics != "mean-std":
        return means.flatten(1)
    spread = (F.adaptive_avg_pool2d(images.pow(2), grid) - means.pow(2)).clamp_min(1e-8).sqrt()
    return torch.cat([means.flatten(1), spread.flatten(1)], dim=1)


def embed(features: nn.Sequential, images: torch.Tensor, spec: EmbeddingSpec = EmbeddingSpec()) -> torch.Tensor:
    """Unit-norm embedding [B, dim]: the pixel block (if any) first, then per block of ``features`` the
    ``spec.statistics`` of its channels; every block is normalised, then weighted so that the squared norms add to 1.
    """
    feature_blocks = []
    h = images
    for layer in features:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            flat = h.flatten(2)  # [B, C, H*W]
            moments = [flat.mean(dim=2), flat.std(dim=2)] if spec.statistics == "mean-std" else [flat.mean(dim=2)]
            feature_blocks.append(F.normalize(torch.cat(moments, dim=1), dim=1))
    pixel_share = spec.pixel_share if spec.pixel_grid else 0.0
    blocks = [torch.cat(feature_blocks, dim=1) * math.sqrt((1.0 - pixel_share) / len(feature_blocks))]
    if spec.pixel_grid:
        blocks.insert(
            0, F.normalize(pixel_cells(images, spec.pixel_grid, spec.statistics), dim=1) * math.sqrt(pixel_share)
        )
    return torch.cat(blocks, dim=1)


def block_lengths(features: nn.Sequential, spec: EmbeddingSpec = EmbeddingSpec()) -> list[int]:
    """Length of each block of :func:`embed`'s vectors, in order (the pixel block first, if any)."""
    per_channel = 2 if spec.statistics == "mean-std" else 1
    channels = [layer.out_channels for layer in features if isinstance(layer, nn.Conv2d)]
    return [per_channel * c for c in ([spec.pixel_grid**2] if spec.pixel_grid else []) + channels]


def embedding_dim(features: nn.Sequential, spec: EmbeddingSpec = EmbeddingSpec()) -> int:
    """Length of :func:`embed`'s vectors for these features."""
    return sum(block_lengths(features, spec))


def count_share(spec: EmbeddingSpec, dim: int) -> float:
    """The count's share of a release row for embeddings of ``dim`` numbers: ``spec.count_share``, or when 0 the
    share that minimises the decoded class means' expected noise energy.

    A class mean is (feature sums / sqrt(1 - s)) / (count / sqrt(s)): the feature sums' noise adds
    dim sigma^2 / ((1 - s) n^2), the count's noise rescales a mean of norm <= 1 by about sigma / (sqrt(s) n),
    adding at most sigma^2 / (s n^2). The sum is smallest at s = 1 / (1 + sqrt(dim)): 0.04 for 608 numbers,
    where an equal split (s = 1/2) spends half of the release on one number per class and nearly doubles the means' noise.
    """
    return spec.count_share or 1.0 / (1.0 + math.sqrt(dim))


def embed_in_batches(
    embedder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, device: torch.device, batch: int = 256
) -> torch.Tensor:
    """``embedder`` over ``images`` (on CPU) in batches on ``device``, without gradients; the result is on CPU."""
    with torch.no_grad():
        return torch.cat([embedder(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def patient_class_sums(
    embeddings: torch.Tensor, labels: torch.Tensor, patient_ids: list[str], num_classes: int, *, count_share: float
) -> torch.Tensor:
    """[classes, dim + 1] sums of ``[sqrt(1 - count_share) embedding, sqrt(count_share)]`` rows, each patient's
    images weighing 1 / its count.

    Embeddings are clipped to norm 1 first, so the sensitivity bound holds whatever embedding is passed in; a
    row with a non-finite value (a crafted feature space) is zeroed first, so no NaN or inf reaches the noise.
    """
    if not 0 < count_share < 1:
        raise ValueError(f"count_share must be in (0, 1) (got {count_share})")
    finite = torch.isfinite(embeddings).all(dim=1, keepdim=True)
    embeddings = torch.where(finite, embeddings, torch.zeros_like(embeddings))
    embeddings = embeddings * embeddings.norm(dim=1, keepdim=True).clamp_min(1.0).reciprocal()
    _, patient_index = np.unique(np.asarray(patient_ids), return_inverse=True)
    images_per_patient = np.bincount(patient_index)
    weights = torch.as_tensor(1.0 / images_per_patient[patient_index], dtype=embeddings.dtype, device=embeddings.device)
    count = torch.full_like(embeddings[:, :1], math.sqrt(count_share))
    rows = torch.cat([embeddings * math.sqrt(1.0 - count_share), count], dim=1)
    sums = torch.zeros(num_classes, rows.shape[1], dtype=rows.dtype, device=rows.device)
    return sums.index_add_(0, labels.long(), rows * weights[:, None])


def add_release_noise(sums: torch.Tensor, noise_multiplier: float, *, seed: int | None = None) -> torch.Tensor:
    """The Gaussian mechanism at sensitivity 1: ``sums`` + N(0, noise_multiplier^2) per entry.

    Without ``seed`` (what sites do) the noise comes from the OS CSPRNG (``common.privacy.secure_noise``); a seed
    makes it reproducible for tests."""
    if seed is None:
        return sums + secure_gaussian_like(sums, noise_multiplier)
    gen = torch.Generator(device=sums.device).manual_seed(seed)
    return sums + noise_multiplier * torch.randn(sums.shape, generator=gen, device=sums.device, dtype=sums.dtype)


def _deviation_noise_var(counts: torch.Tensor, table_noise_std: float) -> torch.Tensor:
    """[classes] noise variance of one entry of each class mean's deviation from the count-weighted pooled mean.

    ``counts``: the divisors of the decoded means (:meth:`FeatureMatcher._noise_scale`). Deviation
    c = S_c (1/n_c - 1/N) - sum of the other classes' S_o / N, so its variance is
    table_noise_std^2 ((1/n_c - 1/N)^2 + (classes - 1) / N^2)."""
    total = counts.sum()
    return table_noise_std**2 * ((1.0 / counts - 1.0 / total) ** 2 + (len(counts) - 1) / total**2)


class FeatureMatcher(nn.Module):
    """The feature space of a run's release, and the class-mean targets decoded from the released sums.

    The space is a frozen copy of D's features at release time and the :class:`EmbeddingSpec`. The server sends
    the features to the sites and both build the spec from the run config, so both sides embed identically.
    """

    def __init__(self, features: nn.Sequential, num_classes: int, spec: EmbeddingSpec = EmbeddingSpec()) -> None:
        super().__init__()
        self.features = copy.deepcopy(features).requires_grad_(False).eval()
        self.spec = spec
        self.register_buffer("targets", torch.zeros(num_classes, embedding_dim(features, spec)))
        self.register_buffer("patients", torch.zeros(num_classes))
        self.register_buffer("matched", torch.zeros(num_classes, dtype=torch.bool))

    @property
    def count_share(self) -> float:
        """The count's share of each release row (:func:`count_share` of this space)."""
        return count_share(self.spec, self.targets.shape[1])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [B, dim] of images in [-1, 1]."""
        return embed(self.features, images, self.spec)

    def set_targets(self, released_sums: torch.Tensor, table_noise_std: float = 0.0) -> None:
        """Targets from the sum of the sites' released tables: class mean = (feature sums / sqrt(1 - s)) / patients,
        patients = count column / sqrt(s). ``table_noise_std`` (the std of each entry of the summed tables; 0 for
        exact tables) sets which classes are matched: those whose count is :data:`MIN_CLASS_PATIENTS` or more with
        :data:`MATCH_CONFIDENCE_Z` standard deviations of the count's noise to spare."""
        share = self.count_share
        self.patients.copy_(released_sums[:, -1] / math.sqrt(share))
        self.targets.copy_(released_sums[:, :-1] / math.sqrt(1.0 - share) / self.patients.clamp_min(1e-6)[:, None])
        count_noise_std = table_noise_std / math.sqrt(share)
        self.matched.copy_(self.patients >= MIN_CLASS_PATIENTS + MATCH_CONFIDENCE_Z * count_noise_std)

    def _noise_scale(self) -> torch.Tensor:
        """Per class, the divisor that turns a table entry's noise std into the decoded mean's: sqrt(1 - s) patients."""
        return (self.patients * math.sqrt(1.0 - self.count_share)).clamp_min(1e-6)

    def shrink_towards(self, prior: torch.Tensor, table_noise_std: float) -> torch.Tensor:
        """Positive-part James-Stein: pull each class target towards ``prior`` [classes, dim] by the share of its
        distance that the release's noise explains; returns the share of each deviation kept, in [0, 1].

        A decoded mean carries noise of energy dim * table_noise_std^2 / ((1 - s) patients^2) (``table_noise_std``:
        the std of each entry of the summed tables). With the prior = G's own class means before matching, a class
        whose release is mostly noise leaves G where it is instead of pulling it towards noise. Post-processing
        of the release (the noise scale and the noisy counts are public to the server), so no privacy cost.
        """
        noise_energy = self.targets.shape[1] * table_noise_std**2 / self._noise_scale() ** 2
        distance = (self.targets - prior).pow(2).sum(dim=1).clamp_min(1e-12)
        kept = (1.0 - noise_energy / distance).clamp(0.0, 1.0)
        self.targets.copy_(prior + kept[:, None] * (self.targets - prior))
        return kept

    def shrink_feature_blocks_towards_pooled(self, table_noise_std: float) -> torch.Tensor:
        """Positive-part James-Stein per block of D's features: pull each class's deviation from the pooled mean
        (all classes' sums over all their patients, so nearly noise-free) back by the share its noise explains;
        returns the share kept [classes, blocks], 1 for the pixel block (left as released).

        The D-feature blocks hold the look of the sites' images in common to all classes (kept: the pooled mean)
        and a class gap far below the release's noise (docs/results.md), which G would otherwise fit. Per entry,
        the deviation's noise variance is :func:`_deviation_noise_var`. Post-processing: no privacy cost.
        """
        counts = self._noise_scale()
        total = counts.sum()
        pooled = (self.targets * counts[:, None]).sum(dim=0) / total
        noise_var = _deviation_noise_var(counts, table_noise_std)
        lengths = block_lengths(self.features, self.spec)
        offsets = np.cumsum([0, *lengths])
        kept = torch.ones(len(counts), len(lengths), device=self.targets.device)
        for b in range(1 if self.spec.pixel_grid else 0, len(lengths)):
            block = slice(offsets[b], offsets[b + 1])
            deviation = self.targets[:, block] - pooled[block]
            distance = deviation.pow(2).sum(dim=1).clamp_min(1e-12)
            kept[:, b] = (1.0 - lengths[b] * noise_var / distance).clamp(0.0, 1.0)
            self.targets[:, block] = pooled[block] + kept[:, b, None] * deviation
        return kept

    def _matched_gaps(self, pixels_only: bool) -> tuple[torch.Tensor, slice, torch.Tensor, torch.Tensor]:
        """The matched classes' rows, the widened columns (``pixels_only``: the pixel block), their targets there
        and the count-weighted pooled mean of those targets (weights: :meth:`_noise_scale`, proportional to patients)."""
        rows = self.matched.nonzero().flatten()
        columns = slice(0, block_lengths(self.features, self.spec)[0] if pixels_only and self.spec.pixel_grid else None)
        targets = self.targets[rows][:, columns]
        counts = self._noise_scale()[rows]
        return rows, columns, targets, (targets * counts[:, None]).sum(dim=0) / counts.sum()

    def class_gap_signal_share(self, table_noise_std: float, *, pixels_only: bool = False) -> float:
        """Share of the matched classes' squared deviations from their pooled mean that is signal, not the release's
        noise (``pixels_only``: in the pixel block): 1 - expected noise energy / observed energy, pooled over the
        classes, clamped to [0, 1]. Exact tables give 1 (noise per entry: :func:`_deviation_noise_var`)."""
        if int(self.matched.sum()) < 2:
            return 0.0
        rows, _, targets, pooled = self._matched_gaps(pixels_only)
        observed = (targets - pooled).pow(2).sum()
        noise = _deviation_noise_var(self._noise_scale()[rows], table_noise_std).sum() * targets.shape[1]
        return float((1.0 - noise / observed.clamp_min(1e-12)).clamp(0.0, 1.0))

    def scale_class_gaps(self, scale: float, *, pixels_only: bool = False, cap: str = "none") -> torch.Tensor:
        """Move each matched class's target to ``pooled + factor * (target - pooled)``, pooled being the matched
        classes' patient-weighted mean target, and return the factors [classes] (1 for unmatched classes, which are
        left as decoded). ``scale`` > 1 widens the gaps between the classes G matches (``pixels_only``: in the pixel
        block only). With ``cap="median"`` no class moves further than ``(scale - 1)`` times the (lower) median of the
        matched classes' gap lengths, so a class that lies far from the others is widened less than ``scale`` and
        G is not driven to one extreme image (docs/results.md). Post-processing of the release: no privacy cost."""
        factors = torch.ones(len(self.matched), device=self.targets.device)
        if scale == 1.0 or int(self.matched.sum()) < 2:
            return factors
        rows, columns, targets, pooled = self._matched_gaps(pixels_only)
        gaps = targets - pooled
        widened = torch.full((len(rows),), float(scale), device=gaps.device)
        if cap == "median":
            lengths = gaps.norm(dim=1).clamp_min(1e-12)
            widened = 1.0 + (scale - 1.0) * (lengths.median() / lengths).clamp(max=1.0)
        self.targets[rows, columns] = pooled + widened[:, None] * gaps
        factors[rows] = widened
        return factors

    @property
    def matched_classes(self) -> torch.Tensor:
        """Classes with a target (enough patients across the sites, beyond the count's noise; :meth:`set_targets`)."""
        return self.matched

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Unbiased estimate of sum_c ||mean embedding of G's class-c samples - target_c||^2.

        Rows i and i + B/2 share a label, so the two halves are independent same-class draws: the product
        (m1 - t).(m2 - t) has the squared distance as its expectation, without the batch variance term that
        would otherwise reward G for collapsing each class to one image.
        """
        first, second = self.embed(images).chunk(2)
        half_labels = labels[: len(first)]
        total = images.new_zeros(())
        for c in half_labels.unique():
            if not self.matched_classes[c]:
                continue
            rows = half_labels == c
            target = self.targets[c]
            total = total + ((first[rows].mean(0) - target) * (second[rows].mean(0) - target)).sum()
        return total
