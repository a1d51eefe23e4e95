"""Fixtures of the remote suite: node processes driven over stdin/stdout, in-process nodes.

Nothing here sleeps on the wall clock to wait for something: tests await
process output, events and answers. ``asyncio.wait_for`` bounds are only a
safety net that turns a hang into a failure with the node's log attached.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from shoal import ActorSystem, Settings
from shoal.remote import RemoteSettings, Remoting
from shoal.remote._grpc import METHOD
from shoal.remote._wire import encode_handshake
from shoal.remote.testing import MemoryNetwork

from ._messages import ALL

REPO = Path(__file__).resolve().parents[3]
SAFETY = 60.0  # seconds; only reached when something hangs


class NodeError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class NodeProcess:
    """One ``_node`` process; requests are JSON lines, answers matched by id."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, name: str) -> None:
        self.proc = proc
        self.log = log
        self.name = name
        self.address = ""
        self.uid = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, log_dir: Path, name: str, *options: str, prefix: Sequence[str] = ()
    ) -> NodeProcess:
        """Start a node; ``prefix`` wraps its command (``NetnsLab.exec_argv``, say)."""
        log = log_dir / f"{name}.log"
        with log.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                sys.executable,
                "-m",
                "tests.integration.remote._node",
                *options,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            )
        node = cls(proc, log, name)
        node._reader = asyncio.get_running_loop().create_task(node._read())
        ready = await node.event("ready")
        node.address = ready["address"]
        node.uid = ready["uid"]
        return node

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            obj = json.loads(line)
            if "id" in obj:
                future = self._pending.pop(obj["id"], None)
                if future is not None and not future.done():
                    future.set_result(obj)
            else:
                self.events.put_nowait(obj)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EOFError(f"{self.name} exited; log:\n{self.tail()}"))
        self.events.put_nowait({"event": "eof"})

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def request(self, cmd: str, **fields: Any) -> Any:
        """Send one command; its ``ok`` value, or :class:`NodeError`."""
        assert self.proc.stdin is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self.proc.stdin.write((json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            answer = await asyncio.wait_for(future, SAFETY)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no answer to {cmd}; log:\n{self.tail()}") from None
        if "error" in answer:
            raise NodeError(answer["error"], answer["message"])
        return answer["ok"]

    async def event(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind`` (events of other kinds before it are dropped)."""
        while True:
            try:
                event = await asyncio.wait_for(self.events.get(), SAFETY)
            except TimeoutError:
                raise AssertionError(f"{self.name}: no {kind} event; log:\n{self.tail()}") from None
            if event["event"] == kind:
                return event
            if event["event"] == "eof":
                raise AssertionError(f"{self.name} exited waiting for {kind}:\n{self.tail()}")

    def path(self, name: str) -> str:
        return f"shoal://{self.address}/user/{name}"

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    async def spawn(self, kind: str, name: str, **args: Any) -> str:
        return str(await self.request("spawn", kind=kind, name=name, args=args))

    async def metrics(self) -> dict[str, Any]:
        return dict(await self.request("metrics"))

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, sockets reset by the kernel."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self._wait()

    async def exit(self) -> None:
        """Graceful shutdown through the ``exit`` command."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.write(b'{"cmd": "exit"}\n')
            await self.proc.stdin.drain()
        await self._wait()

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), SAFETY)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


StartNode = Callable[..., Awaitable[NodeProcess]]


async def eventually(predicate: Callable[[], bool]) -> None:
    """Yield to the event loop (its I/O included) until ``predicate`` holds."""
    for _ in range(200_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start node processes; every one still running is killed at teardown."""
    nodes: list[NodeProcess] = []

    async def start(name: str = "n", *options: str, prefix: Sequence[str] = ()) -> NodeProcess:
        node = await NodeProcess.start(tmp_path, name, *options, prefix=prefix)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        if node.proc.returncode is None:
            await node.kill()


# -- in-process nodes -------------------------------------------------------------------------

# Fixtures that speak gRPC itself: a test using one runs on the gRPC transport only.
_GRPC_ONLY_FIXTURES = frozenset({"raw_peer", "garbage_peer"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``nodes`` over the transports its module lists.

    A module opts in with ``TRANSPORTS = ("grpc", "memory")``; the default is
    gRPC only (raw frames, TLS, processes). A test that uses a raw gRPC peer
    runs over gRPC only.
    """
    if "transport" not in metafunc.fixturenames:
        return
    kinds = getattr(metafunc.module, "TRANSPORTS", ("grpc",))
    if _GRPC_ONLY_FIXTURES & set(metafunc.fixturenames):
        kinds = ("grpc",)
    metafunc.parametrize("transport", kinds)


class Nodes:
    """Several ActorSystems with remoting in this process, on one transport: real
    loopback gRPC ports, or an in-memory network (virtual ports)."""

    def __init__(self, transport: str) -> None:
        self.systems: list[ActorSystem] = []
        self.kind = transport
        self.network: MemoryNetwork | None = MemoryNetwork() if transport == "memory" else None

    def remote_settings(self, **overrides: Any) -> RemoteSettings:
        """``RemoteSettings.testing(**overrides)`` on this group's transport."""
        if self.network is not None:
            overrides.setdefault("transport", self.network)
        return RemoteSettings.testing(**overrides)

    async def start(
        self,
        name: str = "t",
        settings: RemoteSettings | None = None,
        runtime: Settings | None = None,
    ) -> tuple[ActorSystem, Remoting]:
        system = ActorSystem(name, runtime or Settings.testing(messages=ALL))
        self.systems.append(system)
        if settings is None:
            settings = self.remote_settings()
        elif settings.transport is None and self.network is not None:
            settings = replace(settings, transport=self.network)
        remoting = await Remoting.start(system, settings)
        return system, remoting

    async def close(self) -> None:
        for system in reversed(self.systems):
            await system.shutdown()


@pytest.fixture
def transport() -> str:
    """The transport of ``nodes`` (parametrised by ``pytest_generate_tests``)."""
    return "grpc"


@pytest.fixture
async def nodes(transport: str) -> AsyncIterator[Nodes]:
    group = Nodes(transport)
    try:
        yield group
    finally:
        await group.close()


# -- a raw gRPC client: a peer that sends whatever bytes a test wants ------------------------


class RawPeer:
    """A misbehaving peer: writes raw frames on one stream to a node."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call: Any = self.channel.stream_stream(METHOD, None, None)(None)

    async def handshake(
        self,
        to_address: str,
        *,
        from_address: str | None = None,
        uid: int = 4242,
        cluster: str = "shoal",
        secret: bytes | None = None,
    ) -> bytes:
        """Send a handshake; the node's answer frame (raises ``AioRpcError`` if refused).

        The peer claims to be ``from_address``, by default a node of the same
        system name on port 9 (where nothing listens).
        """
        if from_address is None:
            from_address = f"{to_address.partition('@')[0]}@127.0.0.1:9"
        await self.call.write(encode_handshake(from_address, uid, to_address, cluster, secret))
        answer = await self.call.read()
        assert isinstance(answer, bytes), answer
        return answer

    async def send(self, data: bytes) -> None:
        await self.call.write(data)

    async def status(self) -> grpc.StatusCode:
        """The code the node ended the stream with (after it dropped it)."""
        code = await asyncio.wait_for(self.call.code(), SAFETY)
        assert isinstance(code, grpc.StatusCode)
        return code

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(None)


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[[str], RawPeer]]:
    peers: list[RawPeer] = []

    def connect(host_port: str) -> RawPeer:
        peer = RawPeer(host_port)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        await peer.close()
