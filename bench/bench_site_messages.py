"""A simulated site's message time with its data kept across rounds vs read again per message.

Each message of a simulated site used to read the run's label table, split it by patient and hash every
image file against the preprocessing cache before training; now the partition and the decoded images are
kept per process (``client.site_config.simulated_site_data``). Both ways are timed side by side in one run,
interleaved, on the real cxr128 set (4 sites, site 0) with the default 15 local steps at 64 px (no DP: the
data path is what is compared).
Usage: python -m bench.bench_site_messages [--data ../shared/data/cxr128] [--messages 3]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import write_result
from cxr_fedsynth.client.site_config import simulated_site_data, site_from_context
from cxr_fedsynth.client.site_round import RunPrivacyState, run_site_round
from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.gan.models import build_models
from cxr_fedsynth.common.privacy.site_policy import SitePolicy
from cxr_fedsynth.common.publish.artifacts import clean_state_dict

NODE = {"partition-id": 0, "num-partitions": 4}


def message(
    config: ExperimentConfig, weights: dict, run_dir: Path, round_number: int, *, keep: bool
) -> tuple[float, float]:
    """(seconds to get the site's data, seconds for the whole message) for one train message."""
    if not keep:
        simulated_site_data.cache_clear()
    start = time.perf_counter()
    site = site_from_context(config, NODE, run_dir=str(run_dir))
    data_s = time.perf_counter() - start
    run_site_round(
        config,
        site,
        global_weights=weights,
        run_id="bench",
        round_number=round_number,
        state=RunPrivacyState(),
        plan=None,
    )
    return data_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr128"
    )
    parser.add_argument("--messages", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = ExperimentConfig(data_dir=str(args.data), cache_dir=f"{tmp}/cache")
        g, d = build_models(config.architecture(len(config.condition_set())), seed=0)
        weights = {"generator": clean_state_dict(g), "discriminator": clean_state_dict(d)}
        message(config, weights, Path(tmp), 0, keep=False)  # fills the preprocessing cache on disk
        rows = {"kept": [], "re-read": []}
        for round_number in range(1, args.messages + 1):
            for way, keep in (("kept", True), ("re-read", False)):
                rows[way].append(message(config, weights, Path(tmp), round_number, keep=keep))
    best = {way: (min(r[0] for r in rs), min(r[1] for r in rs)) for way, rs in rows.items()}
    result = {
        "data": str(args.data),
        "site": "sim-site-0 of 4",
        "images": len(simulated_site_data(config, SitePolicy.for_simulated_site(), 0, 4)[0]),
        "data_s": {way: round(b[0], 4) for way, b in best.items()},
        "message_s": {way: round(b[1], 3) for way, b in best.items()},
        "message_ratio_reread_to_kept": round(best["re-read"][1] / best["kept"][1], 3),
    }
    print(result)
    print(f"written {write_result('site_messages', result)}")


if __name__ == "__main__":
    main()
