"""The phi-accrual detector's arithmetic on exact times, and the heartbeat ring."""

from __future__ import annotations

import math

import pytest

from shoal.cluster._phi import HeartbeatHistory, PhiAccrualFailureDetector, phi
from shoal.cluster._ring import HeartbeatRing

from ._support import SETTINGS, node


def normal_phi(y: float) -> float:
    """-log10(1 - Phi(y)) with the exact normal CDF, for comparison."""
    return -math.log10(0.5 * math.erfc(y / math.sqrt(2)))


def test_phi_at_the_mean_is_log10_of_2() -> None:
    assert phi(10.0, 10.0, 1.0) == pytest.approx(math.log10(2), abs=1e-12)


@pytest.mark.parametrize("y", [-3.0, -1.0, -0.5, 0.0, 0.6, 1.5, 2.0, 3.5, 4.0])
def test_phi_tracks_the_normal_distribution(y: float) -> None:
    # Akka's logistic approximation: the CDF itself is within 0.001 of the
    # normal one, so 1 - F stays within a few percent of the exact tail here.
    approximate_cdf = 1 - 10 ** -phi(y, 0.0, 1.0)
    exact_cdf = 0.5 * math.erfc(-y / math.sqrt(2))
    assert approximate_cdf == pytest.approx(exact_cdf, abs=0.001)
    assert phi(y, 0.0, 1.0) == pytest.approx(normal_phi(y), rel=0.12)


def test_phi_grows_without_overflow() -> None:
    values = [phi(t, 0.0, 1.0) for t in (-1e6, -50.0, 0.0, 5.0, 50.0, 1e6)]
    assert values == sorted(values)
    assert values[0] == 0.0
    assert math.isfinite(values[-1])


def test_history_keeps_a_window_with_running_statistics() -> None:
    history = HeartbeatHistory(3)
    for interval in (1.0, 2.0, 3.0, 4.0):
        history.add(interval)
    assert len(history) == 3
    assert history.mean == pytest.approx(3.0)
    assert history.std_deviation == pytest.approx(math.sqrt(2 / 3))


def detector() -> PhiAccrualFailureDetector:
    return PhiAccrualFailureDetector(
        threshold=8.0,
        min_std_deviation=0.1,
        acceptable_heartbeat_pause=3.0,
        first_heartbeat_estimate=1.0,
    )


def test_available_before_any_heartbeat() -> None:
    fd = detector()
    assert not fd.is_monitoring
    assert fd.phi(1e9) == 0.0
    assert fd.is_available(1e9)


def test_first_heartbeat_seeds_the_estimate() -> None:
    fd = detector()
    fd.heartbeat(100.0)
    assert fd.history.mean == pytest.approx(1.0)
    assert fd.history.std_deviation == pytest.approx(0.25)
    # mean 1 s + pause 3 s, deviation 0.25 s
    assert fd.phi(104.0) == pytest.approx(math.log10(2))
    assert fd.phi(105.0) == pytest.approx(phi(5.0, 4.0, 0.25))


def test_regular_heartbeats_then_silence_on_exact_times() -> None:
    fd = detector()
    t = 0.0
    for _ in range(200):
        fd.heartbeat(t)
        t += 1.0
    last = t - 1.0
    assert fd.history.mean == pytest.approx(1.0, abs=0.01)
    # steady intervals: deviation floored at 0.1 s, mean + pause = 4 s
    assert fd.is_available(last + 4.0)
    assert fd.phi(last + 4.0) == pytest.approx(math.log10(2), abs=0.05)
    assert fd.is_available(last + 4.5)
    assert not fd.is_available(last + 4.6)
    crossing = next(x / 100 for x in range(400, 600) if fd.phi(last + x / 100) >= 8.0)
    assert crossing == 4.53


def test_the_interval_after_a_failure_is_not_recorded() -> None:
    fd = detector()
    fd.heartbeat(0.0)
    fd.heartbeat(1.0)
    fd.heartbeat(100.0)  # came back after being unavailable
    assert len(fd.history) == 3  # two seeds + one interval
    assert fd.history.mean == pytest.approx(1.0)


def test_from_settings() -> None:
    fd = PhiAccrualFailureDetector.from_settings(SETTINGS)
    assert fd.threshold == SETTINGS.phi_threshold
    assert fd.acceptable_heartbeat_pause == SETTINGS.acceptable_heartbeat_pause


def test_invalid_detector_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        PhiAccrualFailureDetector(threshold=0)
    with pytest.raises(ValueError, match="max_sample_size"):
        PhiAccrualFailureDetector(max_sample_size=1)


# -- the ring ------------------------------------------------------------------

NODES = [node(p) for p in range(1, 11)]


def test_each_node_monitors_the_next_n_on_the_ring() -> None:
    ring = HeartbeatRing.of(reversed(NODES), n=3)
    assert ring.receivers(node(1)) == {node(2), node(3), node(4)}
    assert ring.receivers(node(9)) == {node(10), node(1), node(2)}  # wraps around
    assert ring.monitored_by(node(1)) == {node(8), node(9), node(10)}
    for n in NODES:
        assert len(ring.receivers(n)) == 3
        assert len(ring.monitored_by(n)) == 3


def test_small_clusters_monitor_everyone_else() -> None:
    ring = HeartbeatRing.of(NODES[:4], n=5)
    assert ring.receivers(node(2)) == {node(1), node(3), node(4)}


def test_a_joining_node_changes_only_its_predecessors_receivers() -> None:
    before = HeartbeatRing.of([node(p) for p in range(1, 21, 2)], n=3)
    after = HeartbeatRing.of([*before.nodes, node(10)], n=3)
    changed = {n for n in before.nodes if before.receivers(n) != after.receivers(n)}
    assert changed == {node(5), node(7), node(9)}


def test_unreachable_neighbours_are_kept_without_counting() -> None:
    ring = HeartbeatRing.of(NODES, n=3, unreachable={node(2), node(3)})
    assert ring.receivers(node(1)) == {node(2), node(3), node(4), node(5), node(6)}
    many_down = HeartbeatRing.of(NODES, n=2, unreachable={node(2), node(3), node(4)})
    # at most n unreachable ones are kept
    assert many_down.receivers(node(1)) == {node(2), node(3), node(5), node(6)}


def test_a_node_outside_the_ring_monitors_its_would_be_successors() -> None:
    ring = HeartbeatRing.of(NODES, n=2)
    assert ring.receivers(node(5, host="10.0.0.0")) == {node(1), node(2)}
    with pytest.raises(ValueError, match="at least one"):
        HeartbeatRing.of(NODES, n=0)
