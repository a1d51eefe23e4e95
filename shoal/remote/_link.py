"""This node's stream to one peer: connecting, handshaking, backing off, closing.

A node writes everything for a peer on one stream at a time: a call it opened
to the peer, or the call the peer opened to it (written from the server
side). Whichever node connects first, one call then carries the traffic both
ways; a node opens a call of its own only when the peer has none open to it.
Per direction there is still one ordered stream, so per sender/receiver pair
order is kept.

Lifecycle (``Link.state``), an explicit state machine; an invalid transition
raises (a bug, caught by the tests)::

    IDLE --first envelope--> CONNECTING --ack--> CONNECTED --stream lost--> BACKOFF
    IDLE | BACKOFF --the peer's call arrives--> CONNECTED (written from the server side)
    CONNECTING --failure/refused/timeout--> BACKOFF --timer--> CONNECTING | CONNECTED | IDLE
    any --aclose()--> CLOSED

One task at a time owns the stream: it opens it (handshake included) or
adopts the peer's, then runs the association's writer until the stream ends.
An unexpected exception in that task (a bug, not a network failure) is
caught, counted (``link_crashes``) and logged, and the link backs off and
restarts like after a lost stream: a peer is never left stuck.

A node dials only addresses its own code asked to reach
(:meth:`Remoting.may_dial`): an address merely named in a peer's frame (a
sender, a ref inside a message) is written to only on a call that peer opened
to this node. Otherwise the link waits in BACKOFF as for an unreachable peer,
and after ``unreachable_drop_after`` this node gives up on what waits for it
(:meth:`Association.give_up`); the same happens when reconnecting keeps
failing for that long.
A call this node opened is also read: the peer may write on it. Every delay
is on the system clock: the handshake timeout, the backoff (see
``RemoteSettings``), and how long the association's outbox is kept for an
unreachable peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from ._backoff import reconnect_backoff
from ._errors import NodeGoneError
from ._events import PeerConnected, PeerDisconnected, peer_address
from ._handshake import open_stream
from ._timeout import with_timeout
from ._transport import Quarantined, Refused, StreamClosed
from ._wire import FrameError

if TYPE_CHECKING:
    from shoal.runtime import Cancellable

    from ._association import Association
    from ._remoting import Remoting
    from ._transport import ClientStream, InboundStream, Stream

_log: Final = logging.getLogger("shoal.remote")


class NotDialable(Exception):
    """The address was only named by peers: this node does not open calls to it."""


class State(Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


_TRANSITIONS: Final = {
    State.IDLE: {State.CONNECTING, State.CONNECTED, State.CLOSED},
    State.CONNECTING: {State.CONNECTED, State.BACKOFF, State.CLOSED},
    State.CONNECTED: {State.BACKOFF, State.CLOSED},
    State.BACKOFF: {State.CONNECTING, State.CONNECTED, State.IDLE, State.CLOSED},
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
        self._stream: Stream | None = None
        self._offered: InboundStream | None = None
        """The latest call the peer opened to this node, which it may write on."""
        self._ending: set[asyncio.Task[None]] = set()
        """Earlier tasks still closing their stream when a newer one took over."""
        self._timer: Cancellable | None = None
        self._attempt = 0
        self._unreachable_since: float | None = None
        self._give_up_timer: Cancellable | None = None
        self._last_error = ""
        self._refusing: str | None = None
        self._connected: asyncio.Future[None] | None = None
        """Set while closing waits for a stream that is still connecting."""

    def _enter(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"link to {self._address}: {self.state} -> {state} is invalid")
        self.state = state

    def start(self) -> None:
        """Connect (from IDLE): there is something to send."""
        self._connect()

    def is_idle(self) -> bool:
        """No stream, none being opened, no retry pending, and no call of the peer's to use."""
        return self.state is State.IDLE and self._usable_offer() is None

    def _usable_offer(self) -> InboundStream | None:
        """The peer's call to write on, if there is one still open and not quarantined."""
        offered = self._offered
        if offered is None:
            return None
        if offered.finished or self._remoting.is_quarantined(self._address, offered.peer_uid):
            self._offered = None
            return None
        return offered

    def _connect(self) -> None:
        previous = self._task
        if previous is not None and not previous.done():
            self._ending.add(previous)  # still closing its stream; awaited by aclose
            previous.add_done_callback(self._ending.discard)
        offered = self._usable_offer()
        if offered is not None:
            self._enter(State.CONNECTED)
            self._task = self._loop.create_task(self._guard(self._run_adopted(offered)))
        elif not self._remoting.may_dial(self._address):
            self._enter(State.CONNECTING)
            self._task = None
            self._failed(
                NotDialable(
                    f"{self._address} was only named by peers and has no call open to "
                    "this node (a node dials only addresses its own code resolved)"
                )
            )
        else:
            self._enter(State.CONNECTING)
            self._task = self._loop.create_task(self._guard(self._run()))

    async def _guard(self, run: Coroutine[Any, Any, None]) -> None:
        """Run the link's task; an unexpected exception restarts the link instead of
        leaving it stuck in CONNECTING or CONNECTED."""
        try:
            await run
        except Exception as exc:
            remoting = self._remoting
            remoting.metrics.link_crashes += 1
            remoting.bad_log.report(
                "link-crash",
                "[%s] the link to %s failed unexpectedly, restarting it: %r",
                remoting.address,
                self._address,
                exc,
                exc_info=True,
            )
            if self._task is asyncio.current_task():
                self._stream = None
                self._failed(exc)

    def has_stream_of(self, uid: int) -> bool:
        """Whether a call with incarnation ``uid`` of the peer is open (either direction)."""
        return any(
            stream is not None and stream.peer_uid == uid and not stream.finished
            for stream in (self._stream, self._offered)
        )

    def incarnation_replaced(self, old_uid: int) -> None:
        """The peer restarted: stop writing on a call of its old incarnation at once."""
        offered = self._offered
        if offered is not None and offered.peer_uid == old_uid:
            self._offered = None
        stream = self._stream
        if stream is not None and stream.peer_uid == old_uid:
            stream.abort()

    def offer(self, stream: InboundStream) -> None:
        """The peer opened a call to this node (handshake accepted): write on it
        unless this node already has a stream or is opening one."""
        if self.state is State.CLOSED:
            return
        self._offered = stream
        if self.state in (State.IDLE, State.BACKOFF):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._connect()

    def _connected_to(self, stream: Stream) -> None:
        self._stream = stream
        event = PeerConnected(peer_address(self._address, stream.peer_uid))
        self._remoting.system.event_stream.publish(event)
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)
        self._attempt = 0
        self._unreachable_since = None
        self._refusing = None
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        self._assoc.reachable()

    def _give_up(self) -> None:
        """``unreachable_drop_after`` elapsed since the peer became unreachable."""
        self._give_up_timer = None
        if self.state in (State.CONNECTED, State.CLOSED):
            return
        remoting = self._remoting
        why = (
            f"{self._address} unreachable for {remoting.settings.unreachable_drop_after:g} s "
            f"(last error: {self._last_error or 'none'})"
        )
        remoting.link_log.report("unreachable", "[%s] giving up on %s", remoting.address, why)
        self._assoc.give_up(why)

    async def _run_adopted(self, stream: InboundStream) -> None:
        self._connected_to(stream)
        _log.debug(
            "[%s] writing to %s on its stream (uid %d)",
            self._remoting.address,
            self._address,
            stream.peer_uid,
        )
        try:
            await self._assoc.write_loop(stream)
        except StreamClosed as exc:
            self._failed(exc)
        finally:
            self._stream = None
            if self._offered is stream:
                self._offered = None

    async def _run(self) -> None:
        remoting = self._remoting
        stream: ClientStream | None = None
        try:
            stream = await open_stream(remoting, self._address)
            uid = self._accept_incarnation(stream.peer_uid)
            self._enter(State.CONNECTED)
            self._connected_to(stream)
            remoting.metrics.connects += 1
            _log.info("[%s] connected to %s (uid %d)", remoting.address, self._address, uid)
            reader = self._loop.create_task(self._read(stream))
            try:
                await self._assoc.write_loop(stream)
            except asyncio.CancelledError:
                reader.cancel()
                raise
            finally:
                if not stream.finished:
                    stream.abort()  # the writer failed otherwise than by the call ending
                # The call is over: the reader takes what arrived before its
                # end, then stops by itself.
                await asyncio.gather(reader, return_exceptions=True)
        except (Refused, StreamClosed, TimeoutError, OSError) as exc:
            self._failed(exc)
        finally:
            self._stream = None
            if stream is not None:
                await stream.close()

    async def _read(self, stream: ClientStream) -> None:
        """Deliver what the peer writes back on the call this node opened.

        A frame that breaks the protocol is counted and logged, and ends the
        call (the writer then reconnects, as after any lost stream).
        """
        remoting = self._remoting
        receive = remoting.inbound.receive
        assoc = self._assoc
        quarantined = remoting.quarantined
        peer = (self._address, stream.peer_uid)
        while True:
            data = await stream.read()
            if data is None:
                return
            if peer in quarantined:
                stream.abort()  # quarantined meanwhile: nothing more from it is delivered
                return
            try:
                await receive(data, assoc)
            except FrameError as exc:
                remoting.metrics.count_bad(exc.kind)
                remoting.bad_log.report(
                    exc.kind,
                    "[%s] dropping stream to %s: %s",
                    remoting.address,
                    self._address,
                    exc,
                )
                stream.abort()
                return

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
        self._last_error = str(exc) or type(exc).__name__
        if self._unreachable_since is None:
            self._unreachable_since = now
            self._give_up_timer = self._clock.call_later(
                remoting.settings.unreachable_drop_after, self._give_up
            )
        refused = isinstance(exc, Refused)
        # A peer (or a flapping network) can make these happen at line rate.
        if refused and self._refusing != str(exc):
            remoting.bad_log.report(
                "refused-us", "[%s] %s refused us: %s", remoting.address, self._address, exc
            )
        elif was_connected:
            remoting.link_log.report(
                "lost-stream", "[%s] lost stream to %s: %s", remoting.address, self._address, exc
            )
        elif self._attempt == 0:
            remoting.link_log.report(
                "cannot-reach", "[%s] cannot reach %s: %s", remoting.address, self._address, exc
            )
        if was_connected and self._stream is not None:
            peer = peer_address(self._address, self._stream.peer_uid)
            remoting.system.event_stream.publish(PeerDisconnected(peer, str(exc) or repr(exc)))
        self._refusing = str(exc) if refused else None
        if isinstance(exc, Quarantined):
            assoc.drop_outbox("remote-quarantined", NodeGoneError, control=True)
        elif refused:
            # A refusal is a decision of the peer, not a network blip: waiting
            # will not deliver these.
            assoc.drop_outbox(
                "remote-refused", why=f"remote-refused, {self._address} refused this node: {exc}"
            )
        delay = reconnect_backoff(remoting.settings).delay(self._attempt, remoting.rng.random())
        self._attempt += 1
        offered = self._usable_offer()
        if offered is not None and offered is not self._stream:
            # The peer has opened a newer call meanwhile: write on it at once.
            self._loop.call_soon(self._retry)
            return
        self._timer = self._clock.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self.state is not State.BACKOFF:
            return
        if self._assoc.has_work() or self._usable_offer() is not None:
            self._connect()
        else:
            # Nothing waits for the peer: nothing to give up on either.
            self._enter(State.IDLE)
            self._unreachable_since = None
            if self._give_up_timer is not None:
                self._give_up_timer.cancel()
                self._give_up_timer = None

    def abort(self) -> None:
        """Stop writing on the stream at once (a quarantine): reconnecting starts over."""
        offered, self._offered = self._offered, None
        if offered is not None:
            offered.abort()
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
        self._offered = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        task = self._task
        stream = self._stream
        if task is not None and not task.done():
            if stream is not None:
                stream.abort()  # the writer ends and the task closes the channel
            if stream is None or stream.peer_side:
                # Still connecting, or writing on the peer's call: a server-side
                # write held up by flow control does not end with abort().
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)

    async def _flush(self) -> None:
        task = self._task
        if self.state is State.CONNECTING and task is not None:
            connected = self._connected = self._loop.create_future()
            await asyncio.wait((connected, task), return_when=asyncio.FIRST_COMPLETED)
        stream = self._stream
        if self.state is State.CONNECTED and stream is not None:
            await self._assoc.flush(stream)
