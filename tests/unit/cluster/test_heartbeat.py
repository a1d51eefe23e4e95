"""Heartbeat receivers and detection times, on virtual time: the testing preset's removal
bound holds by arithmetic."""

from __future__ import annotations

import pytest

from shoal.cluster import ClusterSettings
from shoal.cluster._heartbeat import HeartbeatState
from shoal.cluster._phi import PhiAccrualFailureDetector, phi, suspicion_y

from ._support import node

SETTINGS = ClusterSettings.testing()


def _detected_after(settings: ClusterSettings, last_reply: float) -> float:
    """Ticks every heartbeat interval; replies on every tick up to ``last_reply``."""
    hb = HeartbeatState(node(1), settings)
    hb.update([node(2)], (), 0.0)
    step = settings.heartbeat_interval
    tick = 0
    while True:
        tick += 1
        now = round(tick * step, 9)
        if now <= last_reply:
            hb.reply(node(2), now)
        _, unavailable = hb.check(now)
        if unavailable:
            return now


def test_testing_preset_detects_a_crash_within_its_removal_bound() -> None:
    # Replies every 0.05 s until 1.0 s; phi crosses 8 at ~0.602 s after the
    # last one, seen at the tick at 1.65 s.
    detected = _detected_after(SETTINGS, 1.0)
    assert detected == pytest.approx(1.65)
    # The resolver decides exactly sbr_stable_after later; that leaves
    # 0.05 s of the bound for the leader's removal round trips.
    assert (detected - 1.0) + SETTINGS.sbr_stable_after <= SETTINGS.removal_bound - 0.05


def test_production_defaults_detect_in_about_four_and_a_half_seconds() -> None:
    detected = _detected_after(ClusterSettings(), 10.0)
    assert 14.0 <= detected <= 15.0


def test_a_receiver_that_never_answers_is_still_detected() -> None:
    hb = HeartbeatState(node(1), SETTINGS)
    hb.update([node(2)], (), 0.0)
    assert hb.check(0.55) == (frozenset({node(2)}), frozenset())
    assert hb.check(0.65) == (frozenset(), frozenset({node(2)}))


def test_receivers_follow_the_ring_and_keep_unreachable_ones() -> None:
    settings = ClusterSettings.testing(monitored_neighbours=2)
    hb = HeartbeatState(node(1), settings)
    hb.update([node(p) for p in range(2, 7)], (), 0.0)
    assert hb.receivers == {node(2), node(3)}
    hb.update([node(p) for p in range(2, 7)], {node(2)}, 1.0)
    assert hb.receivers == {node(2), node(3), node(4)}
    assert hb.phi(node(4), 1.0) < 1.0  # a new receiver starts as if it just answered
    assert hb.phi(node(6), 1.0) == 0.0  # not a receiver


@pytest.mark.parametrize("threshold", [0.5, 1.0, 3.0, 8.0, 12.0, 16.0, 40.0])
def test_suspicion_y_inverts_phi(threshold: float) -> None:
    y = suspicion_y(threshold)
    assert phi(y, 0.0, 1.0) == pytest.approx(threshold, rel=1e-9)


def test_suspected_at_is_when_phi_reaches_the_threshold() -> None:
    detector = PhiAccrualFailureDetector.from_settings(SETTINGS)
    assert detector.suspected_at() is None
    for tick in range(21):
        detector.heartbeat(tick * 0.05)
    at = detector.suspected_at()
    assert at == pytest.approx(1.0 + 0.05 + 0.5 + 5.226 * 0.01, abs=1e-3)
    assert at is not None
    assert detector.is_available(at - 1e-6)
    assert not detector.is_available(at + 1e-6)


def test_the_testing_preset_detects_a_crash_well_within_its_removal_bound() -> None:
    hb = HeartbeatState(node(1), SETTINGS)
    hb.update([node(2), node(3)], (), 0.0)
    for tick in range(1, 21):
        hb.reply(node(2), tick * 0.05)
        hb.reply(node(3), tick * 0.05 + 0.01)
    at = hb.next_suspicion(1.0)
    assert at == pytest.approx(1.0 + 0.602, abs=1e-3)  # node 2 first
    assert hb.next_suspicion(at + 1.0) is None  # both suspected by then
    # Checked exactly then, a crash right after the last reply is removed
    # sbr_stable_after later: 0.1 s inside the bound.
    assert 0.602 + SETTINGS.sbr_stable_after <= SETTINGS.removal_bound - 0.09


def test_production_defaults_remove_a_crash_within_the_bound() -> None:
    settings = ClusterSettings()
    detection = settings.heartbeat_interval + settings.acceptable_heartbeat_pause
    detection += suspicion_y(settings.phi_threshold) * settings.min_std_deviation
    assert detection == pytest.approx(4.52, abs=0.01)
    assert detection + settings.sbr_stable_after <= settings.removal_bound - 0.4
