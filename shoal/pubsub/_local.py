"""This node's subscribers: topic -> group -> refs, registered paths, and the reverse maps."""

from __future__ import annotations

from shoal.runtime import ActorRef

UNGROUPED = ""
"""The group of subscribers that named none."""


class LocalSubscribers:
    """The local half of the registry: which actors of this node receive what.

    Refs keep their subscription order inside a group (a dict used as an
    ordered set). Plain data; the mediator owns it and runs it on the loop.
    """

    __slots__ = ("by_ref", "paths", "topics")

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, dict[ActorRef, None]]] = {}
        self.by_ref: dict[ActorRef, set[tuple[str, str] | str]] = {}
        """What each ref is in: ``(topic, group)`` pairs and registered paths."""
        self.paths: dict[str, ActorRef] = {}

    def add(self, topic: str, group: str, ref: ActorRef) -> bool:
        """Subscribe ``ref``; whether it was not subscribed yet."""
        groups = self.topics.setdefault(topic, {})
        refs = groups.setdefault(group, {})
        if ref in refs:
            return False
        refs[ref] = None
        self.by_ref.setdefault(ref, set()).add((topic, group))
        return True

    def remove(self, topic: str, group: str, ref: ActorRef) -> bool:
        """Unsubscribe ``ref``; whether it was subscribed."""
        groups = self.topics.get(topic)
        refs = groups.get(group) if groups is not None else None
        if groups is None or refs is None or ref not in refs:
            return False
        del refs[ref]
        if not refs:
            del groups[group]
            if not groups:
                del self.topics[topic]
        self._forget(ref, (topic, group))
        return True

    def put_path(self, path: str, ref: ActorRef) -> ActorRef | None:
        """Register ``ref`` under ``path``; returns the ref it replaces, if any."""
        old = self.paths.get(path)
        if old is not None and old != ref:
            self._forget(old, path)
        self.paths[path] = ref
        self.by_ref.setdefault(ref, set()).add(path)
        return old if old != ref else None

    def remove_path(self, path: str) -> ActorRef | None:
        ref = self.paths.pop(path, None)
        if ref is not None:
            self._forget(ref, path)
        return ref

    def _forget(self, ref: ActorRef, item: tuple[str, str] | str) -> None:
        items = self.by_ref.get(ref)
        if items is not None:
            items.discard(item)
            if not items:
                del self.by_ref[ref]

    def counts(self, topic: str) -> dict[str, int]:
        """Subscribers of ``topic`` per group (empty: none)."""
        groups = self.topics.get(topic)
        return {g: len(refs) for g, refs in groups.items()} if groups is not None else {}

    def subscriber_count(self) -> int:
        return sum(len(refs) for groups in self.topics.values() for refs in groups.values())
