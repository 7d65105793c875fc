"""Cost of CSPRNG noise: a private discriminator step with noise from the OS CSPRNG (four Box-Muller normals per
value, ``common.privacy.secure_noise``; what sites use) against the same step with torch's seeded generator.

Both steps run side by side in one process, interleaved, best of N, at 64 and 128 px (batch 32, book-keeping
clipping), for the two layer sets a site trains: every layer of D, and only D's heads (the default with public
pretraining). The noise draw alone is timed too. Usage: python -m bench.bench_secure_noise
"""

from __future__ import annotations

import json

import torch

from bench.common import best_time, write_result
from cxr_fedsynth.common.gan.discriminator_training import DiscriminatorSettings, DiscriminatorTrainer, DPSettings
from cxr_fedsynth.common.gan.models import GanArchitecture, build_models
from cxr_fedsynth.common.privacy.accounting import make_accountant
from cxr_fedsynth.common.privacy.secure_noise import secure_gaussian_like


def make_step(size: int, layers: str, *, secure: bool):
    """One DP step of D (32 real + 32 fake rows) with seeded or CSPRNG noise."""
    arch = GanArchitecture(image_size=size, num_classes=4, latent_dim=64, g_width=16, d_width=16)
    _, discriminator = build_models(arch, seed=0)
    settings = DiscriminatorSettings(batch_size=32, trained_layers=layers)
    trainer = DiscriminatorTrainer(
        discriminator,
        settings,
        dp=DPSettings(1.0, 1.0, 0.1),
        accountant=make_accountant(),
        noise_generator=torch.Generator().manual_seed(0),
        secure_noise=secure,
    )
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(32, 1, size, size, generator=gen) * 2 - 1
    fake = torch.rand(32, 1, size, size, generator=gen) * 2 - 1
    labels = torch.randint(0, 4, (32,), generator=gen)
    trained = sum(p.numel() for p in discriminator.parameters() if p.requires_grad)
    return (lambda: trainer.step(real, labels, fake, labels)), trained


def main() -> None:
    rows = []
    for size in (64, 128):
        for layers in ("all", "heads"):
            seeded, params = make_step(size, layers, secure=False)
            secure, _ = make_step(size, layers, secure=True)
            reference = torch.zeros(params)
            times = {
                "seeded_step_s": best_time(seeded, repeats=7, warmup=2),
                "csprng_step_s": best_time(secure, repeats=7, warmup=2),
                "seeded_noise_s": best_time(lambda: torch.randn(params), repeats=7),
                "csprng_noise_s": best_time(lambda: secure_gaussian_like(reference, 1.0), repeats=7),
            }
            row = {"size": size, "layers": layers, "noised_parameters": params, **times}
            row["step_ratio_csprng_to_seeded"] = times["csprng_step_s"] / times["seeded_step_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"written {write_result('secure_noise', {'rows': rows})}")


if __name__ == "__main__":
    main()
