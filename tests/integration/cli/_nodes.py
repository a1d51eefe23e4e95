"""Real ``shoal node`` processes for tests, and the ``shoal`` admin commands."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHOAL = [sys.executable, "-m", "shoal.cli"]
STARTUP = 30.0  # seconds; generous for a loaded 2-core machine


class NodeProcess:
    """A ``shoal node`` process; its stdout JSON milestones arrive on a queue."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.log = log
        self._stderr = log.open("wb")
        self.proc = subprocess.Popen(
            [*(prefix or []), *SHOAL, "node", *argv],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.started: dict[str, Any] = {}
        self._held: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "garbage", "line": line})

    def wait_event(self, name: str, timeout: float = STARTUP) -> dict[str, Any]:
        """The next ``name`` milestone; other milestones meanwhile stay for later calls."""
        for i, event in enumerate(self._held):
            if event["event"] == name:
                del self._held[i]
                return self._got(event)
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {name!r} event within {timeout} s; exit={self.proc.poll()}, "
                    f"other events {self._held}\n{self.stderr()}"
                ) from None
            if event["event"] == name:
                return self._got(event)
            self._held.append(event)

    def _got(self, event: dict[str, Any]) -> dict[str, Any]:
        if event["event"] == "started":
            self.started = event
        return event

    @property
    def address(self) -> str:
        """``system@host:port``."""
        return str(self.started["node"]).removeprefix("shoal://")

    @property
    def http(self) -> str:
        return str(self.started["http"])

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def wait_exit(self, timeout: float = STARTUP) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node did not exit within {timeout} s\n{self.stderr()}") from None

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)  # it ends at the pipe's end
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


def shoal(
    *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a ``shoal`` command to completion (after ``prefix``, e.g. ``ip netns exec``)."""
    return subprocess.run(
        [*(prefix or []), *SHOAL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def members(node: NodeProcess) -> dict[str, Any]:
    result = shoal("members", "--node", node.http, "--json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def eventually(predicate: Callable[[], bool], timeout: float = STARTUP) -> None:
    """Poll another process's state until ``predicate`` holds (there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.05)


class Nodes:
    """Starts nodes; kills what is left at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[NodeProcess] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> NodeProcess:
        base = ["--preset", "testing", "--port", "0", "--http-port", "0"]
        node = NodeProcess([*base, *argv], self.tmp / f"node{len(self.all)}.log", env)
        self.all.append(node)
        return node

    def cluster(self, n: int) -> list[NodeProcess]:
        first = self.start()
        first.wait_event("started")
        rest = [self.start("--seed", first.address) for _ in range(n - 1)]
        for node in rest:
            node.wait_event("started")
        for node in [first, *rest]:
            node.wait_event("up")
        return [first, *rest]

    def close(self) -> None:
        for node in self.all:
            node.kill()
