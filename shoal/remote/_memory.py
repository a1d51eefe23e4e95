"""The in-memory network: a transport for many nodes in one process, with faults as methods.

Public as :class:`shoal.remote.testing.MemoryNetwork`; see its docstring for
the semantics. Here: the pieces a connection is made of. A :class:`_Pipe` is
one direction of a connection (a queue of frames with a flow-control window,
network delay and partition stalls); a :class:`_Connection` is two pipes and
the status it ended with; endpoints and streams are thin views over them.
Everything runs on the event loop, without threads, sockets or tasks per
frame: a frame is a ``bytes`` object moved from one deque to another.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Final, NoReturn, Protocol

from ._transport import StreamClosed

if TYPE_CHECKING:
    from collections.abc import Callable

    from shoal.runtime import Cancellable, Clock

    from ._transport import Accept

_log: Final = logging.getLogger("shoal.remote")


class _End:
    """The marker a graceful end leaves in a pipe, after the frames written before it."""

    __slots__ = ()

    def __len__(self) -> int:
        return 0


_END: Final = _End()

Status = tuple[str, str]
"""(gRPC status code name, details)."""


class NetworkState(Protocol):
    """What the pipes ask the network on each frame (faults, delays, window, clock).

    Implemented by :class:`shoal.remote.testing.MemoryNetwork`.
    """

    window_bytes: int
    dropped_frames: int

    def clock(self) -> Clock: ...

    def cut(self, source: str, target: str) -> bool:
        """Whether a partition separates ``source`` from ``target``."""
        ...

    def dropping(self, source: str, target: str) -> bool:
        """Whether frames from ``source`` to ``target`` are discarded."""
        ...

    def latency(self, source: str, target: str) -> float:
        """Seconds a frame from ``source`` to ``target`` travels."""
        ...


class _Pipe:
    """One direction of a connection, from ``source`` to ``target``.

    A written frame is *in flight* until its arrival time (now + the delay
    between the two nodes, never before an earlier frame), then *readable*,
    or *held* while a partition separates the nodes (released in order by a
    heal). ``unread`` counts the bytes written and not yet read: a writer
    waits while it is at least the network's window.
    """

    __slots__ = (
        "_conn",
        "_held",
        "_in_flight",
        "_last_arrival",
        "_net",
        "_readable",
        "_reader",
        "_room",
        "_timer",
        "closed",
        "reset",
        "source",
        "target",
        "unread",
    )

    def __init__(self, conn: _Connection, source: str, target: str) -> None:
        self._conn = conn
        self._net = conn.net
        self.source = source
        self.target = target
        self._readable: deque[bytes | _End] = deque()
        self._in_flight: deque[tuple[float, bytes | _End]] = deque()
        self._held: deque[bytes | _End] = deque()
        self._last_arrival = 0.0
        self._timer: Cancellable | None = None
        self._reader: asyncio.Future[None] | None = None
        self._room: list[asyncio.Future[None]] = []
        self.unread = 0
        self.closed = False
        """The writing side ended this direction (an end marker follows the last frame)."""
        self.reset = False
        """Ended abruptly: nothing more is read."""

    # -- writing ---------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Write one frame; waits while the window is full; :class:`StreamClosed` at the end."""
        conn = self._conn
        while True:
            if conn.status is not None or self.closed:
                raise StreamClosed(conn.reason())
            if self.unread < self._net.window_bytes:
                break
            room: asyncio.Future[None] = conn.loop.create_future()
            self._room.append(room)
            await room
        if self._net.dropping(self.source, self.target):
            self._net.dropped_frames += 1
            return
        self.unread += len(data)
        self._send(data)

    def end(self) -> None:
        """End this direction gracefully: the frames written so far still arrive."""
        if not self.closed and not self.reset:
            self.closed = True
            self._send(_END)

    def _send(self, item: bytes | _End) -> None:
        net = self._net
        delay = net.latency(self.source, self.target)
        if delay <= 0 and not self._in_flight:
            self._arrive(item)
            return
        clock = net.clock()
        arrival = max(clock.now() + delay, self._last_arrival)
        self._last_arrival = arrival
        self._in_flight.append((arrival, item))
        if self._timer is None:
            self._timer = clock.call_later(arrival - clock.now(), self._land)

    def _land(self) -> None:
        self._timer = None
        clock = self._net.clock()
        now = clock.now()
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= now:
            self._arrive(in_flight.popleft()[1])
        if in_flight:
            self._timer = clock.call_later(in_flight[0][0] - now, self._land)

    def _arrive(self, item: bytes | _End) -> None:
        if self.reset:
            return
        if self._held or self._net.cut(self.source, self.target):
            self._held.append(item)
            return
        self._readable.append(item)
        self._wake_reader()

    def release(self) -> None:
        """A heal: deliver what a partition held, in order."""
        if self._held and not self._net.cut(self.source, self.target):
            self._readable.extend(self._held)
            self._held.clear()
            self._wake_reader()

    # -- reading ---------------------------------------------------------------------------

    async def read(self) -> bytes | None:
        """The next frame; ``None`` at the end (graceful, after every frame; or abrupt)."""
        while True:
            readable = self._readable
            if readable:
                item = readable[0]
                if isinstance(item, _End):
                    return None
                readable.popleft()
                self.unread -= len(item)
                if self._room and self.unread < self._net.window_bytes:
                    self.wake_writers()
                return item
            if self.reset:
                return None
            reader = self._reader = self._conn.loop.create_future()
            try:
                await reader
            finally:
                self._reader = None

    # -- ending ----------------------------------------------------------------------------

    def abort(self) -> None:
        """End abruptly: whatever was not read is lost; readers and writers wake."""
        if self.reset:
            return
        self.reset = True
        self._readable.clear()
        self._in_flight.clear()
        self._held.clear()
        self.unread = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_reader()
        self.wake_writers()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def wake_writers(self) -> None:
        room, self._room = self._room, []
        for waiter in room:
            if not waiter.done():
                waiter.set_result(None)


class _Connection:
    """A connection between a client node and a server node: two pipes and a status."""

    __slots__ = (
        "_on_end",
        "_waiters",
        "client",
        "down",
        "loop",
        "net",
        "server",
        "stall_timer",
        "status",
        "up",
    )

    def __init__(
        self, net: NetworkState, client: str, server: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.net = net
        self.loop = loop
        self.client = client
        self.server = server
        self.up = _Pipe(self, client, server)
        self.down = _Pipe(self, server, client)
        self.status: Status | None = None
        self.stall_timer: Cancellable | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._on_end: list[Callable[[], None]] = []

    def reason(self) -> str:
        if self.status is None:
            return "this side ended its stream"
        code, details = self.status
        return f"{code}: {details}" if details else code

    def on_end(self, callback: Callable[[], None]) -> None:
        self._on_end.append(callback)

    def finish(self, status: Status) -> None:
        """The server ended the call: what it wrote still arrives; the client's side is cut."""
        if self.status is not None:
            return
        self.status = status
        self.up.abort()
        self.down.end()
        self.down.wake_writers()  # a server write waiting for room fails now
        self._ended()

    def abort(self, status: Status) -> None:
        """The connection broke (or was cancelled): both directions end abruptly."""
        if self.status is None:
            self.status = status
        self.up.abort()
        self.down.abort()
        self._ended()

    def _ended(self) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback()

    async def wait(self) -> Status:
        """Wait until the connection has ended; its status."""
        while self.status is None:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._waiters.append(waiter)
            await waiter
        return self.status

    def release(self) -> None:
        self.up.release()
        self.down.release()


class Aborted(Exception):
    """Raised by a memory server call's ``abort`` to end its handler (caught by the runner)."""


class MemoryServerCall:
    """The accepting side of a memory connection (see ``ServerCall``)."""

    __slots__ = ("_conn", "read", "write")

    eof: Final[object] = None

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.read = conn.up.read
        self.write = conn.down.write

    async def abort(self, code: str, detail: str) -> NoReturn:
        self._conn.finish((code, detail))
        raise Aborted(f"{code}: {detail}")

    def peer(self) -> str:
        return f"memory:{self._conn.client}"


class MemoryClientStream:
    """The connecting side of a memory connection (see ``ClientStream``)."""

    __slots__ = ("_conn", "_owner", "finished", "peer_uid", "wakeup")

    peer_side = False

    def __init__(self, conn: _Connection, owner: set[_Connection]) -> None:
        self._conn = conn
        self._owner = owner
        self.peer_uid = 0
        self.finished = False
        self.wakeup: asyncio.Future[None] | None = None
        conn.on_end(self._on_end)

    def _on_end(self) -> None:
        self.finished = True
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def write(self, data: bytes) -> None:
        try:
            await self._conn.up.write(data)
        except StreamClosed:
            self.finished = True
            raise

    async def read(self) -> bytes | None:
        return await self._conn.down.read()

    async def end_status(self) -> Status:
        return await self._conn.wait()

    async def status(self) -> str:
        await self._conn.wait()
        return self._conn.reason()

    async def done_writing(self) -> None:
        self._conn.up.end()

    async def wait_finished(self) -> None:
        await self._conn.wait()

    def abort(self) -> None:
        self._conn.abort(("CANCELLED", "cancelled by the client"))

    async def close(self) -> None:
        self.abort()
        self._owner.discard(self._conn)


class MemoryEndpoint:
    """A node bound on a memory network at ``name`` (``host:port``)."""

    def __init__(
        self,
        net: NetworkState,
        name: str,
        port: int,
        accept: Accept,
        connect: Callable[[MemoryEndpoint, str], _Connection],
        unbind: Callable[[MemoryEndpoint], None],
    ) -> None:
        self.port = port
        self.name = name
        self.accepting = False
        self.closed = False
        self.served: set[_Connection] = set()
        self.opened: set[_Connection] = set()
        self._net = net
        self._accept = accept
        self._connect = connect
        self._unbind = unbind
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.accepting = True

    async def connect(self, address: str) -> MemoryClientStream:
        conn = self._connect(self, address)
        self.opened.add(conn)
        return MemoryClientStream(conn, self.opened)

    def serve(self, conn: _Connection) -> None:
        """Run the accept handler of an arriving connection in a task of its own."""
        self.served.add(conn)
        task = conn.loop.create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: _Connection) -> None:
        try:
            await self._accept(MemoryServerCall(conn))
        except Aborted:
            pass  # the status is set
        except asyncio.CancelledError:
            if conn.status is None:  # else it ended first: keep what it still delivers
                conn.abort(("CANCELLED", "the server cancelled the call"))
            raise
        except Exception as exc:
            _log.exception("memory network: the handler of a call to %s failed", self.name)
            conn.finish(("UNKNOWN", f"{type(exc).__name__}: {exc}"))
        else:
            conn.finish(("OK", ""))
        finally:
            self.served.discard(conn)

    def kill(self, why: str) -> None:
        """End every connection of this node abruptly."""
        for conn in [*self.served, *self.opened]:
            conn.abort(("UNAVAILABLE", why))
        self.opened.clear()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.accepting = False
        self._unbind(self)
        for conn in list(self.served):
            conn.finish(("UNAVAILABLE", f"{self.name} closed its endpoint"))
        for conn in list(self.opened):
            conn.abort(("CANCELLED", f"{self.name} closed its endpoint"))
        self.opened.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<MemoryEndpoint {self.name}{' closed' if self.closed else ''}>"
