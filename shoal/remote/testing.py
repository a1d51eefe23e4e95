"""Test kit of ``shoal.remote``: an in-memory network whose faults are methods.

Many nodes (each an :class:`~shoal.runtime.ActorSystem` with
:class:`~shoal.remote.Remoting`) run in one process and one event loop,
addressed like real nodes (``system@host:port``, virtual ports), with no
threads and no sockets: hundreds of nodes are cheap. Delays are on a
:class:`~shoal.runtime.Clock` (a ``ManualClock`` in tests: advance it and
assert exact virtual times)::

    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a = await net.start_node("app")
        b = await net.start_node("app")
        net.delay(0.05, a, b)                  # one direction, 50 ms
        net.partition({a}, {b})                # frames stall
        net.heal()                             # ...and flow again, in order
        b = await net.restart(b)               # same address, new incarnation
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from shoal.runtime import ActorSystem, Settings

from ._errors import RemotingStartError
from ._memory import MemoryEndpoint, _Connection
from ._remoting import Remoting
from ._settings import RemoteSettings
from ._transport import StreamClosed

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from shoal.runtime import Clock

    from ._transport import Accept

__all__ = ["MemoryNetwork"]

_FIRST_PORT = 2552


class _HasAddress(Protocol):
    @property
    def address(self) -> str: ...


Node = str | _HasAddress
"""A node: its address (``system@host:port`` or ``host:port``), or its
:class:`~shoal.remote.Remoting` or :class:`~shoal.runtime.ActorSystem`."""


def _name(node: Node) -> str:
    address = node if isinstance(node, str) else node.address
    return address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class _Spec:
    system_name: str
    settings: RemoteSettings
    runtime: Settings


class MemoryNetwork:
    """A :class:`~shoal.remote._transport.Transport` between nodes of one process.

    Pass it as ``RemoteSettings(transport=network)``, or start nodes with
    :meth:`start_node`. It keeps the transport contract of gRPC:

    * Per direction, frames arrive in the order written, ``latency`` after
      being written (:meth:`delay`; never before an earlier frame).
    * A write waits while ``window_bytes`` or more written in that direction
      are unread (flow control).
    * :meth:`partition`: frames between the sets are *held* (not lost) and
      writers end up waiting for the window; :meth:`heal` delivers them in
      order. A connection cut off for ``stall_timeout`` seconds ends abruptly
      (as gRPC's keepalive would end it) and what it held is lost. New
      connections across a partition fail at once.
    * :meth:`drop`: frames written in one direction are discarded while the
      connection stays open (a lossy link, which a real stream never is: for
      testing at-most-once delivery and failure detection); the handshake of
      a new connection is lost too, so it times out.
    * :meth:`kill`: every connection of the node ends abruptly and it stops
      answering (connections to and from it fail) until it is restarted or
      a node binds its address again.

    A graceful end (a node closing its remoting) still delivers what was
    written before it, as over TCP. Ports given as ``0`` are assigned from
    2552 upwards per host and never reused; an address in use cannot be
    bound. ``clock`` times delays and stalls; ``None`` means the clock of the
    first node bound (give every node the same clock).

    Not thread-safe: every node and every call on one event loop.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        window_bytes: int = 1024 * 1024,
        stall_timeout: float = 15.0,
    ) -> None:
        if window_bytes < 1 or stall_timeout <= 0:
            raise ValueError("window_bytes must be >= 1 and stall_timeout > 0")
        self._clock = clock
        self.window_bytes = window_bytes
        self.stall_timeout = stall_timeout
        self.dropped_frames = 0
        """Frames discarded by :meth:`drop`."""
        self._endpoints: dict[str, MemoryEndpoint] = {}
        self._next_port: dict[str, int] = {}
        self._killed: set[str] = set()
        self._groups: dict[str, int] | None = None
        self._drops: set[tuple[str, str]] = set()
        self._delays: dict[tuple[str | None, str | None], float] = {}
        self._specs: dict[str, _Spec] = {}
        self._systems: list[ActorSystem] = []

    # -- the transport -------------------------------------------------------------------

    async def bind(self, settings: RemoteSettings, clock: Clock, accept: Accept) -> MemoryEndpoint:
        if self._clock is None:
            self._clock = clock
        host = settings.public_host
        host = f"[{host}]" if ":" in host else host
        port = settings.port
        if port == 0:
            port = self._next_port.get(host, _FIRST_PORT)
            while f"{host}:{port}" in self._endpoints:
                port += 1
            self._next_port[host] = port + 1
        name = f"{host}:{port}"
        if name in self._endpoints:
            raise RemotingStartError(f"cannot listen on {name}: address in use (memory network)")
        self._killed.discard(name)
        endpoint = MemoryEndpoint(self, name, port, accept, self._connect, self._unbind)
        self._endpoints[name] = endpoint
        return endpoint

    def _unbind(self, endpoint: MemoryEndpoint) -> None:
        if self._endpoints.get(endpoint.name) is endpoint:
            del self._endpoints[endpoint.name]

    def _connect(self, source: MemoryEndpoint, address: str) -> _Connection:
        target_name = _name(address)
        if source.closed or source.name in self._killed:
            raise StreamClosed(f"UNAVAILABLE: {source.name} is down (killed)")
        target = self._endpoints.get(target_name)
        if target is None or not target.accepting or target_name in self._killed:
            raise StreamClosed(f"UNAVAILABLE: connection refused by {target_name}")
        if self.cut(source.name, target_name):
            raise StreamClosed(f"UNAVAILABLE: no route to {target_name} (partitioned)")
        conn = _Connection(self, source.name, target_name, asyncio.get_running_loop())
        target.serve(conn)
        return conn

    # -- what the pipes ask ---------------------------------------------------------------

    def clock(self) -> Clock:
        if self._clock is None:
            raise RuntimeError("no node is bound to this memory network yet")
        return self._clock

    def cut(self, source: str, target: str) -> bool:
        groups = self._groups
        return groups is not None and groups.get(source, -1) != groups.get(target, -1)

    def dropping(self, source: str, target: str) -> bool:
        return bool(self._drops) and (source, target) in self._drops

    def latency(self, source: str, target: str) -> float:
        delays = self._delays
        if not delays:
            return 0.0
        for key in ((source, target), (source, None), (None, target), (None, None)):
            delay = delays.get(key)
            if delay is not None:
                return delay
        return 0.0

    # -- faults --------------------------------------------------------------------------

    def partition(self, *sets: Iterable[Node]) -> None:
        """Cut the network into ``sets`` of nodes (nodes named in none form one more set).

        Replaces any earlier partition. Frames between sets are held until
        :meth:`heal`; connections across stay cut off for at most
        ``stall_timeout`` seconds, then end.
        """
        groups: dict[str, int] = {}
        for index, nodes in enumerate(sets):
            for node in nodes:
                name = _name(node)
                if name in groups:
                    raise ValueError(f"{name} is in two sets of the partition")
                groups[name] = index
        self._groups = groups
        self._reassess()

    def heal(self) -> None:
        """End the partition and every :meth:`drop`; held frames are delivered in order.

        Delays stay (set them to 0 with :meth:`delay`); killed nodes stay down.
        """
        self._groups = None
        self._drops.clear()
        self._reassess()

    def drop(self, source: Node, target: Node) -> None:
        """Discard every frame ``source`` writes to ``target`` from now on, until :meth:`heal`."""
        self._drops.add((_name(source), _name(target)))

    def delay(self, seconds: float, source: Node | None = None, target: Node | None = None) -> None:
        """Delay frames from ``source`` to ``target`` by ``seconds`` (``None``: any node).

        The most specific setting applies: (source, target), then (source,
        any), (any, target), (any, any). ``0`` removes the delay. Frames
        already written keep their arrival time.
        """
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        key = (None if source is None else _name(source), None if target is None else _name(target))
        if seconds == 0:
            self._delays.pop(key, None)
        else:
            self._delays[key] = seconds

    def kill(self, node: Node) -> None:
        """Crash ``node``: its connections end abruptly and it stops answering and dialing."""
        name = _name(node)
        self._killed.add(name)
        endpoint = self._endpoints.get(name)
        if endpoint is not None:
            endpoint.kill(f"connection reset: {name} was killed")

    def _reassess(self) -> None:
        for endpoint in self._endpoints.values():
            for conn in endpoint.served:
                if self.cut(conn.client, conn.server):
                    if conn.stall_timer is None:
                        conn.stall_timer = self.clock().call_later(
                            self.stall_timeout, self._stalled, conn
                        )
                else:
                    if conn.stall_timer is not None:
                        conn.stall_timer.cancel()
                        conn.stall_timer = None
                    conn.release()

    def _stalled(self, conn: _Connection) -> None:
        conn.stall_timer = None
        conn.abort(
            ("UNAVAILABLE", f"keepalive timeout: no answer from the peer in {self.stall_timeout} s")
        )

    # -- nodes ---------------------------------------------------------------------------

    async def start_node(
        self,
        name: str = "shoal",
        settings: RemoteSettings | None = None,
        runtime: Settings | None = None,
    ) -> Remoting:
        """Start an actor system named ``name`` with remoting on this network.

        ``settings`` default to ``RemoteSettings.testing()`` (their transport
        is replaced by this network); ``runtime`` to ``Settings.testing()``
        on this network's clock. The system is shut down by :meth:`aclose`.
        """
        if runtime is None:
            runtime = Settings.testing(clock=self._clock)
        settings = replace(settings or RemoteSettings.testing(), transport=self)
        system = ActorSystem(name, runtime)
        self._systems.append(system)
        remoting = await Remoting.start(system, settings)
        self._specs[_name(remoting)] = _Spec(name, replace(settings, port=remoting.port), runtime)
        return remoting

    async def restart(self, node: Node) -> Remoting:
        """Kill ``node`` (started by :meth:`start_node`), shut its system down, and start
        a new incarnation (a new uid) at the same address with the same settings."""
        name = _name(node)
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"{name} was not started by start_node(): kill it and start anew")
        self.kill(name)
        endpoint = self._endpoints.get(name)
        for system in self._systems:
            if system.address.rpartition("@")[2] == name:
                await system.shutdown()
        if endpoint is not None:
            await endpoint.close()
        return await self.start_node(spec.system_name, spec.settings, spec.runtime)

    async def aclose(self) -> None:
        """Shut down every system started by :meth:`start_node`, newest first."""
        systems, self._systems = self._systems, []
        for system in reversed(systems):
            await system.shutdown()

    async def __aenter__(self) -> MemoryNetwork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<MemoryNetwork nodes={len(self._endpoints)}>"
