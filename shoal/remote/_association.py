"""One peer, as seen from this node: its outbox, its outbound stream, its asks and watches.

An :class:`Association` exists per remote address (not per incarnation).
Everything this node sends to that address goes through its outbox and one
gRPC stream; answers to this node's asks and the peer's death-watch
notifications are routed back to it by the inbound side.

Connection lifecycle (``state``), an explicit state machine::

    IDLE --send--> CONNECTING --ack--> CONNECTED --stream lost--> BACKOFF
    CONNECTING --failure/refused/timeout--> BACKOFF --timer--> CONNECTING | IDLE
    any --aclose()--> CLOSED

Concurrency contract: every method runs on the system's event loop and none
blocks; ``tell``/``send_*`` never raise (undeliverable envelopes go to dead
letters and their asks fail). One connection task at a time owns the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from shoal.runtime import ActorRef, SerializationError

from ._backoff import backoff_delay
from ._errors import NodeGoneError, OutboxFullError, UnreachableError
from ._grpc import Quarantined, Refused, StreamClosed, open_stream
from ._timeout import with_timeout
from ._wire import (
    K_FAILURE,
    K_MESSAGE,
    K_REPLY,
    K_STOP,
    K_TERMINATED,
    K_TERMINATED_UNCONFIRMED,
    K_UNWATCH,
    K_WATCH,
    OutBatch,
    encode_failure,
)

if TYPE_CHECKING:
    from shoal.runtime import Cancellable

    from ._grpc import OutboundStream
    from ._ref import RemoteActorRef
    from ._remoting import Remoting

_log: Final = logging.getLogger("shoal.remote")

# Headroom for the string and route tables around a single large payload.
_FRAME_OVERHEAD: Final = 64 * 1024


class State(Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


_TRANSITIONS: Final = {
    State.IDLE: {State.CONNECTING, State.CLOSED},
    State.CONNECTING: {State.CONNECTED, State.BACKOFF, State.CLOSED},
    State.CONNECTED: {State.BACKOFF, State.CLOSED},
    State.BACKOFF: {State.CONNECTING, State.IDLE, State.CLOSED},
    State.CLOSED: set[State](),
}


class Association:
    """This node's state for one peer address (see the module docstring)."""

    def __init__(self, remoting: Remoting, address: str) -> None:
        settings = remoting.settings
        self.address = address
        self.uid: int | None = None
        """The peer's incarnation, once a handshake told it."""
        self.state = State.IDLE
        self.pending: dict[int, asyncio.Future[Any]] = {}
        """Asks (and remote stops) sent to this peer, by correlation id."""
        self.watching: dict[RemoteActorRef, set[ActorRef]] = {}
        """The peer's actors that actors of this node watch, with their watchers."""
        self.watched_by: dict[ActorRef, set[RemoteActorRef]] = {}
        """Actors of this node that the peer's actors watch, with those watchers."""
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
        self._task: asyncio.Task[None] | None = None
        self._stream: OutboundStream | None = None
        self._timer: Cancellable | None = None
        self._attempt = 0
        self._unreachable_since: float | None = None
        self._refusing: str | None = None

    def __repr__(self) -> str:
        return f"<Association {self.address} {self.state.value} queued={self._queued}>"

    @property
    def queued(self) -> int:
        """Envelopes queued for the peer and not yet written."""
        return self._queued

    def _enter(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"association {self.address}: {self.state} -> {state} is invalid")
        self.state = state

    # -- sending (hot path) ----------------------------------------------------------

    def tell(self, target: str, message: object, sender: ActorRef | None, correlation: int) -> None:
        """Queue a user message (an ask when ``correlation`` is set, with its promise pending)."""
        if self._queued >= self._capacity or self.state is State.CLOSED:
            self._reject(K_MESSAGE, target, message, sender, correlation)
            return
        try:
            serializer_id, manifest, payload = self._serialize(message)
        except SerializationError as exc:
            self._unsendable(target, message, sender, correlation, exc)
            return
        if len(payload) > self._max_payload:
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
        if len(payload) > self._max_payload:
            self.send_failure(
                correlation, "SerializationError", f"reply of {len(payload)} bytes is too large"
            )
            return
        self._control(K_REPLY, "", "", serializer_id, manifest, payload, correlation)

    def send_failure(self, correlation: int, error_type: str, message: str) -> None:
        """Fail the peer's ask ``correlation``."""
        payload = encode_failure(error_type, message[:4096])
        self._control(K_FAILURE, "", "", 0, "", payload, correlation)

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
        if self._queued >= self._capacity or self.state is State.CLOSED:
            self._metrics.count_dead("outbox-full" if self._queued else "closed")
            future = self.pending.pop(correlation, None) if kind == K_STOP else None
            if future is not None and not future.done():
                future.set_exception(OutboxFullError(f"outbox to {self.address} is full"))
            return
        self._batch.add(kind, target, sender, serializer_id, manifest, payload, correlation, None)
        self._queued += 1
        self._added()

    def _added(self) -> None:
        batch = self._batch
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._sealed.append(batch)
            self._batch = OutBatch()
        wakeup = self._wakeup
        if wakeup is not None:
            # The writer resumes on the next loop iteration: everything queued
            # during this one goes out in the same batch.
            self._wakeup = None
            wakeup.set_result(None)
        elif self.state is State.IDLE:
            self._connect()

    def _reject(
        self, kind: int, target: str, message: object, sender: ActorRef | None, correlation: int
    ) -> None:
        reason = "closed" if self.state is State.CLOSED else "outbox-full"
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
        while self._queued >= self._high_water and self.state is not State.CLOSED:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room_waiters.append(waiter)
            await waiter

    def _wake_room_waiters(self) -> None:
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- death watch ------------------------------------------------------------------

    def watch(self, watchee: RemoteActorRef, watcher: ActorRef) -> None:
        """``watcher`` (local) watches ``watchee`` (on the peer)."""
        if self.uid is not None and self._remoting.is_quarantined(self.address, self.uid):
            watcher._terminated(watchee, existence_confirmed=False)
            return
        watchers = self.watching.get(watchee)
        if watchers is None:
            watchers = self.watching[watchee] = set()
        if watcher not in watchers:
            watchers.add(watcher)
            self._control(K_WATCH, watchee.path_str, self._path_of(watcher), 0, "", b"", 0)

    def unwatch(self, watchee: RemoteActorRef, watcher: ActorRef) -> None:
        watchers = self.watching.get(watchee)
        if watchers is not None and watcher in watchers:
            watchers.discard(watcher)
            if not watchers:
                del self.watching[watchee]
            self._control(K_UNWATCH, watchee.path_str, self._path_of(watcher), 0, "", b"", 0)

    def notify_terminated(self, watcher: RemoteActorRef, ref: ActorRef, confirmed: bool) -> None:
        """Tell the peer's ``watcher`` that ``ref`` (of this node) terminated."""
        watchers = self.watched_by.get(ref)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self.watched_by[ref]
        kind = K_TERMINATED if confirmed else K_TERMINATED_UNCONFIRMED
        self._control(kind, watcher.path_str, self._path_of(ref), 0, "", b"", 0)

    def remote_watch(self, target: ActorRef, watcher: RemoteActorRef) -> None:
        """The peer's ``watcher`` watches ``target`` (of this node)."""
        watchers = self.watched_by.get(target)
        if watchers is None:
            watchers = self.watched_by[target] = set()
        watchers.add(watcher)
        target._watch(watcher)  # may notify at once, for an actor that is already gone

    def remote_unwatch(self, target: ActorRef, watcher: RemoteActorRef) -> None:
        watchers = self.watched_by.get(target)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self.watched_by[target]
        target._unwatch(watcher)

    def remote_terminated(
        self, watchee: RemoteActorRef, watcher: ActorRef, confirmed: bool
    ) -> None:
        """The peer says ``watchee`` terminated; tell ``watcher`` if it still watches."""
        watchers = self.watching.get(watchee)
        if watchers is None or watcher not in watchers:
            return  # unwatched meanwhile
        watchers.discard(watcher)
        if not watchers:
            del self.watching[watchee]
        watcher._terminated(watchee, existence_confirmed=confirmed)

    # -- the peer going away ------------------------------------------------------------

    def incarnation_gone(self, reason: str) -> None:
        """The incarnation this node knew is gone: settle every watch both ways.

        Watchers of its actors get ``Terminated(existence_confirmed=False)``;
        this node's actors forget its watchers. Asks are left to their
        timeouts here: the peer's next incarnation may still answer ones
        that were never delivered.
        """
        watching, self.watching = self.watching, {}
        for watchee, watchers in watching.items():
            for watcher in watchers:
                watcher._terminated(watchee, existence_confirmed=False)
        watched_by, self.watched_by = self.watched_by, {}
        for target, remote_watchers in watched_by.items():
            for remote_watcher in remote_watchers:
                target._unwatch(remote_watcher)
        if watching or watched_by:
            _log.info(
                "[%s] %s (%s): %d remote watches settled",
                self._remoting.address,
                self.address,
                reason,
                len(watching) + len(watched_by),
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
                self._system._dead_letter(
                    original,
                    self._remoting.resolve_or_none(sender),
                    self._remoting.remote_ref(target),
                    reason,
                )

    # -- connection ---------------------------------------------------------------------

    def _has_work(self) -> bool:
        return self._queued > 0 or bool(self.watching)

    def _connect(self) -> None:
        self._enter(State.CONNECTING)
        self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        remoting = self._remoting
        stream: OutboundStream | None = None
        try:
            stream = await open_stream(remoting, self.address)
            uid = self._accept_incarnation(stream.peer_uid)
            self._enter(State.CONNECTED)
            self._stream = stream
            self._attempt = 0
            self._unreachable_since = None
            self._refusing = None
            remoting.metrics.connects += 1
            _log.info("[%s] connected to %s (uid %d)", remoting.address, self.address, uid)
            await self._write_loop(stream)
        except (Refused, StreamClosed, TimeoutError, OSError) as exc:
            self._connection_failed(exc)
        finally:
            self._stream = None
            if stream is not None:
                await stream.close()

    def _accept_incarnation(self, uid: int) -> int:
        if self._remoting.is_quarantined(self.address, uid):
            raise Quarantined(f"incarnation {uid} is quarantined here")
        self._remoting.learned_uid(self, uid)
        return uid

    async def _write_loop(self, stream: OutboundStream) -> None:
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
                await self._wakeup
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

    def _connection_failed(self, exc: BaseException) -> None:
        remoting = self._remoting
        self._wakeup = None
        if self.state is State.CLOSED:
            return
        was_connected = self.state is State.CONNECTED
        self._enter(State.BACKOFF)
        now = self._clock.now()
        if self._unreachable_since is None:
            self._unreachable_since = now
        refused = isinstance(exc, Refused)
        if refused and self._refusing != str(exc):
            _log.warning("[%s] %s refused us: %s", remoting.address, self.address, exc)
        elif was_connected:
            _log.info("[%s] lost stream to %s: %s", remoting.address, self.address, exc)
        elif self._attempt == 0:
            _log.info("[%s] cannot reach %s: %s", remoting.address, self.address, exc)
        self._refusing = str(exc) if refused else None
        if isinstance(exc, Quarantined):
            self.drop_outbox("remote-quarantined", NodeGoneError)
        elif refused:
            # A refusal is a decision of the peer, not a network blip: waiting
            # will not deliver these.
            self.drop_outbox("remote-refused")
        elif now - self._unreachable_since >= remoting.settings.unreachable_drop_after:
            self.drop_outbox("remote-unreachable")
        settings = remoting.settings
        delay = backoff_delay(
            self._attempt,
            minimum=settings.backoff_min,
            maximum=settings.backoff_max,
            multiplier=settings.backoff_multiplier,
            jitter=settings.backoff_jitter,
            rand=remoting.rng.random(),
        )
        self._attempt += 1
        self._timer = self._clock.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self.state is not State.BACKOFF:
            return
        if self._has_work():
            self._enter(State.CONNECTING)
            self._task = self._loop.create_task(self._run())
        else:
            self._enter(State.IDLE)

    def abort_stream(self) -> None:
        """Close the outbound stream (a quarantine): reconnecting starts over."""
        stream = self._stream
        if stream is not None:
            stream.abort()

    async def aclose(self) -> None:
        """Flush what is queued (bounded by ``shutdown_flush_timeout``), then close.

        New envelopes are refused from the start; asks still waiting fail
        with :class:`UnreachableError`.
        """
        if self.state is State.CLOSED:
            return
        previous, self.state = self.state, State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stream = self._stream
        if previous is State.CONNECTED and stream is not None:
            try:
                await with_timeout(
                    self._clock,
                    self._flush(stream),
                    self._remoting.settings.shutdown_flush_timeout,
                )
            except TimeoutError:
                _log.warning(
                    "[%s] %d envelopes to %s not flushed at shutdown",
                    self._remoting.address,
                    self._queued,
                    self.address,
                )
        task = self._task
        if task is not None and not task.done():
            if self._stream is not None:
                self._stream.abort()  # the writer ends and the task closes the channel
            else:
                task.cancel()  # still connecting
            await asyncio.gather(task, return_exceptions=True)
        self.drop_outbox("remote-closed")
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    UnreachableError(f"remoting of {self._remoting.address} is closed")
                )

    async def _flush(self, stream: OutboundStream) -> None:
        """Wait until the writer wrote everything queued, then end the stream cleanly."""
        while self._queued and not stream.finished:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room_waiters.append(waiter)
            await waiter
        await stream.done_writing()
        await stream.wait_finished()
