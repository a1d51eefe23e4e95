"""The chat WebSocket protocol, version 1: decoding client frames, encoding server frames.

Pure functions, no I/O. :func:`decode` turns one text frame into a typed
command or raises :class:`ProtocolError` with the documented error code;
:func:`frame` builds a server frame. See ``examples/chat/README.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

VERSION: Final = 1
DEFAULT_CHANNEL: Final = "default"

_ROOM: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHANNEL: Final = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_CLIENT_ID: Final = re.compile(r"[\x21-\x7e]{1,64}")
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,32}")


class ProtocolError(Exception):
    """A refused frame: ``code`` is the documented error code."""

    def __init__(
        self,
        code: str,
        message: str,
        ref: str | None = None,
        room: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.room = room
        self.retry_after_ms = retry_after_ms

    def to_frame(self) -> str:
        """The ``error`` frame that answers the refused frame."""
        fields: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "ref": self.ref,
            "room": self.room,
        }
        if self.retry_after_ms is not None:
            fields["retry_after_ms"] = self.retry_after_ms
        return frame("error", **fields)


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    channels: tuple[str, ...]
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    channel: str
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class History:
    room: str
    before_seq: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class Typing:
    room: str
    channel: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Command = Join | Leave | Send | History | Typing | Ping


@dataclass(frozen=True, slots=True)
class Limits:
    """What a connection may do (the ``limits`` of the ``welcome`` frame)."""

    max_text: int = 4000
    max_frame_bytes: int = 16 * 1024
    hard_frame_bytes: int = 64 * 1024
    rate_per_s: float = 20.0
    burst: int = 40
    max_rooms: int = 50
    max_channels: int = 16
    history_default: int = 50
    history_max: int = 200
    resume_max: int = 1000
    typing_expires_ms: int = 3000
    presence_grace_s: float = 5.0

    def public(self) -> dict[str, Any]:
        return {
            "max_text": self.max_text,
            "max_frame_bytes": self.max_frame_bytes,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "max_rooms": self.max_rooms,
            "max_channels": self.max_channels,
            "history_max": self.history_max,
            "resume_max": self.resume_max,
            "typing_expires_ms": self.typing_expires_ms,
            "presence_grace_s": self.presence_grace_s,
        }


def frame(kind: str, **fields: Any) -> str:
    """A server frame of type ``kind`` as JSON text."""
    return json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":"))


def valid_name(name: object) -> bool:
    """A user name as ``POST /api/login`` accepts it."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def valid_room(room: object) -> bool:
    return isinstance(room, str) and _ROOM.fullmatch(room) is not None


def decode(raw: str | bytes, limits: Limits) -> Command:
    """One client frame as a command; :class:`ProtocolError` says why it is refused."""
    if isinstance(raw, bytes):
        raise ProtocolError("bad_json", "binary frames are not part of the protocol")
    if len(raw) > limits.max_frame_bytes or len(raw.encode()) > limits.max_frame_bytes:
        raise ProtocolError("too_large", f"a frame is at most {limits.max_frame_bytes} bytes")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc.msg}") from None
    except ValueError:  # e.g. a number too long to convert
        raise ProtocolError("bad_json", "not JSON this server accepts") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "a frame is a JSON object")
    ref = body.get("id") if isinstance(body.get("id"), str) else None
    ref = ref if ref is None or len(ref) <= 64 else None
    room = body.get("room") if valid_room(body.get("room")) else None
    version = body.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError("bad_version", f"v must be {VERSION}, got {version!r}", ref, room)
    kind = body.get("type")
    if "user" in body:
        raise ProtocolError("forbidden", "the user comes from the token, never a frame", ref, room)
    try:
        match kind:
            case "join":
                return _join(body, limits)
            case "leave":
                return Leave(_room(body))
            case "send":
                return _send(body, limits)
            case "history":
                return _history(body, limits)
            case "typing":
                return Typing(_room(body), _channel(body.get("channel", DEFAULT_CHANNEL)))
            case "ping":
                return Ping()
    except ProtocolError as exc:
        exc.ref = ref
        exc.room = room
        raise
    raise ProtocolError("unknown_type", f"unknown frame type {kind!r}", ref, room)


def _room(body: dict[str, Any]) -> str:
    room = body.get("room")
    if not valid_room(room):
        raise ProtocolError("bad_frame", "room: 1-64 characters of A-Z a-z 0-9 _ . -")
    assert isinstance(room, str)
    return room


def _channel(channel: object) -> str:
    if not isinstance(channel, str) or _CHANNEL.fullmatch(channel) is None:
        raise ProtocolError("bad_frame", "channel: 1-32 characters of A-Z a-z 0-9 _ . -")
    return channel


def _seq(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("bad_frame", f"{name}: an integer >= 0 or null")
    return value


def _join(body: dict[str, Any], limits: Limits) -> Join:
    room = _room(body)
    channels = body.get("channels", [DEFAULT_CHANNEL])
    if not isinstance(channels, list) or not channels:
        raise ProtocolError("bad_frame", "channels: a non-empty list of channel names")
    if len(channels) > limits.max_channels:
        raise ProtocolError("too_many_channels", f"at most {limits.max_channels} channels per room")
    names = tuple(dict.fromkeys(_channel(c) for c in channels))
    return Join(room, names, _seq(body.get("last_seq"), "last_seq"))


def _send(body: dict[str, Any], limits: Limits) -> Send:
    room = _room(body)
    channel = _channel(body.get("channel", DEFAULT_CHANNEL))
    client_id = body.get("id")
    if not isinstance(client_id, str) or _CLIENT_ID.fullmatch(client_id) is None:
        raise ProtocolError("bad_frame", "id: 1-64 printable ASCII characters, no spaces")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_frame", "text: a non-empty string")
    if len(text) > limits.max_text:
        raise ProtocolError("too_large", f"text is at most {limits.max_text} characters")
    return Send(room, channel, client_id, text)


def _history(body: dict[str, Any], limits: Limits) -> History:
    room = _room(body)
    before = _seq(body.get("before_seq"), "before_seq")
    limit = body.get("limit", limits.history_default)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ProtocolError("bad_frame", "limit: an integer >= 1")
    return History(room, before, min(limit, limits.history_max))
