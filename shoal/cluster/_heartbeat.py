"""The heartbeat sender's bookkeeping: whom to probe, and one phi detector per receiver.

Pure apart from the detectors' state; times are passed in. The cluster
sends a heartbeat to each receiver every ``heartbeat_interval``, feeds
replies to :meth:`HeartbeatState.reply`, and asks :meth:`HeartbeatState.check`
which receivers crossed the phi threshold (or came back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shoal.runtime import UniqueAddress

from ._phi import PhiAccrualFailureDetector
from ._ring import HeartbeatRing
from ._settings import ClusterSettings


class HeartbeatState:
    """One node's receivers (ring neighbours) and its failure detector for each.

    A node becomes monitored when it becomes a receiver: its detector gets
    a first heartbeat at that time, as if it had just answered, so a node
    that never answers at all is still found unreachable
    (``acceptable_heartbeat_pause`` later, plus the detector's margin).
    Not thread-safe; owned by the cluster of one node.
    """

    __slots__ = ("_detectors", "_key", "_ring", "_self", "_settings")

    def __init__(self, self_node: UniqueAddress, settings: ClusterSettings) -> None:
        self._self = self_node
        self._settings = settings
        self._ring = HeartbeatRing.of((), settings.monitored_neighbours)
        self._key: tuple[frozenset[UniqueAddress], frozenset[UniqueAddress]] | None = None
        self._detectors: dict[UniqueAddress, PhiAccrualFailureDetector] = {}

    @property
    def receivers(self) -> frozenset[UniqueAddress]:
        """The nodes heartbeats go to."""
        return frozenset(self._detectors)

    def update(
        self, nodes: Iterable[UniqueAddress], unreachable: Collection[UniqueAddress], now: float
    ) -> None:
        """Recompute the receivers over the ring of ``nodes`` (with this node)."""
        key = (frozenset(nodes), frozenset(unreachable))
        if key == self._key:
            return
        self._key = key
        ring = HeartbeatRing.of([*key[0], self._self], self._settings.monitored_neighbours, key[1])
        if ring == self._ring:
            return
        self._ring = ring
        receivers = ring.receivers(self._self)
        for node in list(self._detectors):
            if node not in receivers:
                del self._detectors[node]
        for node in receivers:
            if node not in self._detectors:
                detector = PhiAccrualFailureDetector.from_settings(self._settings)
                detector.heartbeat(now)
                self._detectors[node] = detector

    def reply(self, node: UniqueAddress, now: float) -> None:
        """A heartbeat reply from ``node`` arrived at ``now`` (ignored from non-receivers)."""
        detector = self._detectors.get(node)
        if detector is not None:
            detector.heartbeat(now)

    def phi(self, node: UniqueAddress, now: float) -> float:
        """The suspicion level of ``node`` (0 for a node that is not a receiver)."""
        detector = self._detectors.get(node)
        return 0.0 if detector is None else detector.phi(now)

    def next_suspicion(self, now: float) -> float | None:
        """The earliest time after ``now`` a receiver still available becomes suspected."""
        times = [
            at
            for detector in self._detectors.values()
            if (at := detector.suspected_at()) is not None and at > now
        ]
        return min(times, default=None)

    def check(self, now: float) -> tuple[frozenset[UniqueAddress], frozenset[UniqueAddress]]:
        """``(available, unavailable)`` receivers at ``now``."""
        up: set[UniqueAddress] = set()
        down: set[UniqueAddress] = set()
        for node, detector in self._detectors.items():
            (up if detector.is_available(now) else down).add(node)
        return frozenset(up), frozenset(down)
