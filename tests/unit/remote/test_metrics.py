"""Counters, their Prometheus collector, and rate-limited logging on a manual clock."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shoal.remote import RemoteMetrics
from shoal.remote._metrics import RemoteCollector
from shoal.runtime import RateLimitedLog
from shoal.runtime.testing import ManualClock


def test_snapshot_is_plain_data() -> None:
    metrics = RemoteMetrics()
    metrics.frames_sent += 2
    metrics.count_bad("malformed_frame")
    metrics.count_bad("malformed_frame")
    metrics.count_dead("outbox-full", 3)
    snapshot = metrics.snapshot()
    assert snapshot["frames_sent"] == 2
    assert snapshot["bad_input"] == {"malformed_frame": 2}
    assert snapshot["dead_letters"] == {"outbox-full": 3}


def test_the_collector_exposes_counters_by_kind_and_gauges() -> None:
    metrics = RemoteMetrics()
    metrics.envelopes_sent = 1000
    metrics.count_bad("wrong_secret")
    metrics.count_dead("remote-unreachable", 4)
    registry = CollectorRegistry()
    registry.register(
        RemoteCollector("app@h:1", metrics, lambda: {"shoal_remote_peers_connected": ("doc", 2)})
    )
    text = generate_latest(registry).decode()
    assert 'shoal_remote_envelopes_sent_total{address="app@h:1"} 1000.0' in text
    assert 'shoal_remote_bad_input_total{address="app@h:1",kind="wrong_secret"} 1.0' in text
    assert (
        'shoal_remote_dead_letters_total{address="app@h:1",reason="remote-unreachable"} 4.0' in text
    )
    assert 'shoal_remote_peers_connected{address="app@h:1"} 2.0' in text


def test_bad_input_logging_is_limited_per_kind_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    logger = logging.getLogger("test.remote.ratelimit")
    log = RateLimitedLog(logger, clock, limit=2, interval=10.0)
    with caplog.at_level(logging.WARNING, logger="test.remote.ratelimit"):
        for n in range(5):
            log.report("garbage", "garbage %d", n)
        log.report("secret", "secret")
        clock.advance(10.0)
        log.report("garbage", "garbage again")
    assert [r.getMessage() for r in caplog.records] == [
        "garbage 0",
        "garbage 1",
        "secret",
        "3 more garbage events in the last 10 s (not logged one by one)",
        "garbage again",
    ]
