"""The chat node's settings, from ``CHAT_*`` environment variables (see the README)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .protocol import Limits

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class ChatSettings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    static_dir: Path = STATIC_DIR
    limits: Limits = field(default_factory=Limits)
    outbox: int = 1000
    stuck_s: float = 10.0
    heartbeat_s: float = 15.0
    attach_interval: float = 5.0
    passivate_s: float = 120.0
    ask_timeout: float = 5.0
    number_of_shards: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ChatSettings:
        """Defaults overridden by ``CHAT_*`` variables; ``ValueError`` names a bad one."""

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise ValueError(f"{name}={raw!r} must be positive")
            return value

        base = cls()
        limits = replace(
            base.limits,
            rate_per_s=number("CHAT_RATE_PER_S", base.limits.rate_per_s),
            burst=int(number("CHAT_BURST", base.limits.burst)),
            max_rooms=int(number("CHAT_MAX_ROOMS", base.limits.max_rooms)),
            presence_grace_s=number("CHAT_PRESENCE_GRACE_S", base.limits.presence_grace_s),
        )
        secret = env.get("CHAT_SECRET")
        return replace(
            base,
            http_host=env.get("CHAT_HTTP_HOST", base.http_host),
            http_port=_port(env.get("CHAT_HTTP_PORT"), base.http_port),
            secret=secret.encode() if secret else base.secret,
            static_dir=Path(env.get("CHAT_STATIC_DIR", str(base.static_dir))),
            limits=limits,
            outbox=int(number("CHAT_OUTBOX", base.outbox)),
            stuck_s=number("CHAT_STUCK_S", base.stuck_s),
            heartbeat_s=number("CHAT_HEARTBEAT_S", base.heartbeat_s),
            attach_interval=number("CHAT_ATTACH_S", base.attach_interval),
            passivate_s=number("CHAT_PASSIVATE_S", base.passivate_s),
        )


def _port(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"CHAT_HTTP_PORT={raw!r} is not a port (0 picks a free one)")
    return int(raw)
