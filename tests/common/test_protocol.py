"""The message protocol: requests and replies survive Flower's records unchanged, and a reply can carry only keys
whose protection is named in ``PROTECTION`` (anything else is refused before it is sent)."""

from __future__ import annotations

import pytest
import torch

from cxr_fedsynth.common.protocol import (
    OK,
    PROTECTION,
    REFUSED,
    Metric,
    Record,
    ReleaseRequest,
    RoundInfo,
    SiteReply,
    Status,
    TrainRequest,
    sent_keys,
)


def test_requests_round_trip_through_records() -> None:
    info = RoundInfo("run-1", 3, "/runs/run-1")
    g, d = {"w": torch.randn(2, 3)}, {"v": torch.arange(4.0)}
    back = TrainRequest.from_content(TrainRequest(g, d, info).to_content())
    assert (
        back.info == info and torch.equal(back.generator["w"], g["w"]) and torch.equal(back.discriminator["v"], d["v"])
    )
    release = ReleaseRequest.from_content(ReleaseRequest(d, RoundInfo("run-1", 0, "/x")).to_content())
    assert release.info.round == 0 and torch.equal(release.feature_space["v"], d["v"])


def test_replies_round_trip_and_carry_only_protected_keys() -> None:
    metrics = {Metric.FAKE_SCORE: -0.5, Metric.EPSILON: 10.0, Metric.DELTA: 1e-5, Metric.LOCAL_STEPS: 15.0}
    reply = SiteReply(
        "site-a", OK, "trained", metrics, discriminator={"v": torch.ones(2)}, feature_sums=torch.zeros(4, 3)
    )
    content = reply.to_content()
    back = SiteReply.from_content(content)
    assert back.ok and back.site == "site-a" and back.metrics == {str(k): v for k, v in metrics.items()}
    assert back.dp and back.privacy_unit == "patient"
    assert torch.equal(back.discriminator["v"], torch.ones(2)) and back.feature_sums.shape == (4, 3)
    sent = sent_keys(content)
    assert sent <= set(PROTECTION), f"keys without a named protection: {sent - set(PROTECTION)}"
    assert set(PROTECTION) == {Record.DISCRIMINATOR, Record.FEATURE_SUMS, *Metric, *Status}, (
        "one entry per key, no more"
    )
    refused = SiteReply.from_content(SiteReply("b", REFUSED, "budget").to_content())
    assert not refused.ok and refused.discriminator is None and refused.feature_sums is None


@pytest.mark.parametrize(
    "key", ["num-examples", "real-score", "d-loss", "aux-accuracy", "sample-rate", "noise-multiplier"]
)
def test_values_computed_on_real_images_or_revealing_counts_cannot_be_sent(key: str) -> None:
    with pytest.raises(ValueError, match="not part of the protocol"):
        SiteReply("a", OK, "x", {key: 1.0}).to_content()
