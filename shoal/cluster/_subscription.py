"""Subscribers to a node's cluster events: a snapshot first, then every event in order."""

from __future__ import annotations

import logging
from collections.abc import Callable

from shoal.runtime import ActorRef

from ._events import ClusterEvent, CurrentClusterState

ClusterNotice = CurrentClusterState | ClusterEvent
"""What a subscriber receives: one :class:`CurrentClusterState`, then events."""

Subscriber = ActorRef | Callable[[ClusterNotice], object]
"""An actor ref (told each notice) or a callback (called with each notice)."""


class Subscription:
    """One subscriber's registration; :meth:`cancel` ends it (idempotent)."""

    __slots__ = ("_owner", "subscriber")

    def __init__(self, owner: Subscriptions, subscriber: Subscriber) -> None:
        self._owner = owner
        self.subscriber = subscriber

    def cancel(self) -> None:
        """Deliver nothing more to this subscriber."""
        self._owner.remove(self)


class Subscriptions:
    """The subscribers of one node, in subscription order. Loop-only."""

    __slots__ = ("_subs",)

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def add(
        self, subscriber: Subscriber, state: CurrentClusterState, log: logging.Logger
    ) -> Subscription:
        sub = Subscription(self, subscriber)
        self._subs.append(sub)
        _deliver(sub, state, log)
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, notice: ClusterNotice, log: logging.Logger) -> None:
        for sub in list(self._subs):
            _deliver(sub, notice, log)


def _deliver(sub: Subscription, notice: ClusterNotice, log: logging.Logger) -> None:
    target = sub.subscriber
    if isinstance(target, ActorRef):
        target.tell(notice)
        return
    try:
        target(notice)
    except Exception:
        log.exception("a cluster event subscriber failed on %s", type(notice).__name__)
