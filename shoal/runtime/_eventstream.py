"""The event stream: runtime events (dead letters...) to subscribed actors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._ref import ActorRef


class EventStream:
    """Publish/subscribe of runtime events within one system, by event class.

    ``subscribe(ref, DeadLetter)`` makes ``ref`` receive every
    :class:`DeadLetter` (and subclass instances) told to it. Delivery is by
    ``tell``; a subscriber that stops is unsubscribed when next published to.
    """

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: dict[type, set[ActorRef]] = {}

    def subscribe(self, ref: ActorRef, event_type: type) -> None:
        """Deliver events of ``event_type`` to ``ref``."""
        self._subscribers.setdefault(event_type, set()).add(ref)

    def unsubscribe(self, ref: ActorRef, event_type: type | None = None) -> None:
        """Stop delivering ``event_type`` (default: every type) to ``ref``."""
        for kind, refs in list(self._subscribers.items()):
            if event_type is None or kind is event_type:
                refs.discard(ref)
                if not refs:
                    del self._subscribers[kind]

    def has_subscribers(self, event_type: type) -> bool:
        return any(issubclass(event_type, kind) for kind in self._subscribers)

    def publish(self, event: object) -> None:
        """Tell ``event`` to every subscriber of its class or a base class."""
        for kind, refs in list(self._subscribers.items()):
            if isinstance(event, kind):
                for ref in list(refs):
                    if getattr(ref, "is_alive", True):
                        ref.tell(event)
                    else:
                        refs.discard(ref)
