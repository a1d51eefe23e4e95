"""Typed node addresses: ``system@host:port`` and the incarnation that lives there."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import total_ordering

from ._path import valid_name


def _valid_system(name: str) -> bool:
    return valid_name(name) and "@" not in name and ":" not in name


@total_ordering
@dataclass(frozen=True, slots=True, eq=True)
class Address:
    """Where a node's actor system lives: ``system@host:port``, or ``system`` alone.

    The local-only form (``host`` and ``port`` both ``None``) names a system
    without remoting. ``host`` is kept without brackets; an IPv6 host is
    written in brackets (``app@[::1]:2552``). Addresses are frozen, hashable
    and totally ordered by ``(system, host, port)``, a local-only address
    before any remote one of the same system; the cluster orders its members
    by this order (Akka compares addresses the same way, field by field).
    """

    system: str
    host: str | None = None
    port: int | None = None
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        # Hashed once: addresses key the cluster's tables, hashed over and over.
        object.__setattr__(self, "_hash", hash((self.system, self.host, self.port)))
        if not _valid_system(self.system):
            raise ValueError(f"invalid actor system name {self.system!r}")
        if (self.host is None) != (self.port is None):
            raise ValueError("an address has both a host and a port, or neither")
        if self.host is not None and (not self.host or any(c in self.host for c in "[]/@ ")):
            raise ValueError(f"invalid host {self.host!r}")
        if self.port is not None and not 0 < self.port <= 65535:
            raise ValueError(f"invalid port {self.port}")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``system``, ``system@host:port`` or ``system@[v6host]:port``.

        Raises ``ValueError`` naming what is malformed.
        """
        system, at, host_port = text.partition("@")
        if not at:
            return cls(system)
        host, colon, port = host_port.rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"address without a port: {text!r}")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"unclosed bracket in address {text!r}")
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"an IPv6 host must be in brackets: {text!r}")
        return cls(system, host, int(port))

    @property
    def has_host(self) -> bool:
        """Whether the address is reachable over the network (has host and port)."""
        return self.host is not None

    def __hash__(self) -> int:
        return self._hash

    def _key(self) -> tuple[str, str, int]:
        return (self.system, self.host or "", self.port or 0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        host = self.host
        if host is None:
            return self.system
        return f"{self.system}@{f'[{host}]' if ':' in host else host}:{self.port}"


@total_ordering
@dataclass(frozen=True, slots=True, eq=True)
class UniqueAddress:
    """One incarnation of a node: its :class:`Address` and the ``uid`` it drew at start.

    A node that restarts at the same address gets a new ``uid``; the cluster
    tells incarnations apart by it. Frozen, hashable, ordered by
    ``(address, uid)``. Written ``system@host:port#uid``.
    """

    address: Address
    uid: int
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.address, self.uid)))

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, UniqueAddress):
            return NotImplemented
        return (self.address, self.uid) < (other.address, other.uid)

    def __str__(self) -> str:
        return f"{self.address}#{self.uid}"
