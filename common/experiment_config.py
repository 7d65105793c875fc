"""The experiment's settings: Flower run config (kebab-case) in, typed dataclasses out.

``ExperimentConfig`` has one field per run-config key (``num-server-rounds`` -> ``num_server_rounds``);
``simulations/nih_split/pyproject.toml`` lists the same keys with the same defaults (a test checks it).
Unknown keys and wrong types are refused with the key and the fix, so a typo never silently falls back to a
default.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from cxr_fedsynth.common.data.conditions import ConditionSet, load_condition_set
from cxr_fedsynth.common.gan.discriminator_training import GRAD_SAMPLE_MODES, TRAINED_LAYERS, DiscriminatorSettings
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.gan.feature_matching import GAP_CAPS, SHRINKAGE, STATISTICS, EmbeddingSpec
from cxr_fedsynth.common.gan.losses import check_loss
from cxr_fedsynth.common.gan.generator_training import MODE_SEEKING_SCOPES, GeneratorSettings
from cxr_fedsynth.common.gan.models import GanArchitecture
from cxr_fedsynth.common.data.partition import PartitionSpec
from cxr_fedsynth.common.data.phantoms import PhantomSpec
from cxr_fedsynth.common.data.preprocess import check_image_size
from cxr_fedsynth.common.privacy.plan import PrivacyPlan


@dataclass(frozen=True)
class ExperimentConfig:
    """One field per Flower run-config key; defaults are the embedded phantom demo."""

    # run
    num_server_rounds: int = 20
    run_name: str = ""
    output_dir: str = "outputs"
    seed: int = 0
    device: str = "auto"
    min_sites: int = 1
    round_timeout: float = 1800.0
    # data ("" data-dir = the embedded phantom set)
    data_dir: str = ""
    labels: str = ""
    conditions: str = "coarse"
    image_size: int = 64
    cache_dir: str = ""
    allow_non_chest: bool = False
    patient_pattern: str = ""
    phantom_patients: int = 320
    # public pretraining on the server (no privacy cost; other patients than the sites' and the test set's)
    public_data: str = ""
    public_labels: str = ""
    public_name: str = ""
    public_steps: int = 1500  # used only with public-data
    public_batch_size: int = 32
    public_lr_d: float = 2e-4
    # simulated hospitals
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    holdout_fraction: float = 0.2
    # model
    latent_dim: int = 64
    g_width: int = 16
    d_width: int = 16
    loss: str = "hinge"
    # site (discriminator, DP-SGD)
    dp: bool = True
    target_epsilon: float = 10.0
    target_delta: float = 1e-5
    max_grad_norm: float = 1.0
    batch_size: int = 32
    local_steps: int = 15
    lr_d: float = 2e-4
    aux_weight_d: float = 1.0
    grad_sample_mode: str = "bk"
    d_site_layers: str = "auto"  # "auto": heads with public pretraining, else all
    site_budget_epsilon: float = 0.0
    ledger_dir: str = ""
    # server (generator)
    g_steps: int = 15
    g_batch_size: int = 64
    lr_g: float = 2e-4
    aux_weight_g: float = 0.5
    ema_decay: float = 0.999
    mode_seeking_weight: float = 1.0
    mode_seeking_scope: str = "class"  # "class": the ratio per class, so no class can collapse unnoticed; "batch": over the whole batch (MSGAN)
    # DP feature matching: sites release once noisy class sums of image embeddings (pixel cells + D features); G matches the means
    feature_matching_weight: float = 100.0  # 0: off; used only with public-data
    feature_statistics: str = "mean-std"  # per D block: "mean" (channel means) or "mean-std" (+ spatial std)
    feature_pixel_grid: int = 8  # > 0: the release also holds the images' own cell means (and stds) on this raster
    feature_pixel_share: float = 0.2  # the pixel block's share of the embedding's squared norm (D's blocks share the rest)
    feature_count_share: float = 0.5  # the patient count's share of a release row; 0 = 1 / (1 + sqrt(dim)), the means' least noise
    feature_shrinkage: str = "off"  # "generator" / "pooled": noise-aware shrinkage of the decoded targets (free; feature_matching.SHRINKAGE)
    feature_class_gap_scale: float = 2.0  # > 1 widens each matched class mean's gap from their pooled mean (free; FeatureMatcher.scale_class_gaps)
    feature_class_gap_block: str = "pixels"  # where feature-class-gap-scale widens the gaps: the "pixels" block only, or "all" blocks
    feature_class_gap_cap: str = "median"  # "median": no class moves further than (scale - 1) x the median class gap; "none": all x scale
    feature_release_share: float = 0.5  # the release alone costs this share of target-epsilon; DP-SGD gets the rest
    # published generator
    generator_members: int = 2  # > 1: also publish members - 1 generators trained after the last round against the final D and release (free)
    sampling_keep: float = 1.0  # 1: plain; < 1: guided sampling keeps this share of candidates, best-rated by the run's DP D (free)

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        check_loss(self.loss)
        PartitionSpec(1, self.partition, self.dirichlet_alpha)
        positive = ("num_server_rounds", "generator_members", "batch_size", "public_batch_size", "local_steps", "g_steps", "g_batch_size", "min_sites", "phantom_patients")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"run config {name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not 0 <= self.holdout_fraction < 1:
            raise ConfigError(f"run config holdout-fraction must be in [0, 1) (got {self.holdout_fraction})")
        if self.dp and (self.target_epsilon <= 0 or not 0 < self.target_delta < 1 or self.max_grad_norm <= 0):
            raise ConfigError("with dp=true, target-epsilon and max-grad-norm must be > 0 and target-delta in (0, 1)")
        if self.public_steps < 0 or (self.public_data and self.public_steps == 0):
            raise ConfigError("public-data needs public-steps > 0 (the pretraining steps on it); leave public-data empty for none")
        if self.feature_matching_weight < 0:
            raise ConfigError("run config feature-matching-weight must be >= 0 (0 turns feature matching off)")
        if self.feature_statistics not in STATISTICS:
            raise ConfigError(f"run config feature-statistics must be one of {STATISTICS} (got {self.feature_statistics!r})")
        if self.feature_shrinkage not in SHRINKAGE:
            raise ConfigError(f"run config feature-shrinkage must be one of {SHRINKAGE} (got {self.feature_shrinkage!r})")
        if not 0 <= self.feature_pixel_grid <= self.image_size // 4:
            raise ConfigError(f"run config feature-pixel-grid must be in [0, {self.image_size // 4}] (cells of at least 4 x 4 pixels; got {self.feature_pixel_grid})")
        if not 0 < self.feature_pixel_share < 1:
            raise ConfigError(f"run config feature-pixel-share must be in (0, 1) (got {self.feature_pixel_share})")
        if not 0 <= self.feature_count_share < 1:
            raise ConfigError(f"run config feature-count-share must be in [0, 1) (got {self.feature_count_share}); 0 picks the optimum for the embedding's size")
        if self.feature_class_gap_scale <= 0:
            raise ConfigError(f"run config feature-class-gap-scale must be > 0 (got {self.feature_class_gap_scale}); 1 matches the released class means as they are")
        if self.feature_class_gap_block not in ("all", "pixels"):
            raise ConfigError(f"run config feature-class-gap-block must be all or pixels (got {self.feature_class_gap_block!r})")
        if self.feature_class_gap_cap not in GAP_CAPS:
            raise ConfigError(f"run config feature-class-gap-cap must be one of {GAP_CAPS} (got {self.feature_class_gap_cap!r})")
        if self.feature_class_gap_scale != 1 and self.feature_class_gap_block == "pixels" and not self.feature_pixel_grid:
            raise ConfigError(
                "run config feature-class-gap-block='pixels' widens the pixel block's class gaps, but feature-pixel-grid is 0 "
                "(no pixel block): set feature-pixel-grid > 0, feature-class-gap-block='all', or feature-class-gap-scale=1"
            )
        if not 0 < self.feature_release_share < 1:
            raise ConfigError(
                f"run config feature-release-share must be in (0, 1) (got {self.feature_release_share}): the release alone "
                "spends that share of target-epsilon and the DP-SGD rounds are planned for the rest"
            )
        if not 0 < self.sampling_keep <= 1:
            raise ConfigError(f"run config sampling-keep must be in (0, 1] (got {self.sampling_keep}); 1 publishes plain sampling")
        if self.mode_seeking_scope not in MODE_SEEKING_SCOPES:
            raise ConfigError(f"run config mode-seeking-scope must be one of {MODE_SEEKING_SCOPES} (got {self.mode_seeking_scope!r})")
        if self.g_batch_size < 2 or self.mode_seeking_weight < 0:
            raise ConfigError("run config g-batch-size must be at least 2 (pairs of latents per label) and mode-seeking-weight >= 0")
        if self.d_site_layers not in ("auto", *TRAINED_LAYERS):
            raise ConfigError(f"run config d-site-layers must be auto or one of {TRAINED_LAYERS} (got {self.d_site_layers!r})")
        if self.site_layers != "all" and not self.pretrains_on_public:
            raise ConfigError(f"d-site-layers={self.d_site_layers!r} keeps D's features as initialised unless public pretraining trains them: set public-data (and public-labels), or d-site-layers='all'")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(f"run config grad-sample-mode must be one of {GRAD_SAMPLE_MODES} (got {self.grad_sample_mode!r})")
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ConfigError(f"run config device must be auto, cpu or cuda (got {self.device!r})")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object]) -> "ExperimentConfig":
        """Typed config from a Flower run config; unknown keys and wrong types raise ConfigError."""
        by_key = {f.name.replace("_", "-"): f for f in fields(cls)}
        unknown = sorted(set(run_config) - set(by_key))
        if unknown:
            raise ConfigError(f"unknown run-config key(s) {unknown}; valid keys: {sorted(by_key)}")
        values = {}
        for key, value in run_config.items():
            field = by_key[key]
            values[field.name] = _coerce(key, value, type(field.default))
        return cls(**values)

    def to_run_config(self) -> dict[str, object]:
        """The kebab-case run config for this object (for model cards and ``--run-config``)."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: object) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    # Structured views -------------------------------------------------------------------------------
    def condition_set(self) -> ConditionSet:
        return load_condition_set(self.conditions)

    def architecture(self, num_classes: int) -> GanArchitecture:
        return GanArchitecture(self.image_size, num_classes, self.latent_dim, self.g_width, self.d_width)

    def discriminator_settings(self) -> DiscriminatorSettings:
        return DiscriminatorSettings(self.batch_size, self.local_steps, self.lr_d, 0.5, self.loss, self.aux_weight_d, self.grad_sample_mode, self.site_layers)

    def generator_settings(self) -> GeneratorSettings:
        return GeneratorSettings(
            batch_size=self.g_batch_size, steps=self.g_steps, lr=self.lr_g, beta1=0.5, loss=self.loss, aux_weight=self.aux_weight_g,
            ema_decay=self.ema_decay, mode_seeking_weight=self.mode_seeking_weight, mode_seeking_scope=self.mode_seeking_scope,
            feature_matching_weight=self.feature_matching_weight,
        )

    def partition_spec(self, num_sites: int) -> PartitionSpec:
        return PartitionSpec(num_sites, self.partition, self.dirichlet_alpha, self.seed)

    def phantom_spec(self) -> PhantomSpec:
        return PhantomSpec(num_patients=self.phantom_patients, images_per_patient=2, image_size=self.image_size, seed=self.seed)

    @property
    def uses_phantoms(self) -> bool:
        return not self.data_dir

    @property
    def pretrains_on_public(self) -> bool:
        return bool(self.public_data) and self.public_steps > 0

    @property
    def site_layers(self) -> str:
        """The D layers sites train: ``d-site-layers``, where "auto" is heads after public pretraining, else all."""
        if self.d_site_layers == "auto":
            return "heads" if self.pretrains_on_public else "all"
        return self.d_site_layers

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        """What the feature release embeds (``common.gan.feature_matching.embed``)."""
        return EmbeddingSpec(self.feature_statistics, self.feature_pixel_grid, self.feature_pixel_share, self.feature_count_share)

    @property
    def matches_features(self) -> bool:
        """Feature matching runs with a weight > 0 and public pretraining (its embedding is the public D's features)."""
        return self.feature_matching_weight > 0 and self.pretrains_on_public

    def privacy_plan(self) -> PrivacyPlan | None:
        """The run's privacy plan at a site (computed once by each side; ``None`` without DP)."""
        if not self.dp:
            return None
        return PrivacyPlan.for_run(
            epsilon=min(self.target_epsilon, self.site_budget),
            delta=self.target_delta,
            release_share=self.feature_release_share if self.matches_features else 0.0,
            batch_size=self.batch_size,
            total_steps=self.total_local_steps,
        )

    @property
    def site_budget(self) -> float:
        """A simulated site's total budget: ``site-budget-epsilon``, or the run's target when 0."""
        return self.site_budget_epsilon or self.target_epsilon

    @property
    def total_local_steps(self) -> int:
        return self.num_server_rounds * self.local_steps

    def path_or_none(self, value: str) -> Path | None:
        return Path(value).expanduser() if value else None


def _coerce(key: str, value: object, kind: type) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"run config {key} must be a {kind.__name__} (got {value!r} of type {type(value).__name__})")
