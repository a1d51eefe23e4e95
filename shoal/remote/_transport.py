"""The transport seam: what remoting needs from a network, and what it may rely on.

Remoting (handshake, batching, links, death watch) is written against the
protocols below; :mod:`._grpc` implements them over gRPC between processes,
:mod:`._memory` over an in-memory network with fault methods (tests and
simulations of many nodes in one process). The same remoting code runs on
both.

The contract every transport keeps:

* **Streams, not packets.** A node *connects* to an address and gets a
  :class:`ClientStream`; the node listening there accepts it as a
  :class:`ServerCall`. One connection carries frames (``bytes``, at most
  ``RemoteSettings.max_frame_bytes`` each) in both directions.
* **Ordered per direction.** Frames written in one direction are read in
  the order they were written. The two directions are independent.
* **Reliable until the end.** Every frame written is read, in order, until
  the connection ends; then the rest is lost. What was written just before
  a failure may or may not have arrived: the writer cannot tell (remoting is
  at-most-once and never retries a frame). A graceful end (the client's
  ``done_writing``, the server's handler returning, an endpoint closing)
  still delivers what was written before it; an abrupt one (a reset, a lost
  peer, a keepalive timeout, ``abort``) may drop it.
* **A send may block.** ``write`` awaits while the peer has not read enough
  of what was sent (flow control: gRPC's HTTP/2 window, the memory network's
  ``window_bytes``); remoting bounds what waits behind it with the
  association's ``outbox_capacity``. ``write`` raises :class:`StreamClosed`
  once the connection has ended; it never blocks past the end.
* **A partition stalls, then breaks.** Frames between cut-off nodes stop
  flowing and writers end up waiting for the window; a connection that stays
  cut off past the keepalive timeout (gRPC: ``keepalive_time_ms`` +
  ``keepalive_timeout_ms``, ~15 s; the memory network: ``stall_timeout``)
  ends abruptly. New connections across a partition fail. Remoting's link
  then reconnects with backoff (``RemoteSettings.backoff_*``) until the
  partition heals.
* **The transport only moves frames.** Shoal's handshake (addresses,
  incarnations, cluster name and secret), refusals and quarantine are
  remoting's, written as ordinary frames (see :mod:`._handshake`); a refusal
  ends the call with one of :data:`REFUSAL_CODES`. Authentication below the
  frames (mutual TLS) is the transport's.
* **One event loop.** Every method is called on the node's event loop; none
  blocks the loop. Status codes are gRPC's status code *names* (``"OK"``,
  ``"UNAVAILABLE"``, ``"PERMISSION_DENIED"``...) on every transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

if TYPE_CHECKING:
    import asyncio

    from shoal.runtime import Clock

    from ._settings import RemoteSettings

# A peer that refuses a handshake ends the call with one of these.
REFUSAL_CODES: Final = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION"})


class Refused(Exception):
    """The peer refused our handshake (or we refuse the incarnation that answered)."""


class Quarantined(Refused):
    """The peer answered as an incarnation this node has quarantined."""


class StreamClosed(Exception):
    """The stream ended or could not be opened (the peer is unreachable)."""


class ServerCall(Protocol):
    """The accepting side of one connection, handed to the node's accept handler.

    ``read`` and ``write`` are attributes (for gRPC, the servicer context's
    own bound methods: no extra await per frame).
    """

    @property
    def read(self) -> Callable[[], Awaitable[Any]]:
        """The next frame the peer wrote (``bytes``), or :attr:`eof` once it ended
        its side or the connection ended."""

    @property
    def write(self) -> Callable[[bytes], Awaitable[None]]:
        """Write one frame back to the peer; raises (any exception) once the
        connection has ended. May wait for flow control."""

    @property
    def eof(self) -> object:
        """What :attr:`read` returns at the end."""

    async def abort(self, code: str, detail: str) -> NoReturn:
        """End the connection with status ``code`` (a gRPC status code name) and
        ``detail``, then raise to end the handler (do not catch it)."""

    def peer(self) -> str:
        """A description of the peer's end, for logs (not an identity)."""


class Stream(Protocol):
    """A handshaken connection on which this node writes to one peer (either side)."""

    finished: bool
    """The connection has ended (or is no longer to be written)."""
    wakeup: asyncio.Future[None] | None
    """The writer's idle wait, completed when the connection ends."""
    peer_uid: int
    peer_side: bool
    """Whether the peer opened the connection (this node writes from the server side)."""

    async def write(self, data: bytes) -> None:
        """Write one frame; raises :class:`StreamClosed` if the connection has ended."""

    async def status(self) -> str:
        """Why the connection ended."""

    async def done_writing(self) -> None:
        """End this node's side of the connection, if it can."""

    async def wait_finished(self) -> None:
        """Wait until the connection has ended."""

    def abort(self) -> None:
        """Stop using the connection now."""

    async def close(self) -> None:
        """Release what the connection holds."""


class ClientStream(Stream, Protocol):
    """A connection this node opened; the peer may write back on it (:meth:`read`)."""

    async def read(self) -> bytes | None:
        """The next frame the peer wrote; ``None`` once the connection has ended."""

    async def end_status(self) -> tuple[str, str]:
        """Wait for the end of the connection: its status code name and details."""


Accept = Callable[[ServerCall], Awaitable[None]]
"""The node's handler of an accepted connection; the connection ends when it returns."""


class Endpoint(Protocol):
    """One node's presence on a transport: it listens at :attr:`port` and dials peers."""

    port: int
    """The port listened on (``settings.port``, or the one picked for ``0``)."""

    async def start(self) -> None:
        """Start accepting connections (handed to the ``accept`` handler)."""

    async def connect(self, address: str) -> ClientStream:
        """Open a connection to the node at ``address`` (``system@host:port``).

        No frame is exchanged yet. Raises :class:`StreamClosed` if it cannot
        be opened; a transport may instead report that on the first
        ``read``/``write`` (gRPC connects lazily).
        """

    async def close(self) -> None:
        """Stop listening and end every connection of this endpoint. Idempotent."""


class Transport(Protocol):
    """A network nodes are reached over (see the module docstring for the contract).

    ``RemoteSettings.transport`` holds one; ``None`` there means gRPC.
    """

    async def bind(self, settings: RemoteSettings, clock: Clock, accept: Accept) -> Endpoint:
        """Bind ``settings.host:settings.port`` for a node whose clock is ``clock``.

        Connections arriving once the endpoint is started are handed to
        ``accept``, each in a task of its own. Raises
        :class:`~shoal.remote.RemotingStartError` if the address cannot be
        bound (or the TLS files cannot be read).
        """


class InboundStream:
    """The server side of a connection a peer opened to this node, once handshaken.

    The peer writes its traffic on the connection; this node may write its
    own traffic to the peer back on it, instead of opening a connection of
    its own. It can be written until the peer's handler ends (:meth:`ended`);
    a server cannot end a gRPC call from outside that handler, so
    :meth:`abort` only stops this node from writing.
    """

    __slots__ = ("_ended", "_write", "finished", "peer_uid", "wakeup")

    peer_side = True

    def __init__(self, call: ServerCall, peer_uid: int) -> None:
        self._write = call.write
        self.peer_uid = peer_uid
        self.finished = False
        self.wakeup: asyncio.Future[None] | None = None
        self._ended = "aborted by this node"

    def ended(self, why: str) -> None:
        """The handler is ending: the connection can no longer be written."""
        if not self.finished:
            self._ended = why
        self.abort()

    async def write(self, data: bytes) -> None:
        if self.finished:
            raise StreamClosed(self._ended)
        try:
            await self._write(data)
        except Exception as exc:  # AbortError, InvalidStateError, UsageError, StreamClosed...
            self.finished = True
            raise StreamClosed(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc

    async def status(self) -> str:
        return self._ended

    async def done_writing(self) -> None:
        """Nothing to do: the connection ends when the peer ends its side."""

    async def wait_finished(self) -> None:
        """Nothing to wait for (see :meth:`done_writing`)."""

    def abort(self) -> None:
        self.finished = True
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def close(self) -> None:
        self.abort()
