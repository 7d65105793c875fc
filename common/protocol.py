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
    """Keys of a site's metrics record: only values the site's ledger covers or public constants of the run."""

    FAKE_SCORE = "fake-score"
    LOCAL_STEPS = "local-steps"
    EPSILON = "epsilon"
    DELTA = "delta"


class Status(StrEnum):
    """Keys of a reply's status record: the site's own settings, never a value computed from its images."""

    STATUS = "status"
    REASON = "reason"
    SITE = "site"
    DP = "dp"
    PRIVACY_UNIT = "privacy-unit"
    DATA_KIND = "data-kind"


#: Every value a site sends, and what protects it. The boundary test checks every reply against this table.
PROTECTION: dict[str, str] = {
    Record.DISCRIMINATOR: "DP-SGD (per-patient clipping, Gaussian noise), charged to the site's ledger before training",
    Record.FEATURE_SUMS: "Gaussian mechanism at sensitivity 1 per patient, charged to the site's ledger before computing",
    Metric.FAKE_SCORE: "post-processing: the DP discriminator's mean score on generated (public) images",
    Metric.LOCAL_STEPS: "public constant: the run config's local-steps",
    Metric.EPSILON: "public constant: the run's epsilon as approved by the site's policy (an upper bound)",
    Metric.DELTA: "public constant: the run's delta as approved by the site's policy",
    Status.STATUS: "public: ok or refused (a refusal depends only on the request, the policy and the ledger)",
    Status.REASON: "public: a generic reason; details stay in the site's log",
    Status.SITE: "public constant: the site's name from its own configuration",
    Status.DP: "public constant: the site's policy",
    Status.PRIVACY_UNIT: "public constant: the site's policy (patient, or image with allow-image-level)",
    Status.DATA_KIND: "public constant: real site data or the embedded phantom drawings",
}
OK, REFUSED = "ok", "refused"
_SUMS = "sums"


def _checked_metrics(metrics: Mapping[str, float]) -> MetricRecord:
    unknown = sorted(set(metrics) - set(Metric))
    if unknown:
        raise ValueError(f"metric key(s) {unknown} are not part of the protocol (common.protocol.Metric)")
    return MetricRecord({k: float(v) for k, v in metrics.items()})


def sent_keys(content: RecordDict) -> set[str]:
    """Every value key a reply's content carries: its array records and the keys of its status and metrics."""
    return {*content.keys(), *content[Record.STATUS].keys(), *content[Record.METRICS].keys()} - {
        Record.STATUS,
        Record.METRICS,
    }


#: What a site says its data is (``Status.DATA_KIND``): the model card reports it.
PHANTOM_DATA = "embedded PHANTOM chest drawings (not real radiographs)"
SITE_DATA = "site data (paths not recorded)"


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
    """Site -> server: status, the site's own settings, DP-covered metrics, and D's weights (a round) or the
    noisy table (the release). Every key is listed in ``PROTECTION``."""

    site: str
    status: str  # OK or REFUSED
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    discriminator: StateDict | None = None
    feature_sums: torch.Tensor | None = None
    dp: bool = True
    privacy_unit: str = "patient"
    data_kind: str = SITE_DATA

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_content(self) -> RecordDict:
        status = {
            Status.STATUS: self.status,
            Status.REASON: self.reason,
            Status.SITE: self.site,
            Status.DP: self.dp,
            Status.PRIVACY_UNIT: self.privacy_unit,
            Status.DATA_KIND: self.data_kind,
        }
        content = RecordDict({Record.STATUS: ConfigRecord(status), Record.METRICS: _checked_metrics(self.metrics)})
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
        return cls(
            str(status[Status.SITE]),
            str(status[Status.STATUS]),
            str(status[Status.REASON]),
            metrics,
            discriminator,
            sums,
            bool(status[Status.DP]),
            str(status[Status.PRIVACY_UNIT]),
            str(status[Status.DATA_KIND]),
        )
