"""The management HTTP server's settings."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ManagementSettings:
    """Where a node's management HTTP server listens and who may change the cluster.

    Reads (members, health, metrics) are open to whoever reaches the port.
    Mutations (``PUT``/``DELETE /cluster/members/...``) need the bearer
    ``token`` when one is set; without a token they are accepted only while
    the server is bound to a loopback address. Invalid values raise
    ``ValueError`` naming the setting.
    """

    host: str = "127.0.0.1"
    """Address the HTTP server binds. Beyond loopback, set ``token`` to allow
    mutations (reads stay open: bind to a private network)."""

    port: int = 8558
    """TCP port of the HTTP server (Akka Management's default); 0 picks a free one."""

    token: str | None = field(default=None, repr=False)
    """Bearer token that requests changing the cluster must carry
    (``Authorization: Bearer <token>``). In a configuration, taken from the
    ``SHOAL_MANAGEMENT_TOKEN`` environment variable or ``token_file`` only."""

    token_file: str | None = None
    """File holding ``token``, read when the configuration is loaded; one
    trailing newline is ignored."""

    max_body_bytes: int = 16 * 1024
    """Largest request body accepted; a larger one is answered 413."""

    @classmethod
    def testing(cls, **overrides: Any) -> ManagementSettings:
        """A free port on loopback; ``overrides`` replace fields."""
        return replace(cls(port=0), **overrides)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("management host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port {self.port}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty (leave it unset instead)")
        if self.max_body_bytes < 256:
            raise ValueError(f"management max_body_bytes must be >= 256, not {self.max_body_bytes}")

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (only this machine can connect)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False
