"""Remote death watch with one peer, in both directions (bookkeeping only).

``watching``: actors of the peer that actors of this node watch. A watch is
sent to the peer once per (watchee, watcher) pair; the peer answers with a
terminated notification when the watchee stops (or at once if it never
existed). ``watched_by``: actors of this node that the peer's actors watch;
the runtime calls the remote watcher's ``_terminated``, which sends the
notification. When the peer's incarnation is gone, :meth:`RemoteWatches.settle`
ends every watch both ways.

Concurrency contract: called on the event loop only; ``send`` queues an
envelope and never blocks or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._wire import K_TERMINATED, K_TERMINATED_UNCONFIRMED, K_UNWATCH, K_WATCH

if TYPE_CHECKING:
    from shoal.runtime import ActorRef

    from ._ref import RemoteActorRef


class RemoteWatches:
    """The watches between this node and one peer."""

    __slots__ = ("_gone", "_path_of", "_send", "watched_by", "watching")

    def __init__(
        self,
        send: Callable[[int, str, str], None],
        path_of: Callable[[ActorRef], str],
        gone: Callable[[], bool],
    ) -> None:
        self._send = send  # (kind, target path, sender path)
        self._path_of = path_of
        self._gone = gone  # whether the peer's known incarnation is quarantined
        self.watching: dict[RemoteActorRef, set[ActorRef]] = {}
        self.watched_by: dict[ActorRef, set[RemoteActorRef]] = {}

    def watch(self, watchee: RemoteActorRef, watcher: ActorRef) -> None:
        """``watcher`` (of this node) watches ``watchee`` (of the peer)."""
        if self._gone():
            watcher.notify_terminated(watchee, existence_confirmed=False)
            return
        watchers = self.watching.get(watchee)
        if watchers is None:
            watchers = self.watching[watchee] = set()
        if watcher not in watchers:
            watchers.add(watcher)
            self._send(K_WATCH, watchee.path_str, self._path_of(watcher))

    def unwatch(self, watchee: RemoteActorRef, watcher: ActorRef) -> None:
        watchers = self.watching.get(watchee)
        if watchers is not None and watcher in watchers:
            watchers.discard(watcher)
            if not watchers:
                del self.watching[watchee]
            self._send(K_UNWATCH, watchee.path_str, self._path_of(watcher))

    def notify_terminated(self, watcher: RemoteActorRef, ref: ActorRef, confirmed: bool) -> None:
        """Tell the peer's ``watcher`` that ``ref`` (of this node) terminated."""
        watchers = self.watched_by.get(ref)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self.watched_by[ref]
        kind = K_TERMINATED if confirmed else K_TERMINATED_UNCONFIRMED
        self._send(kind, watcher.path_str, self._path_of(ref))

    def remote_watch(self, target: ActorRef, watcher: RemoteActorRef) -> None:
        """The peer's ``watcher`` watches ``target`` (of this node)."""
        watchers = self.watched_by.get(target)
        if watchers is None:
            watchers = self.watched_by[target] = set()
        watchers.add(watcher)
        target.add_watcher(watcher)  # may notify at once, for an actor that is already gone

    def remote_unwatch(self, target: ActorRef, watcher: RemoteActorRef) -> bool:
        """The peer's ``watcher`` stops watching ``target``; ``False`` if it did not watch it."""
        watchers = self.watched_by.get(target)
        if watchers is None or watcher not in watchers:
            return False
        watchers.discard(watcher)
        if not watchers:
            del self.watched_by[target]
        target.remove_watcher(watcher)
        return True

    def remote_terminated(
        self, watchee: RemoteActorRef, watcher: ActorRef, confirmed: bool
    ) -> bool:
        """The peer says ``watchee`` terminated; tell ``watcher`` if it still watches.

        ``False`` if there is no such watch (unwatched meanwhile, or never made):
        nothing is delivered then.
        """
        watchers = self.watching.get(watchee)
        if watchers is None or watcher not in watchers:
            return False
        watchers.discard(watcher)
        if not watchers:
            del self.watching[watchee]
        watcher.notify_terminated(watchee, existence_confirmed=confirmed)
        return True

    def settle(self) -> int:
        """The peer's incarnation is gone: end every watch; returns how many there were.

        Watchers of its actors get ``Terminated(existence_confirmed=False)``;
        this node's actors forget its watchers.
        """
        watching, self.watching = self.watching, {}
        for watchee, watchers in watching.items():
            for watcher in watchers:
                watcher.notify_terminated(watchee, existence_confirmed=False)
        watched_by, self.watched_by = self.watched_by, {}
        for target, remote_watchers in watched_by.items():
            for remote_watcher in remote_watchers:
                target.remove_watcher(remote_watcher)
        return sum(map(len, watching.values())) + sum(map(len, watched_by.values()))
