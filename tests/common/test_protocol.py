"""The message protocol: requests and replies survive Flower's records unchanged; unknown reply keys are refused."""

from __future__ import annotations

import pytest
import torch

from cxr_fedsynth.common.protocol import (
    OK,
    REFUSED,
    Metric,
    ReleaseRequest,
    RoundInfo,
    SiteReply,
    TrainRequest,
    class_images_key,
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


def test_replies_round_trip_and_carry_only_protocol_metrics() -> None:
    metrics = {Metric.NUM_EXAMPLES: 12.0, Metric.EPSILON: 1.5, class_images_key(2): 4.0}
    reply = SiteReply(
        "site-a", OK, "trained", metrics, discriminator={"v": torch.ones(2)}, feature_sums=torch.zeros(4, 3)
    )
    back = SiteReply.from_content(reply.to_content())
    assert (
        back.ok
        and back.site == "site-a"
        and back.metrics == {"num-examples": 12.0, "epsilon": 1.5, "class-2-images": 4.0}
    )
    assert torch.equal(back.discriminator["v"], torch.ones(2)) and back.feature_sums.shape == (4, 3)
    refused = SiteReply.from_content(SiteReply("b", REFUSED, "budget").to_content())
    assert not refused.ok and refused.discriminator is None and refused.feature_sums is None
    with pytest.raises(ValueError, match="not part of the protocol"):
        SiteReply("a", OK, "x", {"image-path-0": 1.0}).to_content()
