"""What a round costs at 64, 128 and 256 px: a site's DP message and the server's generator steps.

Side by side in one run, interleaved, on the real cxr128 set (4 sites, site 0; 256 px is the 128 px images
upsampled, which costs the same as native 256 px images): one train message of a simulated site with the
default experiment's settings (NIH rows public, so 15 DP-SGD steps on D's heads, Poisson batches of 32 patients,
CSPRNG noise), and the server's 15 G steps against the aggregated D (batch 64, mode seeking). A round of the
default run is one site message (sites train in parallel) plus the G steps plus Flower's overhead.
Usage: python -m bench.bench_resolution [--data ../shared/data/cxr128] [--repeats 2] [--sizes 64 128 256]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.common import split_public, write_result
from cxr_fedsynth.client.site_config import site_from_context
from cxr_fedsynth.client.site_round import RunPrivacyState, run_site_round, site_plan
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.generator_training import GeneratorTrainer
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.protocol import OK
from cxr_fedsynth.common.publish.artifacts import clean_state_dict

NODE = {"partition-id": 0, "num-partitions": 4}


class Resolution:
    """One image size's site and server, built once; each call times one message or one round of G steps."""

    def __init__(self, data: Path, size: int, tmp: Path) -> None:
        self.config = ExperimentConfig(
            data_dir=str(data),
            labels=str(tmp / "private.csv"),
            public_data=str(data),
            public_labels=str(tmp / "public.csv"),
            image_size=size,
            cache_dir=str(tmp / "cache"),
        )
        self.run_dir = tmp / f"run-{size}"
        generator, self.discriminator = build_models(self.config.architecture(len(self.config.condition_set())), seed=0)
        self.g_trainer = GeneratorTrainer(generator, self.config.generator_settings())
        self.weights = {"generator": clean_state_dict(generator), "discriminator": clean_state_dict(self.discriminator)}
        self.state = RunPrivacyState()
        self.rounds = 0

    def site_message(self) -> float:
        self.rounds += 1
        start = time.perf_counter()
        site = site_from_context(self.config, NODE, run_dir=str(self.run_dir))
        reply, self.state = run_site_round(
            self.config,
            site,
            global_weights=self.weights,
            run_id="bench",
            round_number=self.rounds,
            state=self.state,
            plan=site_plan(self.config, site.policy),
        )
        if reply.status != OK:
            raise RuntimeError(f"the site refused the benchmark's round: {reply.reason}")
        return time.perf_counter() - start

    def generator_steps(self) -> float:
        start = time.perf_counter()
        self.g_trainer.train_against(self.discriminator, seed=self.rounds)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr128"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        split_public(args.data, Path(tmp))
        sizes = {size: Resolution(args.data, size, Path(tmp)) for size in args.sizes}
        for resolution in sizes.values():  # warm-up: decodes the site's images at that size, first allocations
            resolution.site_message()
            resolution.generator_steps()
        times: dict[int, dict[str, list[float]]] = {size: {"site": [], "server": []} for size in sizes}
        for _ in range(args.repeats):
            for size, resolution in sizes.items():
                times[size]["site"].append(resolution.site_message())
                times[size]["server"].append(resolution.generator_steps())
    best = {size: {part: min(values) for part, values in t.items()} for size, t in times.items()}
    smallest = min(best)
    result = {
        "data": str(args.data),
        "threads": torch.get_num_threads(),
        "site_message_s": {size: round(b["site"], 2) for size, b in best.items()},
        "server_generator_steps_s": {size: round(b["server"], 2) for size, b in best.items()},
        "round_compute_s": {size: round(b["site"] + b["server"], 2) for size, b in best.items()},
        f"ratio_to_{smallest}px": {
            size: round((b["site"] + b["server"]) / (best[smallest]["site"] + best[smallest]["server"]), 2)
            for size, b in best.items()
        },
    }
    print(result)
    print(f"written {write_result('resolution', result)}")


if __name__ == "__main__":
    main()
