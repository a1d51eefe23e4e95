"""One peer, as seen from this node: its outbox and writer, its asks and watches.

An :class:`Association` exists per remote address (not per incarnation).
Everything this node sends to that address goes through its outbox and is
written on one gRPC stream (kept by its :class:`~._link.Link`); answers to
this node's asks and the peer's death-watch notifications are routed back to
it by the inbound side.

Two lanes share the one ordered stream to the peer:

- The **user lane** carries user messages and the answers to the peer's asks.
  Envelopes go into the open :class:`OutBatch`; it is sealed when full
  (``batch_max_envelopes``/``batch_max_bytes``) and written when the writer
  next runs, which is the loop iteration after the first envelope woke it:
  all that is sent in one loop turn shares one batch and one write. A batch
  of fewer than 64 envelopes that grew during that turn waits for the next
  one, again while it grows (16 turns at most): under load, traffic arrives
  spread over many loop turns, and a write costs gRPC, the kernel and the
  peer's reader about as much for a few envelopes as for many (with asks
  on three busy nodes, this made frames ~8 times larger and the CPU time
  per ask less than half). An envelope that woke an idle writer alone (a
  sequential ask, a quiet peer) does not wait: it goes at the next turn.
  At most ``outbox_capacity`` envelopes and ``outbox_max_bytes`` payload
  bytes wait, connected or not. Answers ride this lane on purpose: an answer never
  overtakes what its actor told the asker before answering, as in Akka, where
  replies are ordinary messages.
- The **control lane** carries the system's own messages: watch, unwatch,
  ``Terminated``, remote ``stop()``, and what :meth:`Association.send_control`
  queues (the cluster's heartbeats and gossip). The writer takes control
  batches before any user batch, so a control envelope waits at most for the
  one write in flight, never behind queued user envelopes; it has its own
  bound (``control_outbox_capacity``) and is never dropped because the user
  lane is full, nor when the peer has been unreachable for long (only when
  the peer is declared gone, or remoting closes).

Order: within each lane, envelopes are written in the order they were
queued, so per sender/receiver pair order holds on each lane. Across lanes
one rule is kept: a ``Terminated`` for an actor of this node is written only
after every user envelope that actor sent to the peer before it stopped (it
is held until the last user batch holding one is written), so a watcher
never sees ``Terminated`` before that actor's last messages, as in Akka.
Nothing else is ordered across lanes: a watch, an unwatch or a remote stop
may overtake user messages queued earlier.

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
    K_TERMINATED,
    K_TERMINATED_UNCONFIRMED,
    K_UNWATCH,
    K_WATCH,
    OutBatch,
    encode_failure,
)

if TYPE_CHECKING:
    from ._remoting import Remoting
    from ._transport import Stream

_log: Final = logging.getLogger("shoal.remote")

# Headroom for the string and route tables around a single large payload.
_FRAME_OVERHEAD: Final = 64 * 1024
# A small open batch waits a loop turn while it still grows (module docstring).
_LINGER_TURNS: Final = 16
_LINGER_ENVELOPES: Final = 64  # a batch this large is written at once
_SWEEP_MIN: Final = 1024  # pending asks before the first sweep of ended ones

# What the control lane keeps when the peer stays unreachable: death-watch
# bookkeeping is still owed to it, while a stop or a heartbeat is stale by then.
_WATCH_KINDS: Final = frozenset({K_WATCH, K_UNWATCH, K_TERMINATED, K_TERMINATED_UNCONFIRMED})


class Association:
    """This node's state for one peer address (see the module docstring)."""

    def __init__(self, remoting: Remoting, address: str) -> None:
        settings = remoting.settings
        self.address = address
        self.uid: int | None = None
        """The peer's incarnation, once a handshake told it."""
        self.closed = False
        self.retired = False
        """Forgotten as idle (``max_idle_associations``): refs bind to a new one."""
        self.gave_up: str | None = None
        """Why this node gave up on the unreachable peer (``unreachable_drop_after``);
        ``None`` while it is reachable or still being retried."""
        self._blocked = False  # closed or gave up: refuse user envelopes at once
        self.pending: dict[int, asyncio.Future[Any]] = {}
        """Asks (and remote stops) sent to this peer, by correlation id. An answer
        removes its entry; entries of asks that ended otherwise (timed out,
        cancelled) are swept in bulk by ``expect_answer`` and ``is_idle``."""
        self._sweep_at = _SWEEP_MIN
        self.delivering: asyncio.Future[None] | None = None
        """Set while a large frame from the peer is delivered over several loop turns
        (see ``Inbound.receive``); done once it is."""
        self.watches = RemoteWatches(self._send_watch, remoting.path_of, self._quarantined)
        self._remoting = remoting
        self._system = remoting.system
        self._loop = remoting.system.loop
        self._clock = remoting.system.clock
        self._metrics = remoting.metrics
        self._serialize = remoting.system.serialization.serialize
        self._path_of = remoting.path_of
        self._next_id = remoting.next_id
        self._max_envelopes = settings.batch_max_envelopes
        self._max_bytes = settings.batch_max_bytes
        self._max_payload = settings.max_frame_bytes - _FRAME_OVERHEAD
        self._capacity = settings.outbox_capacity
        self._max_queued_bytes = settings.outbox_max_bytes
        self._high_water = max(1, settings.outbox_capacity // 2)
        self._batch = OutBatch()
        # The next open batch, made while a write is in flight rather than on
        # the path from a tell to its write.
        self._spare: OutBatch | None = OutBatch()
        self._sealed: deque[OutBatch] = deque()
        self._queued = 0
        self._queued_bytes = 0
        # The control lane (see the module docstring).
        self._ctl = OutBatch()
        self._ctl_sealed: deque[OutBatch] = deque()
        self._ctl_queued = 0
        self._ctl_capacity = settings.control_outbox_capacity
        self._held: list[tuple[OutBatch, int, str, str]] = []
        """Terminated notifications waiting for a user batch to be written first."""
        self._wakeup: asyncio.Future[None] | None = None
        self._room_waiters: list[asyncio.Future[None]] = []
        self.link = Link(self, remoting)

    def __repr__(self) -> str:
        return f"<Association {self.address} {self.link.state.value} queued={self._queued}>"

    @property
    def queued(self) -> int:
        """Envelopes queued for the peer (both lanes) and not yet written."""
        return self._queued + self._ctl_queued + len(self._held)

    @property
    def queued_bytes(self) -> int:
        """Payload bytes queued on the user lane."""
        return self._queued_bytes

    @property
    def control_queued(self) -> int:
        """Envelopes queued on the control lane (held ``Terminated`` included)."""
        return self._ctl_queued + len(self._held)

    def is_idle(self) -> bool:
        """Nothing going on with the peer: no stream, nothing queued, no asks, no watches."""
        if self.pending:
            self._sweep_pending()
        return (
            self.link.is_idle()
            and not self.queued
            and not self.pending
            and not self.watches.watching
            and not self.watches.watched_by
        )

    # -- sending (hot path) ----------------------------------------------------------

    def tell(self, target: str, message: object, sender: ActorRef | None, correlation: int) -> None:
        """Queue a user message (an ask when ``correlation`` is set, with its promise pending)."""
        if self._queued >= self._capacity or self._blocked:
            self._reject(K_MESSAGE, target, message, sender, correlation)
            return
        try:
            serializer_id, manifest, payload = self._serialize(message)
        except SerializationError as exc:
            self._unsendable(target, message, sender, correlation, exc)
            return
        size = len(payload)
        if self._queued_bytes + size > self._max_queued_bytes and self._queued:
            self._reject(K_MESSAGE, target, message, sender, correlation)
            return
        if size > self._max_bytes and not self._make_room(size):
            self._unsendable(
                target,
                message,
                sender,
                correlation,
                SerializationError(f"{len(payload)} bytes exceed the frame limit"),
            )
            return
        batch = self._batch
        batch.add(
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
        self._queued_bytes += size
        # _added, inlined: the path of every message and ask sent.
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._sealed.append(batch)
            self._batch = OutBatch()
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self.link.state is State.IDLE:
            self.link.start()

    def send_reply(self, correlation: int, value: object) -> None:
        """Answer the peer's ask ``correlation`` with ``value`` (a failure if it cannot be sent)."""
        try:
            serializer_id, manifest, payload = self._serialize(value)
        except SerializationError as exc:
            self.send_failure(correlation, type(exc).__name__, str(exc))
            return
        size = len(payload)
        if size > self._max_bytes and not self._make_room(size):
            self.send_failure(
                correlation, "SerializationError", f"reply of {size} bytes is too large"
            )
            return
        # _answer and _added, inlined: the path of every answer to a peer's ask.
        if self._queued >= self._capacity or self.closed:
            self._metrics.count_dead("outbox-full" if self._queued else "closed")
            return
        batch = self._batch
        batch.add(K_REPLY, "", "", serializer_id, manifest, payload, correlation, None)
        self._queued += 1
        self._queued_bytes += size
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._sealed.append(batch)
            self._batch = OutBatch()
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self.link.state is State.IDLE:
            self.link.start()

    def send_failure(self, correlation: int, error_type: str, message: str) -> None:
        """Fail the peer's ask ``correlation``."""
        payload = encode_failure(error_type, message[:4096])
        self._answer(K_FAILURE, 0, "", payload, correlation)

    def _answer(
        self, kind: int, serializer_id: int, manifest: str, payload: bytes, correlation: int
    ) -> None:
        """Queue an answer on the user lane, bounded like user messages."""
        if self._queued >= self._capacity or self.closed:
            self._metrics.count_dead("outbox-full" if self._queued else "closed")
            return
        self._batch.add(kind, "", "", serializer_id, manifest, payload, correlation, None)
        self._queued += 1
        self._queued_bytes += len(payload)
        self._added()

    def _send_watch(self, kind: int, target: str, sender: str) -> None:
        if kind in (K_TERMINATED, K_TERMINATED_UNCONFIRMED) and self._queued:
            holding = self._last_batch_from(sender)
            if holding is not None:
                # Written once the terminated actor's last queued messages are.
                if self._ctl_queued + len(self._held) >= self._ctl_capacity:
                    self._metrics.count_dead("control-outbox-full")
                    return
                self._held.append((holding, kind, target, sender))
                return
        self._control(kind, target, sender, 0, "", b"", 0, None)

    def _last_batch_from(self, sender: str) -> OutBatch | None:
        """The last queued user batch holding an envelope sent by ``sender`` (a path)."""
        if sender in self._batch.string_map:
            return self._batch
        for batch in reversed(self._sealed):
            if sender in batch.string_map:
                return batch
        return None

    def _release(self, batch: OutBatch | None) -> None:
        """Queue the ``Terminated`` held for ``batch`` (for every batch if ``None``)."""
        held, self._held = self._held, []
        for entry in held:
            holding, kind, target, sender = entry
            if batch is None or holding is batch:
                self._control(kind, target, sender, 0, "", b"", 0, None)
            else:
                self._held.append(entry)

    def _quarantined(self) -> bool:
        return self.uid is not None and self._remoting.is_quarantined(self.address, self.uid)

    def send_stop(self, target: str, correlation: int) -> None:
        self._control(K_STOP, target, "", 0, "", b"", correlation, None)

    def send_control(self, target: str, message: object, sender: ActorRef | None) -> None:
        """Queue a message for a system actor of the peer on the control lane.

        ``target`` is the path of an actor under ``/system`` that the peer
        exposed with ``Remoting.accept_control``. What cannot be serialized or
        queued goes to dead letters, as for ``tell``.
        """
        try:
            serializer_id, manifest, payload = self._serialize(message)
        except SerializationError as exc:
            self._unsendable(target, message, sender, 0, exc)
            return
        if len(payload) > self._max_payload:
            self._unsendable(
                target,
                message,
                sender,
                0,
                SerializationError(f"{len(payload)} bytes exceed the frame limit"),
            )
            return
        sender_path = "" if sender is None else self._path_of(sender)
        self._control(K_MESSAGE, target, sender_path, serializer_id, manifest, payload, 0, message)

    def _control(
        self,
        kind: int,
        target: str,
        sender: str,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
        original: object,
    ) -> None:
        """Queue an envelope on the control lane (bounded by ``control_outbox_capacity``)."""
        if self._ctl_queued + len(self._held) >= self._ctl_capacity or self.closed:
            reason = "closed" if self.closed else "control-outbox-full"
            self._metrics.count_dead(reason)
            future = self.pending.pop(correlation, None) if kind == K_STOP else None
            if future is not None and not future.done():
                future.set_exception(
                    UnreachableError(f"remoting of {self._remoting.address} is closed")
                    if self.closed
                    else OutboxFullError(f"control outbox to {self.address} is full")
                )
            if original is not None:
                self._system.dead_letter(
                    original, None, self._remoting.remote_ref(target), f"remote-{reason}"
                )
            return
        batch = self._ctl
        batch.add(kind, target, sender, serializer_id, manifest, payload, correlation, original)
        self._ctl_queued += 1
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._ctl_sealed.append(batch)
            self._ctl = OutBatch()
        self._wake()

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
        # _wake, inlined: this runs once per envelope.
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self.link.state is State.IDLE:
            self.link.start()

    def _wake(self) -> None:
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
        error: Exception
        if self.closed:
            reason = "closed"
            error = UnreachableError(f"remoting of {self._remoting.address} is closed")
        elif self.gave_up is not None:
            reason = "unreachable"
            error = UnreachableError(self.gave_up)
            if self.link.is_idle():
                self.link.start()  # keep trying: a stream clears the verdict
        else:
            reason = "outbox-full"
            error = OutboxFullError(
                f"outbox to {self.address} is full ({self._queued} envelopes, "
                f"{self._queued_bytes} bytes queued)"
            )
        self._metrics.count_dead(reason)
        future = self.pending.pop(correlation, None) if correlation else None
        if future is not None:
            if not future.done():
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
        """The peer is gone for good: settle watches, fail asks, drop both lanes."""
        self.incarnation_gone(reason)
        self._fail_pending(NodeGoneError(f"{self.address} is gone ({reason})"))
        self.drop_outbox(f"remote-{reason}", NodeGoneError, control=True)

    def give_up(self, why: str) -> None:
        """The peer stayed unreachable for ``unreachable_drop_after``: fail what waits for it.

        Every waiting ask fails with :class:`UnreachableError` (``why`` is its
        message), the user lane goes to dead letters, and the control lane keeps
        only death-watch envelopes (still owed to the peer once it is back).
        Until :meth:`reachable`, user envelopes are refused at once.
        """
        if self.closed:
            return
        self.gave_up = why
        self._blocked = True
        self._metrics.unreachable_give_ups += 1
        self._fail_pending(UnreachableError(why))
        self.drop_outbox("remote-unreachable")
        self._trim_control("remote-unreachable")

    def reachable(self) -> None:
        """A stream to the peer is established: accept user envelopes again."""
        self.gave_up = None
        self._blocked = self.closed

    def ask(self, target: str, message: object, future: asyncio.Future[Any]) -> None:
        """Queue ``message`` for ``target`` as an ask whose answer completes ``future``
        (``expect_answer`` and ``tell`` in one call: the path of every remote ask)."""
        correlation = self._next_id()
        pending = self.pending
        if len(pending) >= self._sweep_at:
            self._sweep_pending()
        pending[correlation] = future
        self.tell(target, message, None, correlation)

    def expect_answer(self, correlation: int, future: asyncio.Future[Any]) -> None:
        """Complete ``future`` with the peer's answer to ``correlation``.

        No callback per ask: the entries of asks that end without an answer are
        swept once the table has doubled since the last sweep (amortised O(1)),
        which keeps an ask to one garbage-collected object, its future.
        """
        pending = self.pending
        if len(pending) >= self._sweep_at:
            self._sweep_pending()
        pending[correlation] = future

    def _sweep_pending(self) -> None:
        """Forget the asks that ended without an answer (in place: readers hold the dict)."""
        pending = self.pending
        for correlation in [c for c, future in pending.items() if future.done()]:
            del pending[correlation]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(pending))

    def _fail_pending(self, error: Exception) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def drop_outbox(
        self,
        reason: str,
        error: type[Exception] = UnreachableError,
        *,
        control: bool = False,
        why: str | None = None,
    ) -> None:
        """Send every queued (not in-flight) user envelope to dead letters; fail their asks.

        With ``control``, the control lane goes too; otherwise the ``Terminated``
        notifications held behind the dropped user batches are queued at once.
        ``why`` is what failed asks say (by default ``reason``).
        """
        batches = [*self._sealed, self._batch]
        self._sealed.clear()
        self._batch = OutBatch()
        for batch in batches:
            self._queued -= len(batch)
            self._queued_bytes -= sum(map(len, batch.payloads))
        if control:
            self._held.clear()
            control_batches = [*self._ctl_sealed, self._ctl]
            self._ctl_sealed.clear()
            self._ctl = OutBatch()
            for batch in control_batches:
                self._ctl_queued -= len(batch)
            batches += control_batches
        elif self._held:
            self._release(None)
        for batch in batches:
            self._dead_letter_batch(batch, reason, error, why)
        self._wake_room_waiters()

    def _trim_control(self, reason: str) -> None:
        """Keep only the death-watch envelopes of the control lane; drop the rest."""
        batches = [*self._ctl_sealed, self._ctl]
        self._ctl_sealed.clear()
        self._ctl = OutBatch()
        for batch in batches:
            self._ctl_queued -= len(batch)
        dropped = OutBatch()
        for batch in batches:
            correlations = batch.correlations or ()
            for i, route in enumerate(batch.routes):
                kind, target, sender, serializer_id, manifest = batch.route_keys[route]
                correlation = correlations[i] if i < len(correlations) else 0
                args = (target, sender, serializer_id, manifest, batch.payloads[i], correlation)
                if kind in _WATCH_KINDS:
                    self._control(kind, *args, batch.originals[i])
                else:
                    dropped.add(kind, *args, batch.originals[i])
        self._dead_letter_batch(dropped, reason, UnreachableError)

    def _dead_letter_batch(
        self, batch: OutBatch, reason: str, error: type[Exception], why: str | None = None
    ) -> None:
        if not len(batch):
            return
        if why is None:
            why = self.gave_up if self.gave_up is not None else reason
        self._metrics.count_dead(reason, len(batch))
        for kind, target, sender, correlation, original in batch.envelopes():
            if correlation and kind in (K_MESSAGE, K_STOP):
                future = self.pending.pop(correlation, None)
                if future is not None and not future.done():
                    future.set_exception(error(f"not delivered to {self.address}: {why}"))
            elif kind == K_MESSAGE:
                self._system.dead_letter(
                    original,
                    self._remoting.resolve_or_none(sender),
                    self._remoting.remote_ref(target),
                    reason,
                )

    def _lost(self, batch: OutBatch, control: bool, reason: str) -> None:
        """A batch taken by the writer was not written: dead letters, asks fail."""
        self._settled(batch, control)
        self._dead_letter_batch(batch, reason, UnreachableError)
        self._wake_room_waiters()

    def _settled(self, batch: OutBatch, control: bool) -> None:
        """Take a batch the writer is done with off the lane's counters."""
        if control:
            self._ctl_queued -= len(batch)
            return
        self._queued -= len(batch)
        self._queued_bytes -= sum(map(len, batch.payloads))
        if self._held:
            self._release(batch)

    # -- the writer (run by the link while connected) ---------------------------------------

    def has_work(self) -> bool:
        """Whether the link should (re)connect: envelopes wait, or watches need the peer."""
        return bool(self.queued) or bool(self.watches.watching)

    async def write_loop(self, stream: Stream) -> None:
        """Write batches, control lane first, until the stream ends; raises
        :class:`StreamClosed` then. An unexpected error (a bug) loses the batch
        being written (dead letters) and propagates: the link restarts."""
        metrics = self._metrics
        write = stream.write
        seen = turns = 0  # the open batch's size at the last turn, turns waited for it
        idle = False  # the writer waited for the envelopes of the open batch
        while not stream.finished:
            control = False
            size = len(self._batch.routes)
            if (
                seen < size < _LINGER_ENVELOPES
                and not (idle and size == 1)
                and turns < _LINGER_TURNS
                and not self._ctl_queued
                and not self._sealed
            ):
                seen = size
                turns += 1
                await asyncio.sleep(0)
                continue
            seen = turns = 0
            if self._ctl_queued:
                control = True
                if self._ctl_sealed:
                    batch = self._ctl_sealed.popleft()
                else:
                    batch = self._ctl
                    self._ctl = OutBatch()
            elif self._sealed:
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
                idle = True
                continue
            idle = False
            try:
                data = batch.encode()
                await write(data)
            except StreamClosed:
                self._lost(batch, control, "remote-connection-lost")
                raise
            except BaseException:
                self._lost(batch, control, "remote-link-failed")
                raise
            if self._spare is None:
                self._spare = OutBatch()
            count = len(batch)
            self._settled(batch, control)
            metrics.frames_sent += 1
            metrics.bytes_sent += len(data)
            metrics.envelopes_sent += count
            if self._room_waiters and self._queued < self._high_water:
                self._wake_room_waiters()
        raise StreamClosed(await stream.status())

    async def flush(self, stream: Stream) -> None:
        """Wait until the writer wrote everything queued, then end the stream cleanly."""
        while self.queued and not stream.finished:
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
        self._blocked = True
        await self.link.aclose()
        self.drop_outbox("remote-closed", control=True)
        self._fail_pending(UnreachableError(f"remoting of {self._remoting.address} is closed"))
