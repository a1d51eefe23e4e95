"""Drives ``_journal_agent`` child processes (one per simulated node) from a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


class Agent:
    """One child process with its own journal instance; ``ask`` sends a command.

    Commands run concurrently in the agent; answers are matched by id.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            answer: dict[str, Any] = json.loads(line)
            fut = self._waiting.pop(answer.pop("id"))
            if not fut.done():
                fut.set_result(answer)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(AssertionError("the agent exited"))

    async def ask(self, **command: object) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        self._next_id += 1
        fut = self._waiting[self._next_id] = asyncio.get_running_loop().create_future()
        stdin.write(json.dumps({**command, "id": self._next_id}).encode() + b"\n")
        await stdin.drain()
        answer = await fut
        assert "error" not in answer, answer
        return answer

    async def writes(self, writer: str, *specs: tuple[str, int, int]) -> list[Any]:
        """Outcomes (``None`` or ``[error class, message]``) of writes sent in one loop turn."""
        outcomes: list[Any] = (await self.ask(op="writes", writer=writer, writes=specs))["outcomes"]
        return outcomes


async def _spawn(config: dict[str, object]) -> Agent:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.persistence._journal_agent",
        json.dumps(config),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert json.loads(await process.stdout.readline()) == {"ready": True}
    return Agent(process)


@contextlib.asynccontextmanager
async def agents(config: dict[str, object], count: int) -> AsyncIterator[list[Agent]]:
    """``count`` agents on the storage ``config`` names; stopped (killed if need be) after."""
    started = await asyncio.gather(*(_spawn(config) for _ in range(count)))
    try:
        yield list(started)
    finally:
        for agent in started:
            stdin = agent.process.stdin
            if agent.process.returncode is None and stdin is not None:
                stdin.write(b'{"op": "quit"}\n')
                with contextlib.suppress(ConnectionError):
                    await stdin.drain()
        for agent in started:
            try:
                await asyncio.wait_for(agent.process.wait(), 30)
            except TimeoutError:
                agent.process.kill()
                await agent.process.wait()
            await agent._reader
