"""The outbound stream to one peer: connecting, handshaking, backing off, closing.

Lifecycle (``Link.state``), an explicit state machine; an invalid transition
raises (a bug, caught by the tests)::

    IDLE --first envelope--> CONNECTING --ack--> CONNECTED --stream lost--> BACKOFF
    CONNECTING --failure/refused/timeout--> BACKOFF --timer--> CONNECTING | IDLE
    any --aclose()--> CLOSED

One task at a time owns the stream: it opens it (handshake included), then
runs the association's writer until the stream ends. Every delay is on the
system clock: the handshake timeout, the backoff (see ``RemoteSettings``),
and how long the association's outbox is kept for an unreachable peer.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import TYPE_CHECKING, Final

from ._backoff import backoff_delay
from ._errors import NodeGoneError
from ._grpc import Quarantined, Refused, StreamClosed, open_stream
from ._timeout import with_timeout

if TYPE_CHECKING:
    from shoal.runtime import Cancellable

    from ._association import Association
    from ._grpc import OutboundStream
    from ._remoting import Remoting

_log: Final = logging.getLogger("shoal.remote")


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


class Link:
    """The outbound stream of one association (see the module docstring)."""

    def __init__(self, assoc: Association, remoting: Remoting) -> None:
        self.state = State.IDLE
        self._assoc = assoc
        self._address = assoc.address
        self._remoting = remoting
        self._clock = remoting.system.clock
        self._loop = remoting.system.loop
        self._task: asyncio.Task[None] | None = None
        self._stream: OutboundStream | None = None
        self._timer: Cancellable | None = None
        self._attempt = 0
        self._unreachable_since: float | None = None
        self._refusing: str | None = None
        self._connected: asyncio.Future[None] | None = None
        """Set while closing waits for a stream that is still connecting."""

    def _enter(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"link to {self._address}: {self.state} -> {state} is invalid")
        self.state = state

    def start(self) -> None:
        """Connect (from IDLE): there is something to send."""
        self._enter(State.CONNECTING)
        self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        remoting = self._remoting
        stream: OutboundStream | None = None
        try:
            stream = await open_stream(remoting, self._address)
            uid = self._accept_incarnation(stream.peer_uid)
            self._enter(State.CONNECTED)
            self._stream = stream
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
            self._attempt = 0
            self._unreachable_since = None
            self._refusing = None
            remoting.metrics.connects += 1
            _log.info("[%s] connected to %s (uid %d)", remoting.address, self._address, uid)
            await self._assoc.write_loop(stream)
        except (Refused, StreamClosed, TimeoutError, OSError) as exc:
            self._failed(exc)
        finally:
            self._stream = None
            if stream is not None:
                await stream.close()

    def _accept_incarnation(self, uid: int) -> int:
        if self._remoting.is_quarantined(self._address, uid):
            raise Quarantined(f"incarnation {uid} is quarantined here")
        self._remoting.learned_uid(self._assoc, uid)
        return uid

    def _failed(self, exc: BaseException) -> None:
        remoting = self._remoting
        assoc = self._assoc
        if self.state is State.CLOSED:
            return
        was_connected = self.state is State.CONNECTED
        self._enter(State.BACKOFF)
        now = self._clock.now()
        if self._unreachable_since is None:
            self._unreachable_since = now
        refused = isinstance(exc, Refused)
        if refused and self._refusing != str(exc):
            _log.warning("[%s] %s refused us: %s", remoting.address, self._address, exc)
        elif was_connected:
            _log.info("[%s] lost stream to %s: %s", remoting.address, self._address, exc)
        elif self._attempt == 0:
            _log.info("[%s] cannot reach %s: %s", remoting.address, self._address, exc)
        self._refusing = str(exc) if refused else None
        if isinstance(exc, Quarantined):
            assoc.drop_outbox("remote-quarantined", NodeGoneError)
        elif refused:
            # A refusal is a decision of the peer, not a network blip: waiting
            # will not deliver these.
            assoc.drop_outbox("remote-refused")
        elif now - self._unreachable_since >= remoting.settings.unreachable_drop_after:
            assoc.drop_outbox("remote-unreachable")
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
        if self._assoc.has_work():
            self._enter(State.CONNECTING)
            self._task = self._loop.create_task(self._run())
        else:
            self._enter(State.IDLE)

    def abort(self) -> None:
        """Close the stream at once (a quarantine): reconnecting starts over."""
        stream = self._stream
        if stream is not None:
            stream.abort()

    async def aclose(self) -> None:
        """Let the writer flush (bounded by ``shutdown_flush_timeout``), end the stream, close.

        A stream still connecting gets its chance too: what a node queued
        just before shutting down (a ``Terminated`` for a remote watcher, say)
        is not lost only because no stream to that peer was open yet.
        """
        if self.state is State.CLOSED:
            return
        if self.state in (State.CONNECTING, State.CONNECTED):
            try:
                await with_timeout(
                    self._clock, self._flush(), self._remoting.settings.shutdown_flush_timeout
                )
            except TimeoutError:
                _log.warning(
                    "[%s] stream to %s not flushed and ended within %s s at shutdown",
                    self._remoting.address,
                    self._address,
                    self._remoting.settings.shutdown_flush_timeout,
                )
        self.state = State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and not task.done():
            if self._stream is not None:
                self._stream.abort()  # the writer ends and the task closes the channel
            else:
                task.cancel()  # still connecting
            await asyncio.gather(task, return_exceptions=True)

    async def _flush(self) -> None:
        task = self._task
        if self.state is State.CONNECTING and task is not None:
            connected = self._connected = self._loop.create_future()
            await asyncio.wait((connected, task), return_when=asyncio.FIRST_COMPLETED)
        stream = self._stream
        if self.state is State.CONNECTED and stream is not None:
            await self._assoc.flush(stream)
