"""A published generator: ``generator.safetensors`` + ``model_card.json`` + ``MODEL_CARD.md`` + ``samples.png``, and
with guided sampling (``common.gan.guided_sampling``) the run's DP discriminator, ``discriminator.safetensors``; a run
with ``generator-members`` > 1 adds ``generator-member-<i>.safetensors``, and samples are drawn equally from all;
with ``super-resolution`` > 1, ``super-resolution.safetensors`` enlarges every sample (trained on public images only).

Weights are safetensors (never pickle); the card says what the generator was trained on, how private it is
(per-site epsilon and delta, accountant, privacy unit) and how to rebuild it. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cxr_fedsynth.common.atomic import atomic_path, write_json_atomic, write_text_atomic
from cxr_fedsynth.common.data.preprocess import to_uint8
from cxr_fedsynth.common.errors import ArtifactError, CxrError
from cxr_fedsynth.common.gan.guided_sampling import draw
from cxr_fedsynth.common.gan.models import Discriminator, GanArchitecture, Generator
from cxr_fedsynth.common.gan.super_resolution import SuperResolution, SuperResolutionSpec
from cxr_fedsynth.common.publish.model_card import published_image_size, render_model_card
from cxr_fedsynth.common.publish.sample_grid import save_sample_grid

CARD_FORMAT = "cxr-fedsynth-generator/1"
WEIGHTS = "generator.safetensors"
MEMBER_WEIGHTS = "generator-member-{}.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
SUPER_RESOLUTION = "super-resolution.safetensors"
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
SAMPLES = "samples.png"
#: delta assumed for a card that records none (a NOT PRIVATE generator).
DEFAULT_DELTA = 1e-5


@dataclass
class PublishedGenerator:
    """A loaded generator with its model card."""

    generator: Generator
    card: dict
    discriminator: Discriminator | None = None
    members: tuple[Generator, ...] = ()  # further generators of the same run; samples come equally from all
    super_resolution: SuperResolution | None = None  # enlarges every sample (public-only post-processing)

    @property
    def image_size(self) -> int:
        """The side of the published images in pixels."""
        return published_image_size(self.card)

    @property
    def generators(self) -> tuple[Generator, ...]:
        """Every generator samples are drawn from: the run's own first."""
        return (self.generator, *self.members)

    @property
    def sampling_keep(self) -> float:
        """Share of candidates that guided sampling keeps (1: plain samples; cards before guided sampling)."""
        return float(self.card.get("sampling", {}).get("keep", 1.0))

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def private(self) -> bool:
        return bool(self.card["private"])

    @property
    def claimed_epsilon(self) -> float | None:
        """The largest per-site epsilon the card claims; None for a NOT PRIVATE generator."""
        if not self.private:
            return None
        return max(
            (float(s["epsilon"]) for s in self.card.get("sites", []) if s.get("epsilon") is not None), default=None
        )

    @property
    def delta(self) -> float:
        return float(self.card.get("privacy", {}).get("delta") or DEFAULT_DELTA)


def member_share(count: int, members: int, index: int) -> int:
    """How many of ``count`` images member ``index`` of ``members`` draws: equal shares, the first ones one more."""
    return count // members + (index < count % members)


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def clean_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors with no Opacus ``_module.`` prefix, ready to publish or send."""
    return {k.removeprefix("_module."): v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _save_generator(path: Path, generator: Generator) -> str:
    """Write one generator's weights atomically; returns the file's SHA-256."""
    with atomic_path(path) as tmp:
        save_file(
            clean_state_dict(generator),
            str(tmp),
            metadata={"format": CARD_FORMAT, "architecture": json.dumps(generator.arch.to_dict())},
        )
    return file_sha256(path)


def publish_generator(
    out_dir: Path,
    generator: Generator,
    card: dict,
    *,
    discriminator: Discriminator | None = None,
    sampling_keep: float = 1.0,
    samples_per_class: int = 8,
    members: tuple[Generator, ...] = (),
    super_resolution: SuperResolution | None = None,
) -> Path:
    """Write weights, card (JSON + Markdown) and a per-class sample grid into ``out_dir``; with ``sampling_keep`` < 1
    also the ``discriminator`` that guided sampling keeps the best candidates by; ``members`` are further generators
    of the same architecture that samples are drawn from equally (``generator-member-<i>.safetensors``);
    ``super_resolution`` enlarges every sample (``card["super_resolution"]`` may say what it was trained on)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = generator.arch
    if any(member.arch != arch for member in members):
        raise ArtifactError("every generator member must have the run's architecture")
    card = {
        **card,
        "format": CARD_FORMAT,
        "architecture": arch.to_dict(),
        "weights_sha256": _save_generator(out_dir / WEIGHTS, generator),
    }
    card["members"] = [
        {"file": MEMBER_WEIGHTS.format(i), "sha256": _save_generator(out_dir / MEMBER_WEIGHTS.format(i), member)}
        for i, member in enumerate(members, start=1)
    ]
    for stale in set(out_dir.glob(MEMBER_WEIGHTS.format("*"))) - {out_dir / m["file"] for m in card["members"]}:
        stale.unlink()  # an earlier publication's members, which this card does not list
    super_resolution_entry = card.pop("super_resolution", {})
    if super_resolution is None:
        (out_dir / SUPER_RESOLUTION).unlink(missing_ok=True)  # an earlier publication's, which this card does not list
    else:
        with atomic_path(out_dir / SUPER_RESOLUTION) as tmp:
            save_file(
                clean_state_dict(super_resolution),
                str(tmp),
                metadata={"format": CARD_FORMAT, "recipe": json.dumps(super_resolution.spec.to_dict())},
            )
        card["super_resolution"] = {
            **super_resolution_entry,
            "recipe": super_resolution.spec.to_dict(),
            "sha256": file_sha256(out_dir / SUPER_RESOLUTION),
        }
    card["sampling"] = {"method": "plain", "keep": 1.0}
    if sampling_keep < 1:
        if discriminator is None:
            raise ArtifactError("guided sampling (sampling-keep < 1) needs the run's discriminator to publish")
        with atomic_path(out_dir / DISCRIMINATOR) as tmp:
            save_file(clean_state_dict(discriminator), str(tmp), metadata={"format": CARD_FORMAT})
        card["sampling"] = {
            "method": "discriminator top-k",
            "keep": sampling_keep,
            "discriminator_sha256": file_sha256(out_dir / DISCRIMINATOR),
        }
    published = PublishedGenerator(
        generator, card, discriminator if sampling_keep < 1 else None, tuple(members), super_resolution
    )
    rows = [to_uint8(sample(published, name, samples_per_class, seed=i)) for i, name in enumerate(card["classes"])]
    save_sample_grid(out_dir / SAMPLES, rows, card["classes"], private=card["private"])
    write_json_atomic(out_dir / CARD_JSON, card)
    write_text_atomic(out_dir / CARD_MD, render_model_card(card))
    return out_dir


def _load_weights(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({exc})") from None


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> PublishedGenerator:
    """Load a published generator (no pickle); checks the card's format and the weights' hash."""
    path = Path(path)
    card_path, weights_path = path / CARD_JSON, path / WEIGHTS
    for required in (card_path, weights_path):
        if not required.is_file():
            raise ArtifactError(
                f"{required}: missing; pass the folder a cxr-fedsynth run published (it holds {WEIGHTS} and {CARD_JSON})"
            )
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{card_path}: not valid JSON ({exc}); re-download the published generator") from None
    if card.get("format") != CARD_FORMAT:
        raise ArtifactError(
            f"{card_path}: format {card.get('format')!r} is not {CARD_FORMAT!r}; this is not a cxr-fedsynth generator"
        )
    if file_sha256(weights_path) != card.get("weights_sha256"):
        raise ArtifactError(
            f"{weights_path}: SHA-256 does not match the model card; the weights were changed or damaged"
        )
    arch = GanArchitecture(**card["architecture"])
    generator = _load_generator_weights(weights_path, arch, device)
    members = []
    for member in card.get("members", []):
        member_path = path / Path(member["file"]).name
        if not member_path.is_file() or file_sha256(member_path) != member["sha256"]:
            raise ArtifactError(
                f"{member_path}: missing or its SHA-256 does not match the model card; re-download the whole published folder"
            )
        members.append(_load_generator_weights(member_path, arch, device).eval())
    discriminator = None
    if "discriminator_sha256" in card.get("sampling", {}):
        d_path = path / DISCRIMINATOR
        if not d_path.is_file() or file_sha256(d_path) != card["sampling"]["discriminator_sha256"]:
            raise ArtifactError(
                f"{d_path}: missing or its SHA-256 does not match the model card; guided sampling needs the published discriminator"
            )
        discriminator = load_discriminator(d_path, arch, device=device)
    return PublishedGenerator(
        generator.eval(), card, discriminator, tuple(members), _load_super_resolution(path, card, device)
    )


def _load_super_resolution(path: Path, card: dict, device: str | torch.device) -> SuperResolution | None:
    entry = card.get("super_resolution")
    if entry is None:
        return None
    sr_path = path / SUPER_RESOLUTION
    if not sr_path.is_file() or file_sha256(sr_path) != entry.get("sha256"):
        raise ArtifactError(
            f"{sr_path}: missing or its SHA-256 does not match the model card; re-download the whole published folder"
        )
    try:
        network = SuperResolution(SuperResolutionSpec(**entry["recipe"]))
        network.load_state_dict(_load_weights(sr_path, device), strict=True)
    except (TypeError, KeyError, RuntimeError, CxrError) as exc:
        raise ArtifactError(f"{sr_path}: super-resolution weights do not fit the model card's recipe ({exc})") from None
    return network.to(device).eval()


def _load_generator_weights(path: Path, arch: GanArchitecture, device: str | torch.device) -> Generator:
    generator = Generator(arch)
    try:
        generator.load_state_dict(_load_weights(path, device), strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: generator weights do not fit the model card's architecture ({exc})") from None
    return generator.to(device)


def sample(
    published: PublishedGenerator,
    class_name: str,
    count: int,
    *,
    seed: int,
    keep: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """``count`` images of one class in [-1, 1], [N, 1, S, S]; reproducible from ``seed``. ``keep`` overrides the
    card's guided-sampling share (1: plain samples; < 1 needs the published discriminator). With members, the
    images come in equal shares from each generator in turn (the run's own first, drawing from ``seed``)."""
    if class_name not in published.classes:
        raise ArtifactError(
            f"class {class_name!r} is not one this generator learned; choose one of {published.classes}"
        )
    keep = published.sampling_keep if keep is None else keep
    if keep < 1 and published.discriminator is None:
        raise ArtifactError(
            f"guided sampling (keep {keep}) needs a discriminator: this generator was published without one; use keep 1"
        )
    label = published.classes.index(class_name)
    generators = published.generators
    chunks = []
    for index, g in enumerate(generators):
        share = member_share(count, len(generators), index)
        gen = torch.Generator(device=next(g.parameters()).device).manual_seed(
            seed if index == 0 else seed * 1_000_003 + index
        )
        chunks += [
            draw(g, label, min(batch_size, share - start), gen=gen, keep=keep, discriminator=published.discriminator)
            for start in range(0, share, batch_size)
        ]
    if published.super_resolution is not None:
        with torch.inference_mode():
            chunks = [published.super_resolution(chunk) for chunk in chunks]
    size = published.image_size
    return torch.cat(chunks) if chunks else torch.zeros(0, 1, size, size)


def load_discriminator(path: Path, arch: GanArchitecture, *, device: str | torch.device = "cpu") -> Discriminator:
    """The aggregated discriminator from a server checkpoint (``discriminator.*`` keys) or a plain state dict."""
    state = _load_weights(path, device)
    if any(k.startswith("discriminator.") for k in state):
        state = {k.removeprefix("discriminator."): v for k, v in state.items() if k.startswith("discriminator.")}
    discriminator = Discriminator(arch)
    try:
        discriminator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: discriminator weights do not fit this generator's architecture ({exc})") from None
    return discriminator.to(device).eval()
