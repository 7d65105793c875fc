"""The server's side of a run: broadcast G and D, aggregate the sites' DP discriminators, train G, publish.

With feature matching on, the run starts with one query: every site releases its noisy class sums of image
embeddings once (``client.feature_release``), and the server turns their total into class-mean targets that G
matches in every later G step. Every round: send G and D to every connected site -> each site trains D with
DP-SGD (or refuses, over budget) -> average the returned D weights, weighted by the sites' patient counts ->
train G against that D -> log one line, append to ``metrics.csv``, checkpoint. After the last round the
generator (EMA weights) is published with its model card.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import torch
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from cxr_fedsynth.common.atomic import atomic_path
from cxr_fedsynth.common.devices import pick_device
from cxr_fedsynth.common.errors import CxrError
from cxr_fedsynth.common.experiment_config import PUBLIC_PHANTOMS, ExperimentConfig
from cxr_fedsynth.common.gan.feature_matching import (
    MIN_CLASS_PATIENTS,
    FeatureMatcher,
)
from cxr_fedsynth.common.gan.generator_training import GeneratorTrainer
from cxr_fedsynth.common.gan.models import Generator, build_models
from cxr_fedsynth.common.protocol import (
    PHANTOM_DATA,
    Metric,
    ReleaseRequest,
    RoundInfo,
    SiteReply,
    TrainRequest,
)
from cxr_fedsynth.common.publish.artifacts import clean_state_dict, publish_generator
from cxr_fedsynth.server.aggregation import SiteStats, weighted_average
from cxr_fedsynth.server.checkpoint import Checkpoint, load_checkpoint, module_state, restore_optimizer, save_checkpoint
from cxr_fedsynth.server.generator_members import train_members
from cxr_fedsynth.server.public_pretraining import (
    check_public_patients_are_not_private,
    pretrain_on_public,
    pretraining_key,
)
from cxr_fedsynth.server.public_super_resolution import train_public_super_resolution
from cxr_fedsynth.server.release_targets import set_release_targets
from cxr_fedsynth.server.run_card import run_model_card

log = logging.getLogger("cxr_fedsynth.server")
NODE_WAIT_S = 120.0


class FederatedGanServer:
    """State of a run on the server; ``run(grid)`` drives it through Flower."""

    def __init__(self, config: ExperimentConfig, *, run_name: str) -> None:
        self.config = config
        self.run_name = run_name
        self.run_dir = Path(config.output_dir).expanduser().resolve() / run_name
        self.conditions = config.condition_set()
        self.device = pick_device(config.device)
        self.arch = config.architecture(len(self.conditions))
        generator, self.discriminator = build_models(self.arch, seed=config.seed)
        self.g_trainer = GeneratorTrainer(generator.to(self.device), config.generator_settings())
        self.discriminator.to(self.device)
        self.sites: dict[str, SiteStats] = {}
        self.metric_rows: list[dict] = []
        self.start_round = 1
        self.public: dict | None = None
        self.matcher: FeatureMatcher | None = None
        self.feature_release: dict | None = None
        self.plan = config.privacy_plan()  # as requested: the public noise of the release
        self._resume()

    # ------------------------------------------------------------------ state
    def _resume(self) -> None:
        checkpoint = load_checkpoint(self.run_dir / "checkpoint")
        if checkpoint is None:
            return
        self._load_weights(checkpoint)
        self.sites = {name: SiteStats.from_checkpoint(stats) for name, stats in checkpoint.progress["sites"].items()}
        self.metric_rows = list(checkpoint.progress["metrics"])
        self.start_round = checkpoint.round + 1
        self.public = checkpoint.progress.get("public_pretraining")
        self.feature_release = checkpoint.progress.get("feature_release")
        if self.feature_release is not None:
            self.matcher = self._new_matcher()
            state = module_state(checkpoint.tensors, "feature_matcher")
            # checkpoints from before the noise-aware matching rule kept no "matched": they matched on the count alone
            state.setdefault("matched", state["patients"] >= MIN_CLASS_PATIENTS)
            self.matcher.load_state_dict(state)
        log.info("resuming run %s after round %d from %s", self.run_name, checkpoint.round, self.run_dir / "checkpoint")

    def _load_weights(self, checkpoint: Checkpoint) -> None:
        self.g_trainer.generator.load_state_dict(module_state(checkpoint.tensors, "generator"))
        self.g_trainer.ema.load_state_dict(module_state(checkpoint.tensors, "ema"))
        self.discriminator.load_state_dict(module_state(checkpoint.tensors, "discriminator"))
        restore_optimizer(self.g_trainer.optimizer, checkpoint.tensors)
        self.g_trainer.updates = int(checkpoint.progress.get("g_updates", 0))

    def _modules(self) -> dict[str, torch.nn.Module]:
        modules = {
            "generator": self.g_trainer.generator,
            "ema": self.g_trainer.ema,
            "discriminator": self.discriminator,
        }
        return modules | ({"feature_matcher": self.matcher} if self.matcher is not None else {})

    def _new_matcher(self) -> FeatureMatcher:
        """The release's feature space: a frozen copy of D's features now."""
        return FeatureMatcher(self.discriminator.features, len(self.conditions), self.config.embedding_spec).to(
            self.device
        )

    def _pretraining_store(self) -> Path:
        return self.run_dir.parent / "public-pretraining" / pretraining_key(self.config)

    def _pretrain_on_public(self) -> None:
        """Pretrain on the public set, or reuse the stored weights of an identical earlier pretraining."""
        store = self._pretraining_store()
        stored = load_checkpoint(store)
        if stored is None:
            self.public = pretrain_on_public(
                self.config, self.g_trainer, self.discriminator, device=self.device
            ).to_dict()
            progress = {"g_updates": self.g_trainer.updates, "public_pretraining": self.public}
            save_checkpoint(
                store, round_number=0, modules=self._modules(), optimizer=self.g_trainer.optimizer, progress=progress
            )
        else:
            self._load_weights(stored)
            self.public = stored.progress["public_pretraining"]
            log.info("public pretraining: reusing the identical pretraining stored in %s", store)
        self._checkpoint(0)

    def _checkpoint(self, round_number: int) -> None:
        save_checkpoint(
            self.run_dir / "checkpoint",
            round_number=round_number,
            modules=self._modules(),
            optimizer=self.g_trainer.optimizer,
            progress={
                "run_name": self.run_name,
                "g_updates": self.g_trainer.updates,
                "sites": {name: vars(stats) for name, stats in self.sites.items()},
                "metrics": self.metric_rows,
                "public_pretraining": self.public,
                "feature_release": self.feature_release,
            },
        )

    # ------------------------------------------------------------------ messages
    def round_content(self, round_number: int) -> RecordDict:
        """What every site receives: G and D weights and the round's identifiers."""
        info = RoundInfo(self.run_name, round_number, str(self.run_dir))
        return TrainRequest(
            clean_state_dict(self.g_trainer.generator), clean_state_dict(self.discriminator), info
        ).to_content()

    def release_content(self, space: FeatureMatcher) -> RecordDict:
        """What every site receives for the feature release: the feature space (so sites embed as G will be
        judged) and the run's ids."""
        return ReleaseRequest(clean_state_dict(space), RoundInfo(self.run_name, 0, str(self.run_dir))).to_content()

    def absorb_release(self, space: FeatureMatcher, replies: list[Message]) -> None:
        """Sum the sites' released tables into the class-mean targets G will match in ``space``."""
        tables, private = [], 0
        for reply in replies:
            if reply.has_error():
                log.warning("feature release: a site failed: %s", reply.error.reason)
                continue
            answer = SiteReply.from_content(reply.content)
            stats = self.sites.setdefault(answer.site, SiteStats(name=answer.site))
            if not answer.ok:
                log.warning("feature release: site %s refused: %s", stats.name, answer.reason)
                continue
            tables.append(answer.feature_sums.to(self.device))
            private += answer.dp
            stats.absorb(answer)
        if len(tables) < self.config.min_sites:
            raise CxrError(
                f"feature release: {len(tables)} site(s) released, min-sites is {self.config.min_sites}; see the sites' logs"
            )
        self.feature_release = set_release_targets(
            space,
            tables,
            config=self.config,
            plan=self.plan if private else None,
            table_noise_std=self.plan.release_noise_multiplier * private**0.5,  # 0 from baseline sites without DP
            conditions=self.conditions.names,
            generator=self.g_trainer.generator,
        )
        self.matcher = space

    def absorb_replies(self, round_number: int, replies: list[Message], num_sent: int) -> dict:
        """Aggregate successful replies into D, update per-site stats; returns the round's site metrics."""
        states, fake_scores = [], []
        refused, failed = 0, num_sent - len(replies)
        for reply in replies:
            if reply.has_error():
                failed += 1
                log.warning("round %d: a site failed: %s", round_number, reply.error.reason)
                continue
            answer = SiteReply.from_content(reply.content)
            metrics = answer.metrics
            stats = self.sites.setdefault(answer.site, SiteStats(name=answer.site))
            if not answer.ok:
                refused += 1
                stats.refused += 1
                log.warning("round %d: site %s refused: %s", round_number, stats.name, answer.reason)
                continue
            states.append(answer.discriminator)
            fake_scores.append(metrics[Metric.FAKE_SCORE])
            stats.rounds += 1
            stats.steps += int(metrics[Metric.LOCAL_STEPS])
            stats.absorb(answer)
        if states:  # equal weights: sites send no counts
            self.discriminator.load_state_dict(weighted_average(states, [1.0] * len(states)))
        row = {"sites_ok": len(states), "sites_refused": refused, "sites_failed": failed}
        return row | ({"fake-score": sum(fake_scores) / len(fake_scores)} if fake_scores else {})

    # ------------------------------------------------------------------ loop
    def _wait_for_sites(self, grid: Grid) -> list[int]:
        deadline = time.monotonic() + NODE_WAIT_S
        while True:
            nodes = list(grid.get_node_ids())
            if len(nodes) >= self.config.min_sites or time.monotonic() > deadline:
                return nodes
            time.sleep(1.0)

    def _nodes(self, grid: Grid) -> list[int]:
        nodes = self._wait_for_sites(grid)
        if len(nodes) < self.config.min_sites:
            raise CxrError(
                f"only {len(nodes)} site(s) connected, min-sites is {self.config.min_sites}; start more SuperNodes"
            )
        return nodes

    def _release_features(self, grid: Grid) -> None:
        space = self._new_matcher()
        content = self.release_content(space)
        messages = [
            Message(content=content, message_type=MessageType.QUERY, dst_node_id=node) for node in self._nodes(grid)
        ]
        self.absorb_release(space, list(grid.send_and_receive(messages, timeout=self.config.round_timeout)))
        self._checkpoint(self.start_round - 1)

    def run(self, grid: Grid) -> Path:
        """All remaining rounds, then publish; returns the published folder."""
        c = self.config
        log.info("run %s: %d rounds, output %s", self.run_name, c.num_server_rounds, self.run_dir)
        if c.feature_matching_weight > 0 and not c.matches_features:
            log.info(
                "feature matching: off (it embeds with the public-pretrained D's features; set public-data to use it)"
            )
        check_public_patients_are_not_private(c)
        if c.pretrains_on_public and self.public is None:
            self._pretrain_on_public()
        if c.matches_features and self.matcher is None:
            self._release_features(grid)
        for round_number in range(self.start_round, c.num_server_rounds + 1):
            started = time.perf_counter()
            nodes = self._nodes(grid)
            content = self.round_content(round_number)
            messages = [Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node) for node in nodes]
            replies = list(grid.send_and_receive(messages, timeout=c.round_timeout))
            row = {"round": round_number, **self.absorb_replies(round_number, replies, len(messages))}
            if round_number == self.start_round:
                self._warn_if_phantom_pretraining_meets_real_sites()
            if row["sites_ok"] < c.min_sites:
                log.warning(
                    "round %d: %d site(s) trained, fewer than min-sites=%d; stopping",
                    round_number,
                    row["sites_ok"],
                    c.min_sites,
                )
                self.metric_rows.append({**row, "time_s": time.perf_counter() - started})
                break
            row.update(
                self.g_trainer.train_against(
                    self.discriminator, seed=c.seed * 100_003 + round_number, matcher=self.matcher
                )
            )
            row["time_s"] = round(time.perf_counter() - started, 3)
            row.update({f"epsilon_{name}": stats.epsilon for name, stats in sorted(self.sites.items())})
            self.metric_rows.append(row)
            self._write_metrics()
            self._checkpoint(round_number)
            eps = ", ".join(f"{n} {s.epsilon:.2f}" for n, s in sorted(self.sites.items()))
            log.info(
                "round %d/%d: sites %d ok %d refused %d failed | D on fakes %.3f | G loss %.3f | epsilon approved %s | %.1fs",
                round_number,
                c.num_server_rounds,
                row["sites_ok"],
                row["sites_refused"],
                row["sites_failed"],
                row.get("fake-score", float("nan")),
                row["g_loss"],
                eps or "-",
                row["time_s"],
            )
        self._write_metrics()
        if not any(r.get("sites_ok", 0) >= c.min_sites for r in self.metric_rows):
            raise CxrError(
                f"run {self.run_name}: no round trained (every site refused or failed; see {self.run_dir / 'metrics.csv'}); "
                "nothing was published"
            )
        super_resolution, super_resolution_card = None, None
        if c.super_resolution > 1:
            super_resolution, super_resolution_card = train_public_super_resolution(c, device=self.device)
        published = publish_generator(
            self.run_dir,
            self.g_trainer.published(),
            self.model_card(super_resolution_card),
            discriminator=self.discriminator,
            sampling_keep=c.sampling_keep,
            members=self._train_members(),
            super_resolution=super_resolution,
        )
        log.info("published generator: %s", published)
        return published

    def _train_members(self) -> tuple[Generator, ...]:
        """The run's further generators (``generator-members`` > 1), trained now against the final D: no privacy cost."""
        if self.config.generator_members == 1:
            return ()
        start = load_checkpoint(self._pretraining_store()) if self.config.pretrains_on_public else None
        return train_members(
            self.config, start, self.discriminator, self.matcher, rounds=self._rounds_completed(), device=self.device
        )

    def _warn_if_phantom_pretraining_meets_real_sites(self) -> None:
        real = sorted(n for n, s in self.sites.items() if s.data_kind and s.data_kind != PHANTOM_DATA)
        if self.config.public_source == PUBLIC_PHANTOMS and real:
            log.warning(
                "G and D were pretrained on the embedded PHANTOM drawings but site(s) %s hold real images: "
                "set public-data to a public X-ray set of other patients (or '' for none)",
                ", ".join(real),
            )

    def _rounds_completed(self) -> int:
        return sum(1 for r in self.metric_rows if r.get("sites_ok", 0) >= self.config.min_sites)

    def _write_metrics(self) -> None:
        with atomic_path(self.run_dir / "metrics.csv") as tmp:
            pd.DataFrame(self.metric_rows).to_csv(tmp, index=False)

    # ------------------------------------------------------------------ card
    def model_card(self, super_resolution: dict | None = None) -> dict:
        """The run's model card (no paths, no identifiers)."""
        return run_model_card(
            self.config,
            run_name=self.run_name,
            classes=self.conditions.names,
            sites=list(self.sites.values()),
            rounds_completed=self._rounds_completed(),
            feature_release=self.feature_release,
            public=self.public,
            super_resolution=super_resolution,
        )
