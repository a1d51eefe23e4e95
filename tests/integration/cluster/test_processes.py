"""Real node processes (``shoal node --events``) on loopback, 3 and 5 of them:
formation, a SIGKILL detected and removed, graceful leave with exit code 0, restart as a
new incarnation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster import ClusterSettings

pytestmark = pytest.mark.multiprocess

REPO = Path(__file__).resolve().parents[3]
SAFETY = 60.0  # seconds; only reached when something hangs
Event = dict[str, Any]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class NodeProcess:
    """One node process; its JSON lines are read into ``events``."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, log_dir: Path, port: int, seeds: list[str]) -> NodeProcess:
        log = log_dir / f"node-{port}-{time.monotonic_ns()}.log"
        args = ["node", "--system", "proc", "--port", str(port), "--http-port", "0"]
        args += ["--preset", "testing", "--events"]
        for seed in seeds:
            args += ["--seed", seed]
        with log.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shoal.cli",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            )
        return cls(proc, log)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, match: Callable[[Event], bool]) -> Event:
        async def find() -> Event:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                if self.proc.returncode is not None and self._reader.done():
                    raise AssertionError(f"node exited; log: {self.log.read_text()[-2000:]}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), SAFETY)

    async def up(self) -> Event:
        return await self.wait_for(lambda e: e["event"] == "up")

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), SAFETY)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        if node.proc.returncode is None:
            node.proc.kill()
            await node.proc.wait()


def _removed(address: str, uid: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == "MemberRemoved" and e["node"] == address and e["uid"] == uid


def _up(address: str, uid: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == "MemberUp" and e["node"] == address and e["uid"] == uid


async def _form(nodes: list[NodeProcess], tmp_path: Path, n: int) -> list[Event]:
    ports = free_ports(n)
    seed = f"proc@127.0.0.1:{ports[0]}"
    nodes.extend([await NodeProcess.start(tmp_path, port, [seed]) for port in ports])
    ups = [await node.up() for node in nodes]
    for node, mine in zip(nodes, ups, strict=True):
        for up in ups:
            if up is not mine:
                await node.wait_for(_up(up["node"], up["uid"]))
    return ups


async def test_three_processes_form_survive_a_sigkill_and_leave_gracefully(
    nodes: list[NodeProcess], tmp_path: Path
) -> None:
    ups = await _form(nodes, tmp_path, 3)
    victim = ups[2]
    killed_at = time.monotonic()
    nodes[2].proc.send_signal(signal.SIGKILL)
    for node in nodes[:2]:
        await node.wait_for(_removed(victim["node"], victim["uid"]))
    took = time.monotonic() - killed_at
    # The bound holds on virtual time; real processes on a busy machine get slack.
    assert took < ClusterSettings.testing().removal_bound + 2.0
    nodes[1].proc.send_signal(signal.SIGTERM)
    assert await nodes[1].exit_code() == 0
    stopped = nodes[1].events[-1]
    assert (stopped["event"], stopped["reason"], stopped["exit"]) == ("stopped", "cluster-leave", 0)
    await nodes[0].wait_for(
        lambda e: (
            e["event"] == "MemberRemoved"
            and e["node"] == ups[1]["node"]
            and e["previous"] == "Exiting"
        )
    )
    nodes[0].proc.send_signal(signal.SIGTERM)
    assert await nodes[0].exit_code() == 0


async def test_a_restarted_process_joins_again_as_a_new_incarnation(
    nodes: list[NodeProcess], tmp_path: Path
) -> None:
    ups = await _form(nodes, tmp_path, 3)
    old = ups[2]
    nodes[2].proc.send_signal(signal.SIGKILL)
    await nodes[2].exit_code()
    port = int(old["node"].rpartition(":")[2])
    nodes.append(await NodeProcess.start(tmp_path, port, [ups[0]["node"].removeprefix("shoal://")]))
    new = await nodes[3].up()
    assert new["node"] == old["node"]
    assert new["uid"] != old["uid"]
    for node in nodes[:2]:
        await node.wait_for(_removed(old["node"], old["uid"]))
        await node.wait_for(_up(new["node"], new["uid"]))


@pytest.mark.slow
async def test_five_processes_form_and_remove_a_killed_one(
    nodes: list[NodeProcess], tmp_path: Path
) -> None:
    ups = await _form(nodes, tmp_path, 5)
    victim = ups[3]
    nodes[3].proc.send_signal(signal.SIGKILL)
    for node in (*nodes[:3], nodes[4]):
        await node.wait_for(_removed(victim["node"], victim["uid"]))
    for node in (*nodes[:3], nodes[4]):
        node.proc.send_signal(signal.SIGTERM)
    for node in (*nodes[:3], nodes[4]):
        assert await node.exit_code() == 0
