"""Registry gossip: what a node sends its peers about its bucket, and what it does with
theirs.

Three rules keep every peer's copy of this node's bucket current:

* **Eager push.** The changes of one loop turn go to every member at the end
  of that turn, as deltas above the version last sent to each (in chunks of
  ``max_delta_entries``).
* **Status rounds.** Every gossip interval, one random member gets this
  node's ``Status`` (its own version, and the version it holds of the
  member's bucket). The member answers with deltas when this node is behind
  on its bucket, and with its own status when it is behind on this node's:
  a lost delta is repaired within a few rounds.
* **Gaps pull.** A delta that starts above the version a node holds is not
  applied; the node answers with its status, and the owner sends from there.

A new member gets this node's bucket and status at once; a member that is
gone has its bucket dropped (:meth:`Registry.prune`). Frames reach this
module only from members, in their own name (checked by the caller).

Every method runs on the system's event loop and never blocks.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Set
from typing import Final

from shoal.runtime import Clock, UniqueAddress

from ._codec import Status
from ._metrics import PubSubMetrics
from ._registry import Delta, Entry, Merge, Registry
from ._settings import PubSubSettings

_log: Final = logging.getLogger("shoal.pubsub")


class RegistryGossip:
    """The gossip of one node's registry (see the module docstring).

    ``send(peer, body)`` writes a frame to ``peer``'s mediator on the control
    lane; ``merged()`` is called after a peer's bucket changed here;
    ``refuse(kind, detail)`` counts and logs a refused frame.
    """

    def __init__(
        self,
        registry: Registry,
        settings: PubSubSettings,
        metrics: PubSubMetrics,
        clock: Clock,
        rng: random.Random,
        send: Callable[[UniqueAddress, Status | Delta], None],
        merged: Callable[[], None],
        refuse: Callable[[str, str], None],
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._send = send
        self._merged = merged
        self._refuse = refuse
        self._sent: dict[UniqueAddress, int] = {}
        """Every other member, with the version of this bucket last sent to it."""
        self._removals: deque[tuple[float, int]] = deque()

    def is_member(self, node: UniqueAddress) -> bool:
        return node in self._sent

    # -- this node's changes ------------------------------------------------------------

    def changed(self, entry: Entry) -> None:
        """This node's bucket took ``entry`` (the caller flushes at the end of the turn)."""
        if entry.removed:
            self._removals.append((self._clock.now(), entry.version))

    def flush(self) -> None:
        """Push what each member has not been sent yet."""
        for peer in list(self._sent):
            self._send_deltas(peer, self._sent[peer])

    def _send_deltas(self, peer: UniqueAddress, since: int) -> None:
        own = self._registry.own
        limit = self._settings.max_delta_entries
        delta = own.delta_since(since, limit)
        while delta is not None:
            self._send(peer, delta)
            self._metrics.deltas_sent += 1
            self._sent[peer] = delta.to_version
            if delta.to_version >= own.version:
                break
            delta = own.delta_since(delta.to_version, limit)

    def _send_status(self, peer: UniqueAddress) -> None:
        self._send(peer, Status(self._registry.own.version, self._registry.known_version(peer)))
        self._metrics.statuses_sent += 1

    # -- timers and membership ----------------------------------------------------------

    def tick(self) -> None:
        """One status round, after forgetting tombstones older than ``tombstone_ttl``."""
        oldest = self._clock.now() - self._settings.tombstone_ttl
        through = 0
        while self._removals and self._removals[0][0] <= oldest:
            through = self._removals.popleft()[1]
        if through:
            self._registry.own.prune_tombstones(through)
        if self._sent:
            self._send_status(self._rng.choice(list(self._sent)))

    def members(self, members: Set[UniqueAddress]) -> None:
        """The cluster's members (this node excluded) are now ``members``."""
        for gone in [p for p in self._sent if p not in members]:
            del self._sent[gone]
        if self._registry.prune(members):
            self._merged()
        for peer in sorted(members - self._sent.keys()):
            # What it lacks of this bucket, and a status so that it sends
            # what this node lacks of its own.
            self._sent[peer] = 0
            self._send_deltas(peer, 0)
            self._send_status(peer)

    # -- peers' frames ------------------------------------------------------------------

    def on_status(self, frm: UniqueAddress, status: Status) -> None:
        if status.your_version != self._registry.own.version:
            self._send_deltas(frm, status.your_version)
        if status.own_version != self._registry.known_version(frm):
            self._send_status(frm)

    def on_delta(self, frm: UniqueAddress, delta: Delta) -> None:
        self._metrics.deltas_received += 1
        known = self._registry.peers.get(frm.address)
        held = len(known.entries) if known is not None and known.owner == frm else 0
        if held + len(delta.entries) > self._settings.max_keys and not delta.full:
            self._refuse("too-many-keys", f"{frm}'s bucket would exceed max_keys")
            return
        result = self._registry.merge(delta)
        if result is Merge.GAP:
            self._send_status(frm)
        elif result is not Merge.STALE:
            if result is Merge.NEW_INCARNATION:
                _log.info("pub/sub: %s is a new incarnation; its old bucket is gone", frm)
            self._merged()
