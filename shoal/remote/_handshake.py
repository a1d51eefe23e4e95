"""Shoal's handshake over any transport, the connecting side (the accepting side is
:meth:`~._inbound.Inbound.serve`).

The connecting node writes a ``Handshake`` frame as the first frame of the
connection; the accepting node answers with a ``HandshakeAck`` frame, or ends
the connection with a refusal status (:data:`~._transport.REFUSAL_CODES`).
Both sides time-box it with ``RemoteSettings.handshake_timeout`` on their
system clock: the connecting side for the answer, the accepting side for the
first frame (a call that sends nothing is closed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._timeout import with_timeout
from ._transport import REFUSAL_CODES, ClientStream, Refused, StreamClosed
from ._wire import FrameError, decode_frame, encode_handshake

if TYPE_CHECKING:
    from ._remoting import Remoting

# Bad-input kinds of the accepting side (counter labels, log lines).
BAD_HANDSHAKE_TIMEOUT: Final = "handshake_timeout"
"""A call sent no frame within ``handshake_timeout``."""
BAD_HANDSHAKE_LIMIT: Final = "handshake_limit"
"""A call arrived while ``max_pending_handshakes`` calls were in their handshake."""


async def open_stream(remoting: Remoting, address: str) -> ClientStream:
    """Connect to ``address``, handshake, and return the open stream.

    Raises :class:`Refused` when the peer refuses the handshake or answers
    as another node, :class:`StreamClosed` when it cannot be reached, and
    ``TimeoutError`` after ``handshake_timeout`` on the system clock.
    """
    settings = remoting.settings
    stream = await remoting.endpoint.connect(address)
    try:
        hello = encode_handshake(
            remoting.address, remoting.uid, address, settings.cluster_name, settings.cluster_secret
        )
        data = await with_timeout(
            remoting.system.clock, _exchange(stream, hello, address), settings.handshake_timeout
        )
        stream.peer_uid = _peer_uid(data, address, settings.max_frame_bytes)
        return stream
    except BaseException:
        await stream.close()
        raise


async def _exchange(stream: ClientStream, hello: bytes, address: str) -> bytes:
    try:
        await stream.write(hello)
    except StreamClosed:
        pass  # why is in the connection's status, read below
    data = await stream.read()
    if data is not None:
        return data
    code, details = await stream.end_status()
    if code in REFUSAL_CODES:
        raise Refused(f"{code}: {details}")
    if code == "OK":
        raise StreamClosed(f"{address} ended the stream during the handshake")
    raise StreamClosed(f"{code}: {details}" if details else code)


def _target(address: str) -> str:
    _, _, host_port = address.partition("@")
    return host_port


def _peer_uid(data: bytes, address: str, max_bytes: int) -> int:
    """The uid in the peer's handshake answer; raises if it is not the expected node."""
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
