"""One peer, as seen from this node: its outbox and writer, its asks and watches.

An :class:`Association` exists per remote address (not per incarnation).
Everything this node sends to that address goes through its outbox (see
:mod:`._outbox`) and is written on one gRPC stream (kept by its
:class:`~._link.Link`). Answers to this node's asks come back on that same
stream (or, if it broke meanwhile, on the stream the peer opened to this
node); the peer's death-watch notifications arrive on the peer's stream.
Either way the inbound side routes them here.

At most ``outbox_capacity`` envelopes wait, connected or not.

Concurrency contract: every method runs on the system's event loop and none
blocks; ``tell``/``send_*`` never raise (undeliverable envelopes go to dead
letters and their asks fail).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from shoal.runtime import ActorRef, SerializationError

from ._errors import NodeGoneError, OutboxFullError, UnreachableError
from ._grpc import StreamClosed
from ._link import Link, State
from ._outbox import Outbox
from ._watch import RemoteWatches
from ._wire import K_MESSAGE, K_STOP, OutBatch

if TYPE_CHECKING:
    from ._grpc import OutboundStream
    from ._remoting import Remoting

_log: Final = logging.getLogger("shoal.remote")


class Association(Outbox):
    """This node's state for one peer address (see the module docstring)."""

    def __init__(self, remoting: Remoting, address: str) -> None:
        settings = remoting.settings
        super().__init__(settings, remoting.system.loop, remoting.system.serialization.serialize)
        self.address = address
        self.uid: int | None = None
        """The peer's incarnation, once a handshake told it."""
        self.closed = False
        self.pending: dict[int, asyncio.Future[Any]] = {}
        """Asks (and remote stops) sent to this peer, by correlation id."""
        self.watches = RemoteWatches(self._send_watch, remoting.path_of, self._quarantined)
        self._remoting = remoting
        self._system = remoting.system
        self._clock = remoting.system.clock
        self._metrics = remoting.metrics
        self._path_of = remoting.path_of
        self._high_water = max(1, settings.outbox_capacity // 2)
        self._room_waiters: list[asyncio.Future[None]] = []
        self.link = Link(self, remoting)

    def __repr__(self) -> str:
        return f"<Association {self.address} {self.link.state.value} queued={self._queued}>"

    # -- sending (hot path) ----------------------------------------------------------

    def tell(self, target: str, message: object, sender: ActorRef | None, correlation: int) -> None:
        """Queue a user message (an ask when ``correlation`` is set, with its promise pending)."""
        if self._queued >= self._capacity or self.closed:
            self._reject(K_MESSAGE, target, message, sender, correlation)
            return
        try:
            serializer_id, manifest, payload = self._serialize(message)
        except SerializationError as exc:
            self._unsendable(target, message, sender, correlation, exc)
            return
        if len(payload) > self._max_bytes and not self._make_room(len(payload)):
            self._unsendable(
                target,
                message,
                sender,
                correlation,
                SerializationError(f"{len(payload)} bytes exceed the frame limit"),
            )
            return
        self._append(
            K_MESSAGE,
            target,
            "" if sender is None else self._path_of(sender),
            serializer_id,
            manifest,
            payload,
            correlation,
            message,
        )

    def _send_watch(self, kind: int, target: str, sender: str) -> None:
        self._control(kind, target, sender, 0, "", b"", 0)

    def _quarantined(self) -> bool:
        return self.uid is not None and self._remoting.is_quarantined(self.address, self.uid)

    def send_stop(self, target: str, correlation: int) -> None:
        self._control(K_STOP, target, "", 0, "", b"", correlation)

    def _control(
        self,
        kind: int,
        target: str,
        sender: str,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
    ) -> None:
        """Queue a runtime envelope; they are bounded by the outbox like user messages."""
        if self._queued >= self._capacity or self.closed:
            self._metrics.count_dead("outbox-full" if self._queued else "closed")
            future = self.pending.pop(correlation, None) if kind == K_STOP else None
            if future is not None and not future.done():
                future.set_exception(OutboxFullError(f"outbox to {self.address} is full"))
            return
        self._append(kind, target, sender, serializer_id, manifest, payload, correlation, None)

    def _no_writer_waiting(self) -> None:
        if self.link.state is State.IDLE:
            self.link.start()

    def _reject(
        self, kind: int, target: str, message: object, sender: ActorRef | None, correlation: int
    ) -> None:
        reason = "closed" if self.closed else "outbox-full"
        self._metrics.count_dead(reason)
        future = self.pending.pop(correlation, None) if correlation else None
        if future is not None:
            if not future.done():
                error = (
                    OutboxFullError(f"outbox to {self.address} is full")
                    if reason == "outbox-full"
                    else UnreachableError(f"remoting of {self._remoting.address} is closed")
                )
                future.set_exception(error)
            return
        self._system._dead_letter(
            message, sender, self._remoting.remote_ref(target), f"remote-{reason}"
        )

    def _unsendable(
        self,
        target: str,
        message: object,
        sender: ActorRef | None,
        correlation: int,
        error: SerializationError,
    ) -> None:
        self._metrics.count_dead("unserializable")
        future = self.pending.pop(correlation, None) if correlation else None
        if future is not None:
            if not future.done():
                future.set_exception(error)
            return
        self._remoting.bad_log.report(
            "unserializable", "cannot send %s to %s: %s", type(message).__qualname__, target, error
        )
        self._system._dead_letter(
            message, sender, self._remoting.remote_ref(target), "remote-unserializable"
        )

    async def wait_for_room(self) -> None:
        """Wait until the outbox is less than half full (or closed).

        Waiting for half rather than one free slot lets a sender that calls
        ``send`` once every few hundred ``tell``s never overflow the outbox.
        """
        while self._queued >= self._high_water and not self.closed:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room_waiters.append(waiter)
            await waiter

    def _wake_room_waiters(self) -> None:
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the peer going away ------------------------------------------------------------

    def incarnation_gone(self, reason: str) -> None:
        """The incarnation this node knew is gone: settle every watch both ways.

        Asks are left to their timeouts here: the peer's next incarnation may
        still answer ones that were never delivered.
        """
        settled = self.watches.settle()
        if settled:
            _log.info(
                "[%s] %s (%s): %d remote watches settled",
                self._remoting.address,
                self.address,
                reason,
                settled,
            )

    def declare_gone(self, reason: str) -> None:
        """The peer is gone for good: settle watches, fail asks, drop its outbox."""
        self.incarnation_gone(reason)
        pending, self.pending = self.pending, {}
        error = NodeGoneError(f"{self.address} is gone ({reason})")
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        self.drop_outbox(f"remote-{reason}", NodeGoneError)

    def drop_outbox(self, reason: str, error: type[Exception] = UnreachableError) -> None:
        """Send every queued (not in-flight) envelope to dead letters; fail their asks."""
        for batch in self._take_all():
            self._dead_letter_batch(batch, reason, error)
        self._wake_room_waiters()

    def _dead_letter_batch(self, batch: OutBatch, reason: str, error: type[Exception]) -> None:
        if not len(batch):
            return
        self._metrics.count_dead(reason, len(batch))
        for kind, target, sender, correlation, original in batch.envelopes():
            if correlation and kind in (K_MESSAGE, K_STOP):
                future = self.pending.pop(correlation, None)
                if future is not None and not future.done():
                    future.set_exception(error(f"not delivered to {self.address}: {reason}"))
            elif kind == K_MESSAGE:
                self._system._dead_letter(
                    original,
                    self._remoting.resolve_or_none(sender),
                    self._remoting.remote_ref(target),
                    reason,
                )

    # -- the writer (run by the link while connected) ---------------------------------------

    def has_work(self) -> bool:
        """Whether the link should (re)connect: envelopes wait, or watches need the peer."""
        return self._queued > 0 or bool(self.watches.watching)

    async def write_loop(self, stream: OutboundStream) -> None:
        """Write batches until the stream ends; raises :class:`StreamClosed` then."""
        metrics = self._metrics
        write = stream.write
        while not stream.finished:
            batch = self._next_batch()
            if batch is None:
                stream.wakeup = self._wait_for_work()
                try:
                    await stream.wakeup
                finally:
                    self._wakeup = None
                continue
            data = batch.encode()
            count = len(batch)
            try:
                await write(data)
            except StreamClosed:
                self._written(count)
                self._dead_letter_batch(batch, "remote-connection-lost", UnreachableError)
                self._wake_room_waiters()
                raise
            self._written(count)
            metrics.frames_sent += 1
            metrics.bytes_sent += len(data)
            metrics.envelopes_sent += count
            if self._room_waiters and self._queued < self._high_water:
                self._wake_room_waiters()
        raise StreamClosed(await stream.status())

    async def flush(self, stream: OutboundStream) -> None:
        """Wait until the writer wrote everything queued, then end the stream cleanly."""
        while self._queued and not stream.finished:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room_waiters.append(waiter)
            await waiter
        await stream.done_writing()
        await stream.wait_finished()

    async def aclose(self) -> None:
        """Flush and close the stream; what is left goes to dead letters, asks fail.

        New envelopes are refused from the start.
        """
        if self.closed:
            return
        self.closed = True
        await self.link.aclose()
        self.drop_outbox("remote-closed")
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    UnreachableError(f"remoting of {self._remoting.address} is closed")
                )
