"""One peer, as seen from this node: its outbox and writer, its asks and watches.

An :class:`Association` exists per remote address (not per incarnation).
Everything this node sends to that address goes through its outbox and is
written on one gRPC stream (kept by its :class:`~._link.Link`); answers to
this node's asks and the peer's death-watch notifications are routed back to
it by the inbound side.

The outbox: envelopes go into the open :class:`OutBatch`; it is sealed when
full (``batch_max_envelopes``/``batch_max_bytes``) and written when the
writer next runs, which is the loop iteration after the first envelope woke
it: all that is sent in one loop turn shares one batch and one write. At most
``outbox_capacity`` envelopes wait, connected or not.

Concurrency contract: every method runs on the system's event loop and none
blocks; ``tell``/``send_*`` never raise (undeliverable envelopes go to dead
letters and their asks fail).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from shoal.runtime import ActorRef, SerializationError

from ._errors import NodeGoneError, OutboxFullError, UnreachableError
from ._link import Link, State
from ._transport import StreamClosed
from ._watch import RemoteWatches
from ._wire import (
    K_FAILURE,
    K_MESSAGE,
    K_REPLY,
    K_STOP,
    OutBatch,
    encode_failure,
)

if TYPE_CHECKING:
    from ._remoting import Remoting
    from ._transport import Stream

_log: Final = logging.getLogger("shoal.remote")

# Headroom for the string and route tables around a single large payload.
_FRAME_OVERHEAD: Final = 64 * 1024


class Association:
    """This node's state for one peer address (see the module docstring)."""

    def __init__(self, remoting: Remoting, address: str) -> None:
        settings = remoting.settings
        self.address = address
        self.uid: int | None = None
        """The peer's incarnation, once a handshake told it."""
        self.closed = False
        self.pending: dict[int, asyncio.Future[Any]] = {}
        """Asks (and remote stops) sent to this peer, by correlation id."""
        self.watches = RemoteWatches(self._send_watch, remoting.path_of, self._quarantined)
        self._remoting = remoting
        self._system = remoting.system
        self._loop = remoting.system.loop
        self._clock = remoting.system.clock
        self._metrics = remoting.metrics
        self._serialize = remoting.system.serialization.serialize
        self._path_of = remoting.path_of
        self._max_envelopes = settings.batch_max_envelopes
        self._max_bytes = settings.batch_max_bytes
        self._max_payload = settings.max_frame_bytes - _FRAME_OVERHEAD
        self._capacity = settings.outbox_capacity
        self._high_water = max(1, settings.outbox_capacity // 2)
        self._batch = OutBatch()
        # The next open batch, made while a write is in flight rather than on
        # the path from a tell to its write.
        self._spare: OutBatch | None = OutBatch()
        self._sealed: deque[OutBatch] = deque()
        self._queued = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._room_waiters: list[asyncio.Future[None]] = []
        self.link = Link(self, remoting)

    def __repr__(self) -> str:
        return f"<Association {self.address} {self.link.state.value} queued={self._queued}>"

    @property
    def queued(self) -> int:
        """Envelopes queued for the peer and not yet written."""
        return self._queued

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
        self._batch.add(
            K_MESSAGE,
            target,
            "" if sender is None else self._path_of(sender),
            serializer_id,
            manifest,
            payload,
            correlation,
            message,
        )
        self._queued += 1
        self._added()

    def send_reply(self, correlation: int, value: object) -> None:
        """Answer the peer's ask ``correlation`` with ``value`` (a failure if it cannot be sent)."""
        try:
            serializer_id, manifest, payload = self._serialize(value)
        except SerializationError as exc:
            self.send_failure(correlation, type(exc).__name__, str(exc))
            return
        if len(payload) > self._max_bytes and not self._make_room(len(payload)):
            self.send_failure(
                correlation, "SerializationError", f"reply of {len(payload)} bytes is too large"
            )
            return
        self._control(K_REPLY, "", "", serializer_id, manifest, payload, correlation)

    def send_failure(self, correlation: int, error_type: str, message: str) -> None:
        """Fail the peer's ask ``correlation``."""
        payload = encode_failure(error_type, message[:4096])
        self._control(K_FAILURE, "", "", 0, "", payload, correlation)

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
        self._batch.add(kind, target, sender, serializer_id, manifest, payload, correlation, None)
        self._queued += 1
        self._added()

    def _make_room(self, size: int) -> bool:
        """Before a payload larger than a batch: seal the open batch so the payload
        travels in a frame of its own. ``False`` if it cannot fit in any frame."""
        if size > self._max_payload:
            return False
        if self._batch.routes:
            self._sealed.append(self._batch)
            self._batch = OutBatch()
        return True

    def _added(self) -> None:
        batch = self._batch
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._sealed.append(batch)
            self._batch = OutBatch()
        wakeup = self._wakeup
        if wakeup is not None:
            # The writer resumes on the next loop iteration: everything queued
            # during this one goes out in the same batch. (Already done: the
            # stream ended, and the writer is about to find out.)
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self.link.state is State.IDLE:
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
        self._system.dead_letter(
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
        self._system.dead_letter(
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
        batches = [*self._sealed, self._batch]
        self._sealed.clear()
        self._batch = OutBatch()
        for batch in batches:
            self._queued -= len(batch)
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
                self._system.dead_letter(
                    original,
                    self._remoting.resolve_or_none(sender),
                    self._remoting.remote_ref(target),
                    reason,
                )

    # -- the writer (run by the link while connected) ---------------------------------------

    def has_work(self) -> bool:
        """Whether the link should (re)connect: envelopes wait, or watches need the peer."""
        return self._queued > 0 or bool(self.watches.watching)

    async def write_loop(self, stream: Stream) -> None:
        """Write batches until the stream ends; raises :class:`StreamClosed` then."""
        metrics = self._metrics
        write = stream.write
        while not stream.finished:
            if self._sealed:
                batch = self._sealed.popleft()
            elif self._batch.routes:
                batch = self._batch
                self._batch = self._spare or OutBatch()
                self._spare = None
            else:
                self._wakeup = stream.wakeup = self._loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                continue
            data = batch.encode()
            count = len(batch)
            try:
                await write(data)
            except StreamClosed:
                self._queued -= count
                self._dead_letter_batch(batch, "remote-connection-lost", UnreachableError)
                self._wake_room_waiters()
                raise
            if self._spare is None:
                self._spare = OutBatch()
            self._queued -= count
            metrics.frames_sent += 1
            metrics.bytes_sent += len(data)
            metrics.envelopes_sent += count
            if self._room_waiters and self._queued < self._high_water:
                self._wake_room_waiters()
        raise StreamClosed(await stream.status())

    async def flush(self, stream: Stream) -> None:
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
