"""A published generator: ``generator.safetensors`` + ``model_card.json`` + ``MODEL_CARD.md`` + ``samples.png``.

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

from common.atomic import atomic_path, write_json_atomic, write_text_atomic
from common.errors import ArtifactError
from common.model_card import render_model_card
from common.models import Discriminator, GanArchitecture, Generator
from common.sample_grid import save_sample_grid

CARD_FORMAT = "cxr-fedsynth-generator/1"
WEIGHTS = "generator.safetensors"
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
        return max((float(s["epsilon"]) for s in self.card.get("sites", []) if s.get("epsilon") is not None), default=None)

    @property
    def delta(self) -> float:
        return float(self.card.get("privacy", {}).get("delta") or DEFAULT_DELTA)


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def clean_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors with no Opacus ``_module.`` prefix, ready to publish or send."""
    return {k.removeprefix("_module."): v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def publish_generator(out_dir: Path, generator: Generator, card: dict, *, samples_per_class: int = 8) -> Path:
    """Write weights, card (JSON + Markdown) and a per-class sample grid into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = generator.arch
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(clean_state_dict(generator), str(tmp), metadata={"format": CARD_FORMAT, "architecture": json.dumps(arch.to_dict())})
    card = {**card, "format": CARD_FORMAT, "architecture": arch.to_dict(), "weights_sha256": file_sha256(out_dir / WEIGHTS)}
    save_sample_grid(out_dir / SAMPLES, generator, card["classes"], per_class=samples_per_class, private=card["private"])
    write_json_atomic(out_dir / CARD_JSON, card)
    write_text_atomic(out_dir / CARD_MD, render_model_card(card))
    return out_dir


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> PublishedGenerator:
    """Load a published generator (no pickle); checks the card's format and the weights' hash."""
    path = Path(path)
    card_path, weights_path = path / CARD_JSON, path / WEIGHTS
    for required in (card_path, weights_path):
        if not required.is_file():
            raise ArtifactError(f"{required}: missing; pass the folder a cxr-fedsynth run published (it holds {WEIGHTS} and {CARD_JSON})")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{card_path}: not valid JSON ({exc}); re-download the published generator") from None
    if card.get("format") != CARD_FORMAT:
        raise ArtifactError(f"{card_path}: format {card.get('format')!r} is not {CARD_FORMAT!r}; this is not a cxr-fedsynth generator")
    if file_sha256(weights_path) != card.get("weights_sha256"):
        raise ArtifactError(f"{weights_path}: SHA-256 does not match the model card; the weights were changed or damaged")
    try:
        state = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    generator = Generator(GanArchitecture(**card["architecture"]))
    generator.load_state_dict(state, strict=True)
    return PublishedGenerator(generator.to(device).eval(), card)


def sample(published: PublishedGenerator, class_name: str, count: int, *, seed: int, batch_size: int = 256) -> torch.Tensor:
    """``count`` images of one class in [-1, 1], [N, 1, S, S]; reproducible from ``seed``."""
    if class_name not in published.classes:
        raise ArtifactError(f"class {class_name!r} is not one this generator learned; choose one of {published.classes}")
    label = published.classes.index(class_name)
    g = published.generator
    device = next(g.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            z = torch.randn(n, g.arch.latent_dim, device=device, generator=gen)
            chunks.append(g(z, torch.full((n,), label, device=device, dtype=torch.long)))
    return torch.cat(chunks) if chunks else torch.zeros(0, 1, g.arch.image_size, g.arch.image_size)


def load_discriminator(path: Path, arch: GanArchitecture, *, device: str | torch.device = "cpu") -> Discriminator:
    """The aggregated discriminator from a server checkpoint (``discriminator.*`` keys) or a plain state dict."""
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({exc}); pass checkpoint/checkpoint.safetensors") from None
    if any(k.startswith("discriminator.") for k in state):
        state = {k.removeprefix("discriminator."): v for k, v in state.items() if k.startswith("discriminator.")}
    discriminator = Discriminator(arch)
    try:
        discriminator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: discriminator weights do not fit this generator's architecture ({exc})") from None
    return discriminator.to(device).eval()
