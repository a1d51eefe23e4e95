"""A room's live traffic on one node: one subscriber per room, every local socket in one step.

A node subscribes one :class:`_Hub` actor per room its connections joined
(topic ``room.<id>``), not one actor per connection. The hub encodes each
``msg`` frame once, as a whole WebSocket frame, and hands it to the outbox of
every local connection of the room in the same turn: no actor turn and no
encoding per socket. It never waits on a socket (an outbox only appends, or
writes to a transport that is not backed up).

The per-connection guarantees stay the connection's: a hub delivers a
message to a connection only if its sequence number is exactly the next one
that connection expects (``view.last + 1``, then advances ``view.last``);
anything else (a gap: the connection must read the journal first) is told
to the connection actor, which fills the gap and delivers in order. Both
run on the node's event loop and both advance ``view.last`` only by one,
so a socket sees each sequence number once and in order whoever delivers.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from shoal.pubsub import DistributedPubSub
from shoal.runtime import Actor, ActorRef, ShutdownPhase

from . import protocol as p
from .room import Delivered, topic

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

    from .connection import Outbox

_LEN1: Final = struct.Struct("!BB").pack
_LEN2: Final = struct.Struct("!BBH").pack
_LEN3: Final = struct.Struct("!BBQ").pack
_FIN_TEXT: Final = 0x81


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, uncompressed WebSocket text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return _LEN1(_FIN_TEXT, n) + payload
    if n < 65536:
        return _LEN2(_FIN_TEXT, 126, n) + payload
    return _LEN3(_FIN_TEXT, 127, n) + payload


def frame_payload(wire: bytes) -> bytes:
    """The payload of a frame built by :func:`text_frame`."""
    n = wire[1]
    return wire[2:] if n < 126 else wire[4:] if n == 126 else wire[10:]


def encode(kind: str, **fields: object) -> bytes:
    """A server frame as a whole WebSocket frame."""
    return text_frame(p.frame(kind, **fields).encode())


_MSG_CACHE: dict[tuple[str, int], bytes] = {}
_MSG_CACHE_SIZE: Final = 4096


def msg_frame(item: Delivered) -> bytes:
    """The ``msg`` frame of ``item`` (a whole WebSocket frame), encoded once per node."""
    key = (item.room, item.seq)
    wire = _MSG_CACHE.get(key)
    if wire is None:
        wire = encode("msg", **item.fields())
        if len(_MSG_CACHE) >= _MSG_CACHE_SIZE:
            del _MSG_CACHE[next(iter(_MSG_CACHE))]
        _MSG_CACHE[key] = wire
    return wire


@dataclass(eq=False, slots=True)
class View:
    """One connection's view of one joined room (shared by the connection and the hub)."""

    user: str
    conn: ActorRef
    outbox: Outbox
    channels: set[str]
    last: int
    """The highest sequence number delivered to the socket."""


@dataclass(eq=False, slots=True)
class _Entry:
    ref: ActorRef
    ready: asyncio.Future[None]
    users: int = 0
    views: dict[ActorRef, View] = field(default_factory=dict)


class _Hub(Actor):
    """The subscriber of ``room.<id>`` on this node; delivers to the entry's views."""

    def __init__(self, entry: Callable[[], _Entry | None]) -> None:
        self._entry = entry

    def receive(self, msg: object) -> None:
        entry = self._entry()
        if entry is None or entry.ref != self.ctx.ref:
            return  # released (a later hub of the room may run already): stopping
        if type(msg) is Delivered:
            hub_deliver(entry.views.values(), msg)
        else:  # presence and typing (rare): each connection decides
            for view in entry.views.values():
                view.conn.tell(msg)


def hub_deliver(views: Iterable[View], item: Delivered) -> None:
    """Deliver ``item`` to each view expecting exactly it; tell a gap to the connection."""
    seq = item.seq
    channel = item.channel
    wire: bytes | None = None
    for view in views:
        last = view.last
        if seq == last + 1:
            view.last = seq
            if channel in view.channels:
                if wire is None:
                    wire = msg_frame(item)
                view.outbox.push(wire)
        elif seq > last:  # a gap: the connection reads the journal first
            view.conn.tell(item)


class RoomHubs:
    """This node's room hubs (an extension): ``acquire`` before a join, ``release`` after.

    A hub exists while some connection of this node holds its room; its
    subscription is confirmed by this node's pub/sub before ``acquire``
    returns, so every message published on this node afterwards reaches it
    (other nodes' publishes once the subscription reached them).
    """

    depends_on: ClassVar[tuple[type, ...]] = (DistributedPubSub,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self._entries: dict[str, _Entry] = {}

    @classmethod
    def get(cls, system: ActorSystem) -> RoomHubs:
        return system.extension(cls)

    async def acquire(self, room: str) -> None:
        """Hold ``room``'s hub (created and subscribed if needed); every ``acquire`` that
        returned is matched by one ``release`` (one that raised holds nothing)."""
        entry = self._entries.get(room)
        if entry is None:
            entry = self._start(room)
        entry.users += 1
        try:
            await asyncio.shield(entry.ready)
        except BaseException:
            self.release(room)
            raise

    def _start(self, room: str) -> _Entry:
        entries = self._entries
        ref = self.system.spawn(lambda: _Hub(lambda: entries.get(room)))
        ready = self.system.loop.create_task(
            DistributedPubSub.get(self.system).subscribe(topic(room), ref)
        )
        ready.add_done_callback(_retrieve)
        entry = self._entries[room] = _Entry(ref, ready)
        return entry

    def add(self, room: str, view: View) -> None:
        """Deliver ``room``'s live messages to ``view`` (its room must be held)."""
        self._entries[room].views[view.conn] = view

    def remove(self, room: str, conn: ActorRef) -> None:
        entry = self._entries.get(room)
        if entry is not None:
            entry.views.pop(conn, None)

    def release(self, room: str) -> None:
        """Undo one ``acquire``; the last release stops the hub (and so its subscription)."""
        entry = self._entries.get(room)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del self._entries[room]
            self.system.stop(entry.ref)

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
