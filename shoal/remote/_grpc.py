"""The gRPC transport: server, channels, TLS credentials, and the two ends of a call.

One bidirectional ``Remoting/Stream`` call is one connection of the
transport contract (:mod:`._transport`): the node that opened it holds a
:class:`GrpcClientStream`, the other node serves it through a
:class:`GrpcServerCall`. Frames travel as raw bytes (no serializer on either
side) so remoting controls parsing, size checks and copies itself;
:mod:`._wire` does the encoding. Flow control is HTTP/2's; a silent peer is
noticed by keepalive pings within ``RemoteSettings.keepalive_interval +
keepalive_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import grpc
import grpc.aio

from shoal._proto import remote_pb2 as pb

from ._errors import RemotingStartError
from ._transport import Accept, StreamClosed

if TYPE_CHECKING:
    from shoal.runtime import Clock

    from ._settings import RemoteSettings, TlsSettings

SERVICE: Final = pb.DESCRIPTOR.services_by_name["Remoting"].full_name
METHOD: Final = f"/{SERVICE}/Stream"
EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]


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


def _start_server(
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
            # Peers' calls carry this node's traffic too: notice a peer that
            # went silent as soon as on a call of this node's own.
            *_keepalive_options(settings),
            # Accept the peers' pings (same settings) with a margin for timer
            # jitter; gRPC answers pings more frequent than this with GOAWAY.
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                max(1, int(settings.keepalive_interval * 500)),
            ),
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


def _keepalive_options(settings: RemoteSettings) -> list[tuple[str, int]]:
    """Keepalive pings on both ends of a connection (``RemoteSettings.keepalive_*``)."""
    return [
        ("grpc.keepalive_time_ms", int(settings.keepalive_interval * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # By default gRPC stops pinging after two pings without data: a
        # partition of an idle stream would then go unnoticed.
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _channel(target: str, settings: RemoteSettings, credentials: Credentials) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", settings.max_frame_bytes),
        ("grpc.max_receive_message_length", settings.max_frame_bytes * 2),
        # Each association owns its connection: a shared subchannel would
        # outlive a reconnect and tie its backoff to gRPC's instead of ours.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),
        *_keepalive_options(settings),
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


class GrpcTransport:
    """Remoting over gRPC (HTTP/2 over TCP, optionally mutual TLS): the default transport.

    Stateless: one instance may serve any number of nodes. The contract is
    in :mod:`shoal.remote._transport`; gRPC specifics: flow control is
    HTTP/2's window, a peer that stops answering is detected by keepalive
    pings (``RemoteSettings.keepalive_interval + keepalive_timeout``, 15 s
    by default), and connecting is lazy (an unreachable address shows
    as the first read failing with ``UNAVAILABLE``).
    """

    async def bind(self, settings: RemoteSettings, clock: Clock, accept: Accept) -> GrpcEndpoint:
        credentials = await asyncio.to_thread(Credentials, settings.tls)

        async def handler(request_iterator: object, context: Any) -> None:
            await accept(GrpcServerCall(context))

        server, port = _start_server(settings, credentials, handler)
        return GrpcEndpoint(server, port, settings, credentials)

    def __repr__(self) -> str:
        return "GrpcTransport()"


class GrpcEndpoint:
    """A node's gRPC server and the channels it opens (one per connection)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        settings: RemoteSettings,
        credentials: Credentials,
    ) -> None:
        self.port = port
        self._server = server
        self._settings = settings
        self._credentials = credentials
        self._streams: set[GrpcClientStream] = set()
        self._closed = False

    async def start(self) -> None:
        await self._server.start()

    async def connect(self, address: str) -> GrpcClientStream:
        if self._closed:
            raise StreamClosed("the endpoint is closed")
        channel = _channel(_target(address), self._settings, self._credentials)
        call: Any = channel.stream_stream(METHOD, None, None)(None)
        stream = GrpcClientStream(channel, call, self._streams)
        self._streams.add(stream)
        return stream

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            await stream.close()
        await self._server.stop(None)


class GrpcServerCall:
    """The server side of a peer's call: ``read``/``write`` are the context's own methods."""

    __slots__ = ("_context", "read", "write")

    eof: Final[object] = EOF

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self.read: Callable[[], Awaitable[Any]] = context.read
        self.write: Callable[[bytes], Awaitable[None]] = context.write

    async def abort(self, code: str, detail: str) -> NoReturn:
        await self._context.abort(grpc.StatusCode[code], detail)
        raise AssertionError("unreachable: abort() raises")  # pragma: no cover

    def peer(self) -> str:
        return str(self._context.peer())


class GrpcClientStream:
    """One call this node opened to a peer.

    This node writes its traffic on it; the peer may write its own traffic
    back on the same call (see :class:`~._transport.InboundStream`), read
    with :meth:`read`. ``peer_uid`` is set once the handshake told it.
    """

    __slots__ = ("_call", "_channel", "_owner", "finished", "peer_uid", "wakeup")

    peer_side = False

    def __init__(self, channel: grpc.aio.Channel, call: Any, owner: set[GrpcClientStream]) -> None:
        self._channel = channel
        self._call = call
        self._owner = owner
        self.peer_uid = 0
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
        try:
            data = await self._call.read()
        except Exception:  # AioRpcError, InvalidStateError...: the call is over
            self._on_done(self._call)
            return None
        return data if isinstance(data, bytes) else None

    async def end_status(self) -> tuple[str, str]:
        code = await self._call.code()
        details = await self._call.details()
        return str(code.name), str(details or "")

    async def status(self) -> str:
        code, details = await self.end_status()
        return f"{code}: {details}" if details else code

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
        self._owner.discard(self)
        self._call.cancel()
        await self._channel.close(None)
