"""The gRPC plumbing: server, channels, TLS credentials, and the two kinds of stream.

A node writes to a peer on one :class:`Stream` at a time: the call it opened
to the peer (:class:`OutboundStream`), or the call the peer opened to it
(:class:`InboundStream`, written from the server side). Frames travel as raw
bytes (no serializer on either side) so the transport controls parsing, size
checks and copies itself; :mod:`._wire` does the encoding.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import grpc
import grpc.aio

from shoal._proto import remote_pb2 as pb

from ._errors import RemotingStartError
from ._timeout import with_timeout
from ._wire import FrameError, decode_frame, encode_handshake

if TYPE_CHECKING:
    from ._remoting import Remoting
    from ._settings import RemoteSettings, TlsSettings

SERVICE: Final = pb.DESCRIPTOR.services_by_name["Remoting"].full_name
METHOD: Final = f"/{SERVICE}/Stream"
EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]

# A peer that refuses our handshake ends the call with one of these.
REFUSAL_CODES: Final = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class Refused(Exception):
    """The peer refused our handshake (or we refuse the incarnation that answered)."""


class Quarantined(Refused):
    """The peer answered as an incarnation this node has quarantined."""


class StreamClosed(Exception):
    """The outbound stream ended or could not be opened (the peer is unreachable)."""


class Credentials:
    """TLS material read from the configured files (``None`` fields: plaintext)."""

    def __init__(self, tls: TlsSettings | None) -> None:
        self.server: grpc.ServerCredentials | None = None
        self.channel: grpc.ChannelCredentials | None = None
        self.server_name = tls.server_name if tls is not None else None
        if tls is None:
            return
        try:
            cert = Path(tls.cert_file).read_bytes()
            key = Path(tls.key_file).read_bytes()
            ca = Path(tls.ca_file).read_bytes()
        except OSError as exc:
            raise RemotingStartError(f"cannot read TLS files: {exc}") from exc
        self.server = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )
        self.channel = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


def start_server(
    settings: RemoteSettings, credentials: Credentials, handler: Any
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server with the Remoting service bound to ``host:port``; returns it and its port."""
    server = grpc.aio.server(
        options=[
            # Frames up to twice the limit reach the transport, which counts
            # and logs them; gRPC silently ends the stream beyond that.
            ("grpc.max_receive_message_length", settings.max_frame_bytes * 2),
            # The server side of a peer's call carries this node's traffic too.
            ("grpc.max_send_message_length", settings.max_frame_bytes),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            # Peers' calls carry this node's traffic too: notice a peer that
            # went silent as soon as on a call of this node's own.
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.so_reuseport", 0),
        ]
    )
    method = grpc.stream_stream_rpc_method_handler(handler)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Stream": method}),)
    )
    host = settings.host
    bind = f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"
    try:
        if credentials.server is not None:
            port = server.add_secure_port(bind, credentials.server)
        else:
            port = server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise RemotingStartError(f"cannot listen on {bind}: {exc}") from exc
    if port == 0:
        raise RemotingStartError(f"cannot listen on {bind}")
    return server, port


def _channel(target: str, settings: RemoteSettings, credentials: Credentials) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", settings.max_frame_bytes),
        ("grpc.max_receive_message_length", settings.max_frame_bytes * 2),
        # Each association owns its connection: a shared subchannel would
        # outlive a reconnect and tie its backoff to gRPC's instead of ours.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
    ]
    if credentials.channel is None:
        return grpc.aio.insecure_channel(target, options=options)
    if credentials.server_name:
        options.append(("grpc.ssl_target_name_override", credentials.server_name))
    return grpc.aio.secure_channel(target, credentials.channel, options=options)


def _target(address: str) -> str:
    _, _, host_port = address.partition("@")
    return host_port


class Stream(Protocol):
    """A handshaken call on which this node writes to one peer (either direction)."""

    finished: bool
    """The call has ended (or is no longer to be written)."""
    wakeup: asyncio.Future[None] | None
    """The writer's idle wait, completed when the call ends."""
    peer_uid: int
    peer_side: bool
    """Whether the peer opened the call (this node writes from the server side)."""

    async def write(self, data: bytes) -> None:
        """Write one frame; raises :class:`StreamClosed` if the call has ended."""

    async def status(self) -> str:
        """Why the call ended."""

    async def done_writing(self) -> None:
        """End this node's side of the call, if it can."""

    async def wait_finished(self) -> None:
        """Wait until the call has ended."""

    def abort(self) -> None:
        """Stop using the call now."""

    async def close(self) -> None:
        """Release what the call holds."""


class OutboundStream:
    """One open, handshaken call this node opened to a peer.

    This node writes its traffic on it; the peer may write its own traffic
    back on the same call (see :class:`InboundStream`), read with :meth:`read`.
    """

    __slots__ = ("_call", "_channel", "finished", "peer_uid", "wakeup")

    peer_side = False

    def __init__(self, channel: grpc.aio.Channel, call: Any, peer_uid: int) -> None:
        self._channel = channel
        self._call = call
        self.peer_uid = peer_uid
        self.finished = False
        self.wakeup: asyncio.Future[None] | None = None
        call.add_done_callback(self._on_done)

    def _on_done(self, _call: object) -> None:
        # The peer ended the call (or the connection broke): wake an idle writer.
        self.finished = True
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def write(self, data: bytes) -> None:
        try:
            await self._call.write(data)
        except Exception as exc:  # AioRpcError, InvalidStateError, ExecuteBatchError...
            self.finished = True
            raise StreamClosed(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc

    async def read(self) -> bytes | None:
        """The next frame the peer wrote back; ``None`` once the call has ended."""
        try:
            data = await self._call.read()
        except Exception:  # AioRpcError, InvalidStateError...: the call is over
            self._on_done(self._call)
            return None
        return data if isinstance(data, bytes) else None

    async def status(self) -> str:
        code = await self._call.code()
        details = await self._call.details()
        return f"{code.name}: {details}" if details else str(code.name)

    async def done_writing(self) -> None:
        if not self.finished:
            try:
                await self._call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                self.finished = True

    async def wait_finished(self) -> None:
        await self._call.code()

    def abort(self) -> None:
        self._call.cancel()

    async def close(self) -> None:
        self._call.cancel()
        await self._channel.close(None)


class InboundStream:
    """The server side of a call a peer opened to this node, once handshaken.

    The peer writes its traffic on the call; this node may write its own
    traffic to the peer back on it, instead of opening a call of its own.
    It can be written until the peer's handler ends (:meth:`ended`); a
    server cannot end a call from outside that handler, so :meth:`abort`
    only stops this node from writing.
    """

    __slots__ = ("_context", "_ended", "finished", "peer_uid", "wakeup")

    peer_side = True

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], peer_uid: int) -> None:
        self._context = context
        self.peer_uid = peer_uid
        self.finished = False
        self.wakeup: asyncio.Future[None] | None = None
        self._ended = "aborted by this node"

    def ended(self, why: str) -> None:
        """The handler is ending: the call can no longer be written."""
        if not self.finished:
            self._ended = why
        self.abort()

    async def write(self, data: bytes) -> None:
        if self.finished:
            raise StreamClosed(self._ended)
        try:
            await self._context.write(data)
        except Exception as exc:  # AbortError, InvalidStateError, UsageError...
            self.finished = True
            raise StreamClosed(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc

    async def status(self) -> str:
        return self._ended

    async def done_writing(self) -> None:
        """Nothing to do: the call ends when the peer ends its side."""

    async def wait_finished(self) -> None:
        """Nothing to wait for (see :meth:`done_writing`)."""

    def abort(self) -> None:
        self.finished = True
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def close(self) -> None:
        self.abort()


async def open_stream(remoting: Remoting, address: str) -> OutboundStream:
    """Connect to ``address``, handshake, and return the open stream.

    Raises :class:`Refused` when the peer refuses the handshake or answers
    as another node, :class:`StreamClosed` when it cannot be reached, and
    ``TimeoutError`` after ``handshake_timeout`` on the system clock.
    """
    settings = remoting.settings
    channel = _channel(_target(address), settings, remoting.credentials)
    try:
        call: Any = channel.stream_stream(METHOD, None, None)(None)
        hello = encode_handshake(
            remoting.address, remoting.uid, address, settings.cluster_name, settings.cluster_secret
        )
        data = await with_timeout(
            remoting.system.clock, _handshake(call, hello), settings.handshake_timeout
        )
        return OutboundStream(channel, call, _peer_uid(data, address, settings.max_frame_bytes))
    except grpc.aio.AioRpcError as exc:
        await channel.close(None)
        if exc.code() in REFUSAL_CODES:
            raise Refused(f"{exc.code().name}: {exc.details()}") from None
        raise StreamClosed(f"{exc.code().name}: {exc.details()}") from None
    except BaseException:
        await channel.close(None)
        raise


def _peer_uid(data: object, address: str, max_bytes: int) -> int:
    """The uid in the peer's handshake answer; raises if it is not the expected node."""
    if not isinstance(data, bytes):
        raise StreamClosed(f"{address} ended the stream during the handshake")
    try:
        kind, frame = decode_frame(data, max_bytes)
    except FrameError as exc:
        raise Refused(f"bad handshake answer: {exc}") from None
    if kind != "handshake_ack":
        raise Refused("the peer did not answer the handshake with an acknowledgement")
    ack = frame.handshake_ack
    if ack.address != address:
        raise Refused(f"the node at {_target(address)} is {ack.address}, not {address}")
    return ack.uid


async def _handshake(call: Any, hello: bytes) -> Any:
    await call.write(hello)
    return await call.read()
