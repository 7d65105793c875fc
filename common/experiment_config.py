"""The experiment's settings: Flower run config (kebab-case) in, typed dataclasses out.

``ExperimentConfig`` declares every run-config key once (``num-server-rounds`` -> ``num_server_rounds``): its
default, its documentation and its flags (``RunConfigKey``). The Flower app's run config
(``simulations/nih_split/pyproject.toml``) and ``docs/configuration.md`` are generated from it
(``python -m cxr_fedsynth.common.config_docs --write``; a test checks both are current). Unknown keys and
wrong types are refused with the key and the fix, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from cxr_fedsynth.common.data.conditions import ConditionSet, load_condition_set
from cxr_fedsynth.common.data.partition import PartitionSpec
from cxr_fedsynth.common.data.phantoms import PhantomSpec
from cxr_fedsynth.common.data.preprocess import SUPPORTED_SIZES, check_image_size
from cxr_fedsynth.common.errors import ConfigError
from cxr_fedsynth.common.gan.augment import AUGMENTATIONS
from cxr_fedsynth.common.gan.discriminator_training import GRAD_SAMPLE_MODES, TRAINED_LAYERS, DiscriminatorSettings
from cxr_fedsynth.common.gan.feature_matching import GAP_CAPS, SHRINKAGE, STATISTICS, EmbeddingSpec
from cxr_fedsynth.common.gan.generator_training import MODE_SEEKING_SCOPES, GeneratorSettings
from cxr_fedsynth.common.gan.losses import check_loss
from cxr_fedsynth.common.gan.models import D_HEADS, G_UPSAMPLING, GanArchitecture
from cxr_fedsynth.common.gan.super_resolution import FACTORS as SUPER_RESOLUTION_FACTORS
from cxr_fedsynth.common.privacy.plan import PrivacyPlan
from cxr_fedsynth.common.run_config_values import coerce_run_config_value


@dataclass(frozen=True)
class RunConfigKey:
    """What the project knows of a run-config key besides its default."""

    doc: str
    private: bool  # a local path or pattern: never written into a public model card
    pretraining: bool  # changes the public pretraining (part of its reuse key)


PUBLIC_AUTO = "auto"
PUBLIC_PHANTOMS = "phantoms"
PUBLIC_PHANTOM_SEED_OFFSET = 1_000_003  # the public phantoms' drawings share no random stream with the sites'
TEST_SPLIT_SEED = 20261201  # the untouched test patients are drawn with this fixed seed (see split_records)


#: Keys whose value must be one of a few words.
CHOICES = {
    "d_head": D_HEADS,
    "g_upsample": G_UPSAMPLING,
    "d_augment": AUGMENTATIONS,
    "feature_statistics": STATISTICS,
    "feature_shrinkage": SHRINKAGE,
    "feature_class_gap_block": ("all", "pixels"),
    "feature_class_gap_cap": GAP_CAPS,
    "mode_seeking_scope": MODE_SEEKING_SCOPES,
    "d_site_layers": ("auto", *TRAINED_LAYERS),
    "grad_sample_mode": GRAD_SAMPLE_MODES,
    "device": ("auto", "cpu", "cuda"),
}


def _key(default: object, doc: str, *, private: bool = False, pretraining: bool = False) -> object:
    return dataclasses.field(default=default, metadata={"key": RunConfigKey(doc, private, pretraining)})


@dataclass(frozen=True)
class ExperimentConfig:
    """One field per Flower run-config key; defaults are the embedded phantom demo."""

    # run
    num_server_rounds: int = _key(20, "federated rounds (each: every site trains D, then the server trains G)")
    run_name: str = _key("", '"" = run-<flower run id>; reuse a name to resume from its checkpoint')
    output_dir: str = _key(
        "outputs", "relative to where the SuperLink was started; give an absolute path to be sure", private=True
    )
    seed: int = _key(
        0, "seeds the models, the patient split and the server's sampling (never the sites' DP noise)", pretraining=True
    )
    device: str = _key(
        "auto", "auto = CUDA GPU when present, else CPU | cpu | cuda (a site's node config overrides it)"
    )
    min_sites: int = _key(1, "a round needs this many sites that trained; fewer stops the run")
    round_timeout: float = _key(1800.0, "seconds the server waits for the sites' replies in a round")
    # data
    data_dir: str = _key("", 'the dataset simulated sites are drawn from; "" = embedded PHANTOM drawings', private=True)
    labels: str = _key("", 'label table (Data_Entry_2017.csv style); "" = found in data-dir', private=True)
    conditions: str = _key(
        "coarse", 'coarse | nih6 | nih14 | path/to/conditions.yaml, optional ":A,B" subset', pretraining=True
    )
    image_size: int = _key(64, "32 | 64 | 128 | 256", pretraining=True)
    cache_dir: str = _key(
        "", 'the server\'s preprocessing cache; "" = $CXR_CACHE_DIR (sites: their policy)', private=True
    )
    allow_non_chest: bool = _key(False, "the server reads non-chest DICOMs (sites: their policy)", pretraining=True)
    patient_pattern: str = _key("", "regex whose first group is the patient ID in a file name", private=True)
    phantom_patients: int = _key(320, "patients of the embedded phantom set (used when data-dir is empty)")
    # public pretraining
    public_data: str = _key(
        "auto",
        'a public CXR set of other patients (no privacy cost): a folder | "phantoms" (the embedded public phantom '
        'set: other phantom patients) | "auto" (= "phantoms" when the sites use phantoms, else none) | "" (none)',
        private=True,
        pretraining=True,
    )
    public_labels: str = _key("", "its label table", private=True, pretraining=True)
    public_name: str = _key(
        "", 'how the model card names the public set ("" = folder and table names)', pretraining=True
    )
    public_steps: int = _key(1500, "pretraining steps, used only when public-data is set", pretraining=True)
    public_batch_size: int = _key(32, "D's batch in public pretraining (G keeps g-batch-size)", pretraining=True)
    public_lr_d: float = _key(
        2e-4, "D's learning rate in public pretraining (lr-d is the sites' own)", pretraining=True
    )
    public_r1_gamma: float = _key(0.0, "R1 penalty on D's slope at the public images (0 = off)", pretraining=True)
    # simulated hospitals
    partition: str = _key("iid", "how patients are split across simulated sites: iid | dirichlet | source")
    dirichlet_alpha: float = _key(0.5, "class skew of partition=dirichlet (smaller = more skewed)")
    holdout_fraction: float = _key(0.2, "share of patients held out from every site for evaluation and audits")
    test_fraction: float = _key(
        0.0, f"share of the other patients kept as an untouched test set (seed {TEST_SPLIT_SEED})"
    )
    # model
    latent_dim: int = _key(64, "size of G's latent vector", pretraining=True)
    g_width: int = _key(16, "G's base width (server cost only)", pretraining=True)
    d_width: int = _key(16, "D's base width (the sites' DP cost grows with it)", pretraining=True)
    loss: str = _key("hinge", "hinge | nonsaturating", pretraining=True)
    d_head: str = _key("pooled", "D's real/fake head: pooled (mean of its 4x4 features) | spatial", pretraining=True)
    g_upsample: str = _key("transpose", "G's upsampling: transpose (conv) | nearest (+ 3x3 conv)", pretraining=True)
    d_augment: str = _key("none", "DiffAugment of all D sees: none | translation-cutout", pretraining=True)
    # sites: discriminator with DP-SGD
    target_epsilon: float = _key(10.0, "epsilon requested of each site for the run (count, release and rounds)")
    target_delta: float = _key(1e-5, "delta requested of each site; a site refuses a request over its policy's caps")
    max_grad_norm: float = _key(1.0, "per-patient clipping norm of D's gradients")
    batch_size: int = _key(32, "expected patients per DP batch (Poisson sampling of patients)")
    local_steps: int = _key(15, "DP-SGD steps per site per round")
    lr_d: float = _key(2e-4, "D's learning rate at the sites")
    aux_weight_d: float = _key(1.0, "weight of D's auxiliary class loss", pretraining=True)
    grad_sample_mode: str = _key("bk", "per-row clipping: bk (book-keeping) or Opacus ew | hooks | functorch | ghost")
    d_site_layers: str = _key("auto", "auto (= heads with public-data, else all) | all | heads | heads-norms")
    ledger_dir: str = _key("", '"" = <output-dir>/<run-name>/ledgers (simulated sites only)', private=True)
    # server: generator (never sees real data)
    g_steps: int = _key(15, "G steps per round against the aggregated D")
    g_batch_size: int = _key(64, "G's batch (pairs of latents per label for mode seeking)", pretraining=True)
    lr_g: float = _key(2e-4, "G's learning rate", pretraining=True)
    aux_weight_g: float = _key(0.5, "weight of the auxiliary class loss in G's step", pretraining=True)
    ema_decay: float = _key(0.999, "decay of the published EMA copy of G", pretraining=True)
    mode_seeking_weight: float = _key(1.0, "MSGAN diversity term on G (no privacy cost); 0 = off", pretraining=True)
    mode_seeking_scope: str = _key(
        "class", "class = its ratio per class, so no class collapses unnoticed | batch = MSGAN", pretraining=True
    )
    # DP feature matching
    feature_matching_weight: float = _key(
        100.0, "G's distance to the released class means; needs public-data; 0 = off (no release)"
    )
    feature_statistics: str = _key("mean-std", "per D block: mean-std (channel means + spatial stds) | mean")
    feature_pixel_grid: int = _key(
        8, "the release also holds the images' cell means (and stds) on this raster; 0 = none"
    )
    feature_pixel_share: float = _key(0.2, "the pixel block's share of the embedding's squared norm")
    feature_count_share: float = _key(0.5, "the patient count's share of a release row; 0 = 1 / (1 + sqrt(dim))")
    feature_shrinkage: str = _key("off", "noise-aware shrinkage of the released means: off | generator | pooled")
    feature_class_gap_scale: float = _key(
        2.0, "widen the matched classes' means away from their pooled mean; 1 = as released"
    )
    feature_class_gap_block: str = _key("pixels", "where the gaps are widened: pixels (the pixel block) | all")
    feature_class_gap_cap: str = _key(
        "median", "median = no class moves further than (scale - 1) x the median gap | none"
    )
    feature_release_share: float = _key(
        0.7, "the release's share of target-epsilon; DP-SGD noise is planned for the rest"
    )
    # published generator
    generator_members: int = _key(
        2, "generators published and sampled equally (members after the first: no privacy cost)"
    )
    sampling_keep: float = _key(1.0, "1 = plain sampling; < 1 = keep this share of candidates, best-rated by the DP D")
    super_resolution: int = _key(
        1, "publish at image-size x this: 1 | 2 | 4 (> 1: a network trained on public-data alone; no privacy cost)"
    )
    super_resolution_steps: int = _key(800, "training steps of the super-resolution network (on the public images)")

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        check_loss(self.loss)
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                key = name.replace("_", "-")
                raise ConfigError(f"run config {key} must be one of {choices} (got {getattr(self, name)!r})")
        PartitionSpec(1, self.partition, self.dirichlet_alpha)
        positive = (
            "num_server_rounds",
            "generator_members",
            "batch_size",
            "public_batch_size",
            "local_steps",
            "g_steps",
            "g_batch_size",
            "min_sites",
            "phantom_patients",
            "super_resolution_steps",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"run config {name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not (0 <= self.holdout_fraction < 1 and 0 <= self.test_fraction < 1):
            raise ConfigError(
                f"run config holdout-fraction and test-fraction must be in [0, 1) (got {self.holdout_fraction}, {self.test_fraction})"
            )
        if self.target_epsilon <= 0 or not 0 < self.target_delta < 1 or self.max_grad_norm <= 0:
            raise ConfigError("run config target-epsilon and max-grad-norm must be > 0 and target-delta in (0, 1)")
        if self.public_steps < 0 or (self.public_source and self.public_steps == 0):
            raise ConfigError(
                "public-data needs public-steps > 0 (the pretraining steps on it); set public-data = '' for none"
            )
        if self.public_source == PUBLIC_PHANTOMS and not self.uses_phantoms:
            raise ConfigError(
                "public-data = 'phantoms' pretrains on drawings, not radiographs: with a real data-dir give a real "
                "public set (a folder of other patients) or public-data = '' for none"
            )
        if self.feature_matching_weight < 0 or self.public_r1_gamma < 0:
            raise ConfigError("run config feature-matching-weight and public-r1-gamma must be >= 0 (0 = off)")
        if not 0 <= self.feature_pixel_grid <= self.image_size // 4:
            raise ConfigError(
                f"run config feature-pixel-grid must be in [0, {self.image_size // 4}] (cells of at least 4 x 4 pixels; got {self.feature_pixel_grid})"
            )
        if not 0 < self.feature_pixel_share < 1:
            raise ConfigError(f"run config feature-pixel-share must be in (0, 1) (got {self.feature_pixel_share})")
        if not 0 <= self.feature_count_share < 1:
            raise ConfigError(
                f"run config feature-count-share must be in [0, 1) (got {self.feature_count_share}); 0 picks the optimum for the embedding's size"
            )
        if self.feature_class_gap_scale <= 0:
            raise ConfigError(
                f"run config feature-class-gap-scale must be > 0 (got {self.feature_class_gap_scale}); 1 matches the released class means as they are"
            )
        if (
            self.feature_class_gap_scale != 1
            and self.feature_class_gap_block == "pixels"
            and not self.feature_pixel_grid
        ):
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
            raise ConfigError(
                f"run config sampling-keep must be in (0, 1] (got {self.sampling_keep}); 1 publishes plain sampling"
            )
        if self.g_batch_size < 2 or self.mode_seeking_weight < 0:
            raise ConfigError(
                "run config g-batch-size must be at least 2 (pairs of latents per label) and mode-seeking-weight >= 0"
            )
        if self.super_resolution not in SUPER_RESOLUTION_FACTORS or self.published_image_size not in SUPPORTED_SIZES:
            raise ConfigError(
                f"run config super-resolution must be one of {SUPER_RESOLUTION_FACTORS} and image-size x super-resolution "
                f"one of {SUPPORTED_SIZES} px (got {self.image_size} x {self.super_resolution})"
            )
        if self.super_resolution > 1 and not self.public_source:
            raise ConfigError(
                "run config super-resolution > 1 trains its network on the public images: set public-data"
            )
        if self.site_layers != "all" and not self.pretrains_on_public:
            raise ConfigError(
                f"d-site-layers={self.d_site_layers!r} keeps D's features as initialised unless public pretraining trains them: set public-data (and public-labels), or d-site-layers='all'"
            )

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
            values[field.name] = coerce_run_config_value(key, value, type(field.default))
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
        return GanArchitecture(
            self.image_size, num_classes, self.latent_dim, self.g_width, self.d_width, self.d_head, self.g_upsample
        )

    def discriminator_settings(self) -> DiscriminatorSettings:
        s = self
        options = {"grad_sample_mode": s.grad_sample_mode, "trained_layers": s.site_layers, "augment": s.d_augment}
        return DiscriminatorSettings(s.batch_size, s.local_steps, s.lr_d, 0.5, s.loss, s.aux_weight_d, **options)

    def generator_settings(self) -> GeneratorSettings:
        return GeneratorSettings(
            batch_size=self.g_batch_size,
            steps=self.g_steps,
            lr=self.lr_g,
            beta1=0.5,
            loss=self.loss,
            aux_weight=self.aux_weight_g,
            ema_decay=self.ema_decay,
            mode_seeking_weight=self.mode_seeking_weight,
            mode_seeking_scope=self.mode_seeking_scope,
            feature_matching_weight=self.feature_matching_weight,
            augment=self.d_augment,
        )

    def partition_spec(self, num_sites: int) -> PartitionSpec:
        return PartitionSpec(num_sites, self.partition, self.dirichlet_alpha, self.seed)

    def phantom_spec(self) -> PhantomSpec:
        return PhantomSpec(
            num_patients=self.phantom_patients, images_per_patient=2, image_size=self.image_size, seed=self.seed
        )

    @property
    def published_image_size(self) -> int:
        """The size of the published images: G's image-size times super-resolution."""
        return self.image_size * self.super_resolution

    @property
    def uses_phantoms(self) -> bool:
        return not self.data_dir

    def public_phantom_spec(self) -> PhantomSpec:
        """The embedded public phantom set: as many patients as the sites' set, other patients, another seed."""
        return dataclasses.replace(
            self.phantom_spec(), seed=self.seed + PUBLIC_PHANTOM_SEED_OFFSET, patient_prefix="PUBLIC"
        )

    @property
    def public_source(self) -> str:
        """``public-data`` resolved: "" (none), "phantoms" or a folder ("auto" with public-steps = 0 is none)."""
        if self.public_data == PUBLIC_AUTO:
            return PUBLIC_PHANTOMS if self.uses_phantoms and self.public_steps > 0 else ""
        return self.public_data

    @property
    def pretrains_on_public(self) -> bool:
        return bool(self.public_source) and self.public_steps > 0

    @property
    def site_layers(self) -> str:
        """The D layers sites train: ``d-site-layers``, where "auto" is heads after public pretraining, else all."""
        if self.d_site_layers == "auto":
            return "heads" if self.pretrains_on_public else "all"
        return self.d_site_layers

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        """What the feature release embeds (``common.gan.feature_matching.embed``)."""
        return EmbeddingSpec(
            self.feature_statistics, self.feature_pixel_grid, self.feature_pixel_share, self.feature_count_share
        )

    @property
    def matches_features(self) -> bool:
        """Feature matching runs with a weight > 0 and public pretraining (its embedding is the public D's features)."""
        return self.feature_matching_weight > 0 and self.pretrains_on_public

    def privacy_plan(self, *, releases: bool | None = None) -> PrivacyPlan:
        """The run's privacy plan as requested (each side computes it once). ``releases``: whether the site takes
        part in the feature release (default: whenever the run matches features)."""
        releases = self.matches_features if releases is None else releases and self.matches_features
        return PrivacyPlan.for_run(
            epsilon=self.target_epsilon,
            delta=self.target_delta,
            release_share=self.feature_release_share if releases else 0.0,
            batch_size=self.batch_size,
            total_steps=self.total_local_steps,
        )

    @property
    def total_local_steps(self) -> int:
        return self.num_server_rounds * self.local_steps

    @staticmethod
    def keys() -> dict[str, RunConfigKey]:
        """Every run-config key (kebab-case, in declaration order) with its documentation and flags."""
        return {f.name.replace("_", "-"): f.metadata["key"] for f in fields(ExperimentConfig)}

    def path_or_none(self, value: str) -> Path | None:
        return Path(value).expanduser() if value else None
