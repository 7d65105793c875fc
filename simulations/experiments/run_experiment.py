"""Run one experiment of docs/results.md end to end: patient split, federated training, evaluation.

    python simulations/experiments/run_experiment.py simulations/experiments/<name>.toml [--out runs/] [--repeat 2]
        [--evaluate-on holdout|test] [--evaluate-only | --train-only]

The TOML holds ``[experiment]`` (num-sites, public-prefix, and optionally site-policy: a YAML file beside it that
every simulated site uses, e.g. a no-DP baseline) and ``[run-config]``: only the run-config keys that differ from
the defaults (docs/configuration.md). Data comes from ``$CXR_SHARED_DATA/cxr128`` (default ../shared/data):
``cxr-split --public-prefix`` writes public.csv (the public set, e.g. the NIH rows) and private.csv (the
sites' data, the holdout and the test patients), the simulation trains on private.csv (pretraining on public.csv
when ``public-steps`` > 0), and ``cxr-evaluate`` tests on the holdout patients (the validation split settings are
chosen on; ``evaluation/``) or, with ``--evaluate-on test``, once on the untouched test patients
(``evaluation-test/``): every experiment keeps the same test patients (test-fraction 0.2 of the patients outside
the holdout, fixed seed), away from the sites and the holdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from cxr_fedsynth.common.experiment_config import ExperimentConfig
from cxr_fedsynth.common.privacy.site_policy import SIMULATED_POLICY_ENV, SitePolicy
from cxr_fedsynth.common.publish.model_card import published_image_size

APP = Path(__file__).resolve().parents[1] / "nih_split"
TEST_FRACTION = 0.2  # every experiment's untouched test patients (unless its TOML sets test-fraction)
EVALUATIONS = {"holdout": "evaluation", "test": "evaluation-test"}  # evaluated patients -> the run's output folder
REPEAT_SUFFIX = r"-r\d+$"  # what --repeat appends to a run's name; summarize.py groups the repetitions by it
DATA = (Path(os.environ.get("CXR_SHARED_DATA", "../shared/data")) / "cxr128").resolve()  # every experiment's images


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


def _run_config(values: dict[str, object]) -> str:
    return " ".join(f"{key}={_toml_value(value)}" for key, value in values.items())


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repetition number: runs after the first get a -r<N> suffix (new DP noise)",
    )
    parser.add_argument(
        "--evaluate-on",
        choices=sorted(EVALUATIONS),
        default="holdout",
        help="holdout: the validation patients (choose settings here); test: the untouched test patients (report once)",
    )
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--evaluate-only", action="store_true", help="evaluate the run already in --out, no training")
    stage.add_argument("--train-only", action="store_true", help="train and publish, evaluate later (--evaluate-only)")
    args = parser.parse_args()
    if re.search(REPEAT_SUFFIX, args.config.stem):
        sys.exit(
            f"{args.config}: a name ending like a repetition ({REPEAT_SUFFIX}) would be summarised with another run"
        )
    spec = tomllib.loads(args.config.read_text())
    experiment, run_config = spec.get("experiment", {}), {"test-fraction": TEST_FRACTION, **spec.get("run-config", {})}
    name = args.config.stem + (f"-r{args.repeat}" if args.repeat > 1 else "")
    data = DATA
    out = args.out.resolve()
    split = out / name / "split"
    if not args.evaluate_only:
        _train(experiment, run_config, name, data, out, split, args.config.parent)
    if args.train_only:
        return
    card = json.loads((out / name / "model_card.json").read_text())
    _run(
        [
            "cxr-evaluate",
            "--generator",
            str(out / name),
            "--real-train",
            str(data),
            "--train-labels",
            str(split / "train.csv"),
            "--real-test",
            str(data),
            "--test-labels",
            str(split / f"{args.evaluate_on}.csv"),
            "--out",
            str(out / name / EVALUATIONS[args.evaluate_on]),
            "--public",
            str(data),
            "--public-labels",
            str(split / "public.csv"),
            # one self-supervised realism encoder per public split and size, trained once, reused by every run
            "--encoder",
            str(
                out
                / f"realism-encoder-{experiment.get('public-prefix', 'nih_')}{published_image_size(card)}px.safetensors"
            ),
        ]
    )


def _train(experiment: dict, run_config: dict, name: str, data: Path, out: Path, split: Path, config_dir: Path) -> None:
    """Split the patients, run the simulation and check that the sites ran under the experiment's policy."""
    num_sites = int(experiment.get("num-sites", 4))
    split_keys = {
        k: v
        for k, v in run_config.items()
        if k in ("seed", "holdout-fraction", "test-fraction", "partition", "dirichlet-alpha", "conditions")
    }
    _run(
        [
            "cxr-split",
            "--num-sites",
            str(num_sites),
            "--out",
            str(split),
            "--public-prefix",
            experiment.get("public-prefix", "nih_"),
            "--run-config",
            _run_config({"data-dir": str(data), **split_keys}),
        ]
    )
    run_config = {
        **run_config,
        "data-dir": str(data),
        "labels": str(split / "private.csv"),
        "output-dir": str(out),
        "run-name": name,
    }
    if int(run_config.get("public-steps", ExperimentConfig().public_steps)) > 0:
        run_config.update({"public-data": str(data), "public-labels": str(split / "public.csv")})
    policy = (config_dir / experiment["site-policy"]).resolve() if "site-policy" in experiment else None
    env = {**os.environ, SIMULATED_POLICY_ENV: str(policy)} if policy else None
    _run(
        [
            "flwr",
            "run",
            str(APP),
            "--stream",
            "--federation-config",
            f"num-supernodes={num_sites} client-resources-num-cpus=1",
            "--run-config",
            _run_config(run_config),
        ],
        env,
    )
    if not (out / name / "generator.safetensors").is_file():  # flwr run exits 0 even when the ServerApp failed
        sys.exit(f"{name}: no generator was published under {out / name}; see the log above")
    private = json.loads((out / name / "model_card.json").read_text())["private"]
    if private != (policy is None or SitePolicy.load(policy, deployed=False).dp):
        sys.exit(
            f"{name}: the sites ran {'with' if private else 'without'} DP, not as {policy or 'the default policy'} says: "
            f"the background SuperLink keeps the environment it was started with; stop it and run again"
        )


if __name__ == "__main__":
    main()
