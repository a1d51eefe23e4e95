"""The connection actor: one per WebSocket, local to the node that accepted it.

It owns the socket's bounded :class:`Outbox`: rooms and pub/sub only ever
tell this actor, which appends to the outbox without waiting; a full outbox
closes the socket with 4000 ("slow consumer: resume"). Per joined room it
keeps the channels and the highest sequence number delivered, so the socket
never sees a duplicate, and fills any gap from the journal before
delivering what follows it: on resume, when a live message skips a number
(e.g. published before this node's subscription reached the room's node),
and shortly after each join (a gap at the tail).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSMsgType

from shoal.persistence import MAX_SEQUENCE_NR, JournalQueries, Persistence, decode_event
from shoal.runtime import Actor
from shoal.sharding import EntityRef, Sharding

from . import protocol as p
from .fanout import RoomHubs, View, frame_payload, msg_frame, text_frame
from .room import (
    Acked,
    Delivered,
    Info,
    Post,
    Posted,
    PresenceEvent,
    RoomState,
    TypingEvent,
    persistence_id,
)
from .session import ROOM_TYPE, TYPE_NAME, Attach, Detach, JoinRoom, LeaveRoom, TypingNotice

if TYPE_CHECKING:
    from aiohttp import web

    from .config import ChatSettings

_log = logging.getLogger("examples.chat")

SLOW_CONSUMER: Final = 4000
GOING_AWAY: Final = 1001
STUCK_AFTER: Final = 10.0
"""Seconds a slow consumer's socket may take to take its close frame before it is cut."""
SEND_SLACK: Final = 0.05
"""Sends due within this many seconds of a deadline check are answered together."""
CATCH_UP_AFTER: Final = (0.5, 2.0)
"""Seconds after a join at which the room's tail is read from the journal once more."""

HIGH_WATER: Final = 64 * 1024
"""Bytes a socket's transport may buffer before frames wait in the outbox instead."""


class Outbox:
    """A socket's bounded queue of outgoing frames; never waits, closes on overflow.

    Frames are whole WebSocket frames (:func:`.fanout.text_frame`), or text
    encoded as one. While nothing waits in the queue and the socket's
    transport is not backed up, a pushed frame is written at once; otherwise
    it waits for the writer (:meth:`run`), which honours the transport's flow
    control. ``capacity`` bounds the frames waiting.
    """

    def __init__(self, capacity: int, stuck_after: float = STUCK_AFTER) -> None:
        self.capacity = capacity
        self.stuck_after = stuck_after
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._ws: web.WebSocketResponse | None = None
        self._transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.done = False
        self.abort: Callable[[], None] | None = None

    def push(self, frame: str | bytes) -> bool:
        """Queue (or write) ``frame``: a whole WebSocket frame, or a text to send as one."""
        if self.close_code is not None:
            return False
        wire = frame if type(frame) is bytes else text_frame(str(frame).encode())
        frames = self._frames
        if not frames:
            ws, transport = self._ws, self._transport
            if (
                ws is not None
                and not ws.closed
                and transport is not None
                and not transport.is_closing()
                and transport.get_write_buffer_size() < HIGH_WATER
            ):
                transport.write(wire)
                return True
        if len(frames) >= self.capacity:
            self.close(SLOW_CONSUMER, "slow consumer: resume")
            return False
        frames.append(wire)
        self._ready.set()
        return True

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._frames.clear()
            self._ready.set()
            if code == SLOW_CONSUMER and self.abort is not None:
                # A writer stuck on a socket that is not read cannot send the close
                # frame: cut the connection if it has not gone within stuck_after.
                asyncio.get_running_loop().call_later(self.stuck_after, self._abort_if_stuck)

    def _abort_if_stuck(self) -> None:
        if not self.done and self.abort is not None:
            self.abort()

    def __len__(self) -> int:
        return len(self._frames)

    async def run(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        """Write frames to ``ws`` until closed (then close it with the code).

        With ``transport`` (the socket's, when ``ws`` compresses nothing), frames
        pushed while the queue is empty are written to it directly.
        """
        frames = self._frames
        if transport is not None and not ws.compress:
            self._ws, self._transport = ws, transport
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while frames and self.close_code is None:
                    await ws.send_frame(frame_payload(frames.popleft()), WSMsgType.TEXT)
                if self.close_code is not None:
                    await ws.close(code=self.close_code, message=self.close_reason.encode())
                    return
        except (ConnectionError, RuntimeError):  # the peer went away meanwhile
            self.close(1006, "")
        finally:
            self._ws = self._transport = None
            self.done = True


@dataclass(frozen=True, slots=True)
class Closed:
    """The socket closed."""


@dataclass(slots=True)
class _Sending:
    """Sends of one client id waiting for the room's :class:`Acked`."""

    deadline: float
    count: int = 1


@dataclass(frozen=True, slots=True)
class _SendTick:
    pass


@dataclass(frozen=True, slots=True)
class _CatchUp:
    room: str


@dataclass(frozen=True, slots=True)
class _AttachTick:
    pass


class Connection(Actor):
    """One WebSocket's actor: commands in, frames out through the outbox."""

    def __init__(self, user: str, outbox: Outbox, settings: ChatSettings) -> None:
        self.user = user
        self.outbox = outbox
        self.settings = settings
        self.limits = settings.limits
        self.rooms: dict[str, View] = {}
        self.room_refs: dict[str, EntityRef] = {}
        self.sending: dict[tuple[str, str], _Sending] = {}
        """(room, client id) -> the sends told to the room and not acknowledged yet."""

    def started(self) -> None:
        system = self.ctx.system
        sharding = Sharding.get(system)
        self.session = sharding.region(TYPE_NAME).entity(self.user)
        self.room_region = sharding.region(ROOM_TYPE)
        self.hubs = RoomHubs.get(system)
        persistence = system.extension(Persistence)
        self.queries = JournalQueries(persistence.journal)
        self.journal = persistence.journal
        self.ctx.timers.start_periodic("attach", _AttachTick(), self.settings.attach_interval)

    def push(self, kind: str, **fields: Any) -> None:
        self.outbox.push(p.frame(kind, **fields))

    def error(
        self, code: str, message: str, ref: str | None = None, room: str | None = None
    ) -> None:
        self.outbox.push(p.ProtocolError(code, message, ref, room).to_frame())

    def receive(self, msg: object) -> Coroutine[Any, Any, None] | None:
        """Handle ``msg``; only joins, history and gap fills run async (they read)."""
        match msg:
            case Delivered():
                view = self.rooms.get(msg.room)
                if view is None or msg.seq <= view.last:
                    return None
                if msg.seq > view.last + 1:
                    return self._delivered_after_gap(msg)
                view.last = msg.seq
                if msg.channel in view.channels:
                    self.outbox.push(msg_frame(msg))
            case PresenceEvent(room=room, user=user, status=status):
                if room in self.rooms:
                    self.push("presence", room=room, user=user, status=status)
            case TypingEvent(room=room, channel=channel, user=user):
                view = self.rooms.get(room)
                if view is not None and channel in view.channels and user != self.user:
                    self.push(
                        "typing",
                        room=room,
                        channel=channel,
                        user=user,
                        expires_ms=self.limits.typing_expires_ms,
                    )
            case p.Send():
                self._send(msg)
            case Acked():
                self._acked(msg)
            case _SendTick():
                self._expire_sends()
            case p.Join():
                return self._join(msg)
            case p.Leave(room=room):
                if self.rooms.pop(room, None) is None:
                    self.error("not_joined", f"room {room!r} is not joined", room=room)
                    return None
                self.session.tell(LeaveRoom(self.ref, room))
                self.hubs.remove(room, self.ref)
                self.hubs.release(room)
                self.push("left", room=room)
            case p.History():
                return self._history(msg)
            case p.Typing(room=room, channel=channel):
                if self._joined(room, channel, None):
                    self.session.tell(TypingNotice(room, channel))
            case p.Ping():
                self.push("pong")
            case _CatchUp(room=room):
                if room in self.rooms:
                    return self._fill(room, MAX_SEQUENCE_NR)
            case _AttachTick():
                self._attach()
            case Closed():
                self.session.tell(Detach(self.ref))
                self.ctx.stop()
        return None

    def stopped(self) -> None:
        self._drop_rooms()

    def before_restart(self, error: BaseException, message: object) -> None:
        self._drop_rooms()

    def _drop_rooms(self) -> None:
        """Leave every room's hub (this instance's views die with it)."""
        for room in self.rooms:
            self.hubs.remove(room, self.ref)
            self.hubs.release(room)
        self.rooms.clear()

    def _attach(self) -> None:
        rooms = {room: sorted(view.channels) for room, view in self.rooms.items()}
        last = {room: view.last for room, view in self.rooms.items()}
        self.session.tell(Attach(self.ref, rooms, last))

    def _joined(self, room: str, channel: str | None, ref: str | None) -> bool:
        view = self.rooms.get(room)
        if view is None:
            self.error("not_joined", f"room {room!r} is not joined", ref, room)
            return False
        if channel is not None and channel not in view.channels:
            self.error("not_joined", f"channel {channel!r} is not joined", ref, room)
            return False
        return True

    # -- send ------------------------------------------------------------------------------

    def _room_ref(self, room: str) -> EntityRef:
        ref = self.room_refs.get(room)
        if ref is None:
            if len(self.room_refs) >= 4 * self.limits.max_rooms:
                self.room_refs.clear()
            ref = self.room_refs[room] = self.room_region.entity(room)
        return ref

    def _send(self, send: p.Send) -> None:
        """Tell the room (no ask: it answers with a told :class:`Acked` naming the send);
        a send not acknowledged within ``ask_timeout`` is answered ``unavailable``."""
        if not self._joined(send.room, send.channel, send.id):
            return
        post = Post(self.user, send.channel, send.id, send.text)
        self._room_ref(send.room).tell(post, self.ref)
        key = (send.room, send.id)
        waiting = self.sending.get(key)
        if waiting is not None:
            waiting.count += 1
            return
        if not self.sending:
            self.ctx.timers.start_single("sends", _SendTick(), self.settings.ask_timeout)
        self.sending[key] = _Sending(self.ctx.clock.now() + self.settings.ask_timeout)

    def _acked(self, acked: Acked) -> None:
        key = (acked.room, acked.client_id)
        waiting = self.sending.get(key)
        if waiting is None:
            return  # answered unavailable already: the client retries, and gets a duplicate ack
        waiting.count -= 1
        if waiting.count <= 0:
            del self.sending[key]
            if not self.sending:
                self.ctx.timers.cancel("sends")
        self.push(
            "ack", room=acked.room, id=acked.client_id, seq=acked.seq, ts=acked.ts,
            duplicate=acked.duplicate,
        )  # fmt: skip

    def _expire_sends(self) -> None:
        """Answer ``unavailable`` for the sends past their deadline; wait for the next."""
        now = self.ctx.clock.now() + SEND_SLACK
        for key, waiting in [(k, w) for k, w in self.sending.items() if w.deadline <= now]:
            del self.sending[key]
            room, client_id = key
            for _ in range(waiting.count):
                self.error(
                    "unavailable",
                    f"the room did not answer within {self.settings.ask_timeout:g} s; "
                    "retry with the same id",
                    client_id,
                    room,
                )
        if self.sending:  # insertion order: the first waits longest
            first = next(iter(self.sending.values())).deadline
            delay = max(SEND_SLACK, first - self.ctx.clock.now())
            self.ctx.timers.start_single("sends", _SendTick(), delay)

    # -- join, resume ------------------------------------------------------------------

    async def _join(self, join: p.Join) -> None:
        room = join.room
        held = False  # this join holds the room's hub until the room is joined
        try:
            answer = await self.session.ask(
                JoinRoom(self.ref, room, list(join.channels)), timeout=self.settings.ask_timeout
            )
            if answer == "too_many_rooms":
                self.error(
                    "too_many_rooms", f"at most {self.limits.max_rooms} rooms per user", room=room
                )
                return
            if room not in self.rooms:
                await self.hubs.acquire(room)
                held = True
            state: RoomState = await self._room_ref(room).ask(
                Info(), timeout=self.settings.ask_timeout
            )
        except Exception as exc:  # an ask timeout, a room recovering elsewhere
            if held:
                self.hubs.release(room)
            self.error("unavailable", f"the room did not answer ({type(exc).__name__})", room=room)
            return
        except BaseException:  # cancelled: this connection stops
            if held:
                self.hubs.release(room)
            raise
        view = self.rooms.get(room)
        if view is not None:  # already joined: only the channels change
            view.channels = set(join.channels)
            self.push(
                "joined", room=room, channels=list(join.channels), head=state.head,
                online=state.online,
            )  # fmt: skip
            return
        view = View(self.user, self.ref, self.outbox, set(join.channels), state.head)
        self.push(
            "joined", room=room, channels=list(join.channels), head=state.head, online=state.online
        )
        last = join.last_seq
        if last is not None:
            if last > state.head:
                self.push("reset", room=room, head=state.head, reason="last_seq beyond the head")
            elif state.head - last > self.limits.resume_max:
                self.push(
                    "reset",
                    room=room,
                    head=state.head,
                    reason=f"more than {self.limits.resume_max} messages behind",
                )
            else:
                view.last = last
        self.rooms[room] = view
        self.hubs.add(room, view)  # live messages from here: the hub delivers the next in order
        await self._fill(room, state.head)
        for i, delay in enumerate(CATCH_UP_AFTER):
            self.ctx.timers.start_single(("catch-up", room, i), _CatchUp(room), delay)

    async def _delivered_after_gap(self, item: Delivered) -> None:
        await self._fill(item.room, item.seq - 1)
        view = self.rooms.get(item.room)
        if view is None or item.seq != view.last + 1:
            return  # the fill could not reach it: a later message or catch-up will
        view.last = item.seq
        if item.channel in view.channels:
            self.outbox.push(msg_frame(item))

    async def _fill(self, room: str, to: int) -> None:
        """Deliver the room's stored messages after the last delivered, up to ``to``."""
        view = self.rooms.get(room)
        if view is None or to <= view.last:
            return
        serialization = self.ctx.system.serialization
        try:
            async for stored in self.queries.current_events_by_persistence_id(
                persistence_id(room), view.last + 1, to
            ):
                event = decode_event(serialization, stored)
                if not isinstance(event, Posted) or stored.sequence_nr != view.last + 1:
                    break
                item = Delivered(
                    room,
                    stored.sequence_nr,
                    event.channel,
                    event.user,
                    event.client_id,
                    event.text,
                    event.ts,
                )
                view.last = item.seq
                if item.channel in view.channels:
                    self.outbox.push(msg_frame(item))
        except Exception:
            _log.exception("reading %s from the journal failed", persistence_id(room))

    # -- history ---------------------------------------------------------------------------

    async def _history(self, history: p.History) -> None:
        room = history.room
        if not self._joined(room, None, None):
            return
        pid = persistence_id(room)
        try:
            before = history.before_seq
            if before is None:
                before = await self.journal.highest_sequence_nr(pid) + 1
            first = max(1, before - history.limit)
            messages: list[dict[str, Any]] = []
            if before > 1:
                serialization = self.ctx.system.serialization
                async for stored in self.queries.current_events_by_persistence_id(
                    pid, first, before - 1
                ):
                    event = decode_event(serialization, stored)
                    if isinstance(event, Posted):
                        messages.append(
                            {
                                "room": room,
                                "channel": event.channel,
                                "seq": stored.sequence_nr,
                                "id": event.client_id,
                                "user": event.user,
                                "text": event.text,
                                "ts": event.ts,
                            }
                        )
        except Exception as exc:
            self.error(
                "unavailable", f"history could not be read ({type(exc).__name__})", room=room
            )
            return
        self.push(
            "history",
            room=room,
            messages=messages,
            before_seq=history.before_seq,
            more=first > 1,
        )
