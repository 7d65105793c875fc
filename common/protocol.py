"""Every message between the server and a site: record names, keys and types, in both directions.

Server -> site: a round (``TrainRequest``: G and D weights and the round's ids) or the one-off feature
release (``ReleaseRequest``: the feature space and the run's ids). Site -> server: a ``SiteReply`` with the
site's status, its aggregate metrics (only the keys listed in ``Metric``) and, when it trained or released,
D's weights or the noisy feature table. Both sides build and read messages only through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

StateDict = dict[str, torch.Tensor]


class Record(StrEnum):
    """Names of the records in a message's content."""

    GENERATOR = "generator"
    DISCRIMINATOR = "discriminator"
    ROUND = "round"
    FEATURE_SPACE = "feature-space"
    STATUS = "status"
    METRICS = "metrics"
    FEATURE_SUMS = "feature-sums"


class Metric(StrEnum):
    """Keys of a site's metrics record (aggregates only; per-class image counts are ``class_images_key(i)``)."""

    NUM_EXAMPLES = "num-examples"
    NUM_IMAGES = "num-images"
    D_LOSS = "d-loss"
    REAL_SCORE = "real-score"
    FAKE_SCORE = "fake-score"
    AUX_ACCURACY = "aux-accuracy"
    LOCAL_STEPS = "local-steps"
    EPSILON = "epsilon"
    EPSILON_TOTAL = "epsilon-total"
    DELTA = "delta"
    NOISE_MULTIPLIER = "noise-multiplier"
    SAMPLE_RATE = "sample-rate"


#: The D-step losses and scores the server averages over sites for its log.
LOSS_METRICS = (Metric.D_LOSS, Metric.REAL_SCORE, Metric.FAKE_SCORE, Metric.AUX_ACCURACY)
OK, REFUSED = "ok", "refused"
_SUMS = "sums"


def class_images_key(index: int) -> str:
    """Metric key of the number of images of class ``index`` at a site."""
    return f"class-{index}-images"


def _checked_metrics(metrics: Mapping[str, float]) -> MetricRecord:
    known = set(Metric)
    unknown = [k for k in metrics if k not in known and not (k.startswith("class-") and k.endswith("-images"))]
    if unknown:
        raise ValueError(f"metric key(s) {unknown} are not part of the protocol (common.protocol.Metric)")
    return MetricRecord({k: float(v) for k, v in metrics.items()})


@dataclass(frozen=True)
class RoundInfo:
    """The ids every request carries: the run, the round (0 for the feature release), the server's run folder."""

    run_id: str
    round: int
    run_dir: str

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({"run-id": self.run_id, "round": self.round, "run-dir": self.run_dir})

    @classmethod
    def from_record(cls, record: ConfigRecord) -> RoundInfo:
        return cls(str(record["run-id"]), int(record["round"]), str(record["run-dir"]))


@dataclass(frozen=True)
class TrainRequest:
    """Server -> site, every round: the global G and D, and the round's ids."""

    generator: StateDict
    discriminator: StateDict
    info: RoundInfo

    def to_content(self) -> RecordDict:
        return RecordDict(
            {
                Record.GENERATOR: ArrayRecord(self.generator),
                Record.DISCRIMINATOR: ArrayRecord(self.discriminator),
                Record.ROUND: self.info.to_record(),
            }
        )

    @classmethod
    def from_content(cls, content: RecordDict) -> TrainRequest:
        return cls(
            content[Record.GENERATOR].to_torch_state_dict(),
            content[Record.DISCRIMINATOR].to_torch_state_dict(),
            RoundInfo.from_record(content[Record.ROUND]),
        )


@dataclass(frozen=True)
class ReleaseRequest:
    """Server -> site, once per run: the feature space the site embeds its images in, and the run's ids."""

    feature_space: StateDict
    info: RoundInfo

    def to_content(self) -> RecordDict:
        return RecordDict({Record.FEATURE_SPACE: ArrayRecord(self.feature_space), Record.ROUND: self.info.to_record()})

    @classmethod
    def from_content(cls, content: RecordDict) -> ReleaseRequest:
        return cls(content[Record.FEATURE_SPACE].to_torch_state_dict(), RoundInfo.from_record(content[Record.ROUND]))


@dataclass(frozen=True)
class SiteReply:
    """Site -> server: status, aggregate metrics, and D's weights (a round) or the noisy table (the release)."""

    site: str
    status: str  # OK or REFUSED
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    discriminator: StateDict | None = None
    feature_sums: torch.Tensor | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_content(self) -> RecordDict:
        content = RecordDict(
            {
                Record.STATUS: ConfigRecord({"status": self.status, "reason": self.reason, "site": self.site}),
                Record.METRICS: _checked_metrics(self.metrics),
            }
        )
        if self.discriminator is not None:
            content[Record.DISCRIMINATOR] = ArrayRecord(self.discriminator)
        if self.feature_sums is not None:
            content[Record.FEATURE_SUMS] = ArrayRecord({_SUMS: self.feature_sums})
        return content

    @classmethod
    def from_content(cls, content: RecordDict) -> SiteReply:
        status = content[Record.STATUS]
        discriminator = content[Record.DISCRIMINATOR].to_torch_state_dict() if Record.DISCRIMINATOR in content else None
        sums = content[Record.FEATURE_SUMS].to_torch_state_dict()[_SUMS] if Record.FEATURE_SUMS in content else None
        metrics = {str(k): float(v) for k, v in content[Record.METRICS].items()}
        return cls(str(status["site"]), str(status["status"]), str(status["reason"]), metrics, discriminator, sums)
