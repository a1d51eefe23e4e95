"""Remote transport benchmark: two node processes on loopback; prints one JSON object.

Node B hosts the targets; node A drives every measurement and reports. Both
run on uvloop when installed (``loop`` says which). Figures:

* ``remote_tell_msgs_per_s``: A tells 1,000,000 small messages (a registered
  message class whose payload is 10 bytes) to a counter on B, timed until B
  has processed all of them (B then tells A, whose clock stops).
* ``remote_ping_pong_per_s``: a pinger on A and a ponger on B, 1,000 pings
  in flight, each pong answered by the next ping, until 200,000 exchanges.
* ``remote_ask_p50_us`` / ``remote_ask_p99_us``: 20,000 sequential asks from
  A to an echo actor on B (after 2,000 warm-up asks).
* ``remote_pipelined_asks_per_s``: 100,000 asks from A to an echo actor on B
  issued at once (each ``ref.ask(i)`` call, no task of the benchmark's own
  per ask), then all awaited together; timed from the first ask to the last
  answer (after a warm-up round of 10,000).
* ``payload_1kib_msgs_per_s``: as the tell figure, 200,000 messages of 1 KiB.
* ``baseline_grpc_ask_p50_us`` / ``baseline_grpc_ask_p99_us``: the natural
  baseline of the ask figures, measured in the same run: 20,000 sequential
  round trips of 10 bytes over a bare grpc.aio bidi stream between the same
  two processes (B echoes on a raw gRPC server in its own loop, same pinning
  and gRPC I/O settings); ``ask_p50_vs_baseline`` is Shoal's p50 over it.
* ``wire_bytes_per_small_msg``: frame bytes A wrote per envelope during the
  tell run (full batches), including gRPC's 5-byte message prefix per frame;
  HTTP/2, TCP and IP headers are not counted.

The sender uses ``tell`` and, once per 1,000 messages, ``await ref.send()``,
which waits while the outbox is half full or more (it is bounded). Both nodes
run a full garbage collection before each timed phase. By default node A is
pinned to one CPU and node B to another (``--no-pin`` lets the scheduler
move them); the JSON says which.

``--grpc-io legacy`` (the default) runs both nodes with
``GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener``, gRPC's
previous (iomgr) socket layer. With grpcio's default EventEngine endpoints,
starting each stream operation wakes another gRPC thread (an eventfd write
that dominates the asking node's profile); that costs ~30 us per round trip
on this machine (a bare grpc.aio round trip: ~110 us instead of ~140 us).
``--grpc-io event-engine`` measures grpcio's default.

Usage: ``python benchmarks/remote.py [--runs N] [--loop asyncio|uvloop]``
(N > 1 reports medians; each run starts fresh processes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import grpc

from shoal import Actor, ActorRef, ActorSystem, Settings, message
from shoal.remote import RemoteSettings, Remoting

N_TELL = 1_000_000
N_1KIB = 200_000
N_PING = 200_000
IN_FLIGHT = 1_000
N_ASK = 20_000
N_PIPELINED = 100_000
N_PIPELINED_WARMUP = 10_000
N_WARMUP = 2_000
SEQ_BASE = 1 << 16
# GRPC_EXPERIMENTS for each --grpc-io choice, set in both node processes.
GRPC_IO = {
    "legacy": "-event_engine_client,-event_engine_listener",
    "event-engine": "",
}  # msgpack {"seq": n} is exactly 10 bytes for 2**16 <= n < 2**32


@message(manifest="bench.Small")
@dataclass(frozen=True, slots=True)
class Small:
    seq: int


class Counter(Actor):
    """Counts messages; tells ``notify`` once ``expected`` arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = -1
        self.notify: ActorRef | None = None

    def receive(self, msg: object) -> object:
        if type(msg) is list:
            _, self.expected, self.notify = msg
            self.count = 0
            return "ok"
        self.count += 1
        if self.count == self.expected and self.notify is not None:
            self.notify.tell("done")
        return None


class Ponger(Actor):
    def receive(self, msg: object) -> None:
        sender = self.ctx.sender
        if sender is not None:
            sender.tell(msg, self.ref)


class Echo(Actor):
    def receive(self, msg: object) -> object:
        return msg


class Collector(Actor):
    """Runs a full garbage collection when asked (before each timed phase)."""

    def receive(self, msg: object) -> None:
        gc.collect()


class Waiter(Actor):
    """Completes ``future`` when told anything."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def receive(self, msg: object) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Pinger(Actor):
    def __init__(self, ponger: ActorRef, total: int, done: asyncio.Future[None]) -> None:
        self.ponger = ponger
        self.remaining = total
        self.received = 0
        self.total = total
        self.done = done

    def receive(self, msg: object) -> None:
        if msg == "go":
            for i in range(IN_FLIGHT):
                self.ponger.tell(i, self.ref)
            self.remaining -= IN_FLIGHT
            return
        self.received += 1
        if self.remaining > 0:
            self.remaining -= 1
            self.ponger.tell(msg, self.ref)
        elif self.received == self.total:
            self.done.set_result(None)


def _settings() -> tuple[Settings, RemoteSettings]:
    return Settings(ask_timeout=30.0, messages=(Small,)), RemoteSettings()


async def _raw_echo(request_iterator: Any, context: Any) -> None:
    """The baseline: a bare gRPC bidi stream that echoes each message's bytes."""
    while True:
        message = await context.read()
        if message is grpc.aio.EOF:
            return
        await context.write(message)


async def node_b() -> None:
    settings, remote = _settings()
    raw = grpc.aio.server()
    raw.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(_raw_echo)}
            ),
        )
    )
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    await raw.start()
    async with ActorSystem("bench", settings) as system:
        remoting = await Remoting.start(system, remote)
        system.spawn(Counter, name="counter", capacity=N_TELL + 1)
        system.spawn(Ponger, name="ponger", capacity=IN_FLIGHT * 4)
        system.spawn(Echo, name="echo")
        system.spawn(Echo, name="pipelined-echo", capacity=N_PIPELINED + 1)
        system.spawn(Collector, name="gc")
        print(f"READY {remoting.address} {raw_port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await raw.stop(None)


async def _baseline_round_trips(raw_port: int) -> list[float]:
    """Sequential 10-byte round trips over a bare grpc.aio bidi stream."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}") as channel:
        call = channel.stream_stream("/bench.Echo/Stream")()
        payload = bytes(10)
        for _ in range(N_WARMUP):
            await call.write(payload)
            await call.read()
        samples = []
        perf = time.perf_counter
        for _ in range(N_ASK):
            t0 = perf()
            await call.write(payload)
            await call.read()
            samples.append(perf() - t0)
        await call.done_writing()
    samples.sort()
    return samples


async def _pipelined(echo: ActorRef, n: int) -> float:
    """Issue ``n`` asks to ``echo`` at once, then await them all; seconds elapsed.

    Each ask is the ref's own awaitable: where ``ask`` returns a future this
    makes no task per ask; where it is a coroutine, ``gather`` wraps each in
    a task (what a caller of that API pays too).
    """
    start = time.perf_counter()
    asks = [echo.ask(i) for i in range(n)]
    answers = await asyncio.gather(*asks)
    elapsed = time.perf_counter() - start
    if answers[-1] != n - 1 or len(answers) != n:
        raise RuntimeError("pipelined asks were not all answered in order")
    return elapsed


async def _stream(system: ActorSystem, target: ActorRef, messages: list[Any]) -> float:
    """Tell ``messages`` to ``target`` (a counter); seconds until it processed all."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiter = system.spawn(lambda: Waiter(done))
    assert await target.ask(["reset", len(messages), waiter]) == "ok"
    start = time.perf_counter()
    tell = target.tell
    for i, msg in enumerate(messages):
        if i % 1000 == 999:
            await target.send(msg)
        else:
            tell(msg)
    await done
    elapsed = time.perf_counter() - start
    await waiter.stop()
    return elapsed


async def node_a(peer: str, raw_port: int) -> dict[str, Any]:
    settings, remote = _settings()
    result: dict[str, Any] = {}
    async with ActorSystem("bench", settings) as system:
        remoting = await Remoting.start(system, remote)
        counter = system.resolve(f"shoal://{peer}/user/counter")
        echo = system.resolve(f"shoal://{peer}/user/echo")
        ponger = system.resolve(f"shoal://{peer}/user/ponger")
        collector = system.resolve(f"shoal://{peer}/user/gc")

        async def collect() -> None:
            """A full collection on both nodes, so no phase pays for the previous one."""
            gc.collect()
            await collector.ask("collect")

        for i in range(N_WARMUP):
            await echo.ask(i)
        await _stream(system, counter, [Small(SEQ_BASE + i) for i in range(10_000)])

        metrics = remoting.metrics
        smalls = [Small(SEQ_BASE + i) for i in range(N_TELL)]
        await collect()
        bytes0, frames0, env0 = metrics.bytes_sent, metrics.frames_sent, metrics.envelopes_sent
        elapsed = await _stream(system, counter, smalls)
        result["remote_tell_msgs_per_s"] = N_TELL / elapsed
        wire = (metrics.bytes_sent - bytes0) + 5 * (metrics.frames_sent - frames0)
        result["wire_bytes_per_small_msg"] = wire / (metrics.envelopes_sent - env0)
        del smalls
        await collect()

        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pinger = system.spawn(lambda: Pinger(ponger, N_PING, done), capacity=IN_FLIGHT * 4)
        start = time.perf_counter()
        pinger.tell("go")
        await done
        result["remote_ping_pong_per_s"] = N_PING / (time.perf_counter() - start)
        await pinger.stop()
        await collect()

        samples = []
        perf = time.perf_counter
        for i in range(N_ASK):
            t0 = perf()
            await echo.ask(i)
            samples.append(perf() - t0)
        samples.sort()
        result["remote_ask_p50_us"] = samples[len(samples) // 2] * 1e6
        result["remote_ask_p99_us"] = samples[int(len(samples) * 0.99)] * 1e6
        await collect()
        base = await _baseline_round_trips(raw_port)
        result["baseline_grpc_ask_p50_us"] = base[len(base) // 2] * 1e6
        result["baseline_grpc_ask_p99_us"] = base[int(len(base) * 0.99)] * 1e6
        result["ask_p50_vs_baseline"] = (
            result["remote_ask_p50_us"] / result["baseline_grpc_ask_p50_us"]
        )

        pipelined = system.resolve(f"shoal://{peer}/user/pipelined-echo")
        await _pipelined(pipelined, N_PIPELINED_WARMUP)
        await collect()
        result["remote_pipelined_asks_per_s"] = N_PIPELINED / await _pipelined(
            pipelined, N_PIPELINED
        )

        kib = bytes(1024)
        await collect()
        elapsed = await _stream(system, counter, [kib] * N_1KIB)
        result["payload_1kib_msgs_per_s"] = N_1KIB / elapsed
    return result


def _run_loop(main: Any, loop_name: str) -> Any:
    if loop_name == "uvloop":
        import uvloop  # noqa: PLC0415 - optional dependency

        return uvloop.run(main)
    return asyncio.run(main)


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return "asyncio"
    return "uvloop"


def _pin(cpu: int) -> None:
    """Keep this process (and the threads it starts, gRPC's included) on one CPU."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        os.sched_setaffinity(0, {available[cpu]})


def one_run(loop_name: str, pin: bool, grpc_io: str) -> dict[str, Any]:
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR", "GRPC_EXPERIMENTS": GRPC_IO[grpc_io]}
    script = os.path.abspath(__file__)
    pin_flag = "--pin" if pin else "--no-pin"
    cmd = [sys.executable, script, "--loop", loop_name, pin_flag, "--role"]
    b = subprocess.Popen(
        [*cmd, "b"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert b.stdout is not None
        line = b.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"node B did not start: {line}")
        a = subprocess.run(
            [*cmd, "a", "--peer", line[1], "--raw-port", line[2]],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        if a.returncode != 0:
            raise RuntimeError(f"node A failed:\n{a.stderr}")
        return dict(json.loads(a.stdout.strip().splitlines()[-1]))
    finally:
        if b.stdin is not None:
            b.stdin.close()
        try:
            b.wait(timeout=30)
        except subprocess.TimeoutExpired:
            b.kill()
            b.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default=_default_loop())
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin node A to CPU 0 and node B to CPU 1 (when the machine has two or more)",
    )
    parser.add_argument(
        "--grpc-io",
        choices=sorted(GRPC_IO),
        default="legacy",
        help="gRPC's I/O engine in both nodes (see the module docstring)",
    )
    parser.add_argument("--role", choices=["a", "b"], help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--raw-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None and args.pin:
        _pin(0 if args.role == "a" else 1)
    if args.role == "b":
        _run_loop(node_b(), args.loop)
        return
    if args.role == "a":
        print(json.dumps(_run_loop(node_a(args.peer, args.raw_port), args.loop)), flush=True)
        return
    runs = [one_run(args.loop, args.pin, args.grpc_io) for _ in range(args.runs)]
    result: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result = {k: round(v, 1) for k, v in result.items()}
    result["loop"] = args.loop
    result["pinned"] = args.pin
    result["grpc_io"] = args.grpc_io
    result["runs"] = args.runs
    if args.runs > 1:
        result["all_runs"] = runs
    print(json.dumps(result))


if __name__ == "__main__":
    main()
