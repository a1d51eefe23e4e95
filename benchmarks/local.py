"""Local kernel benchmark: prints one JSON object.

Measures, on uvloop when installed (the ``loop`` key says which):

* ``tell_msgs_per_s``: one sender tells 1,000,000 messages to a counter
  actor, timed until the actor has processed all. ``baseline_msgs_per_s`` is
  the same through a bare ``asyncio.Queue`` consumer task, in the same run;
  ``tell_vs_baseline`` their ratio. Both queues hold all messages (the actor
  is spawned with a mailbox of that capacity), so they do the same work.
* ``ask_per_s``, ``ask_p50_us``, ``ask_p99_us``: 20,000 sequential asks to an
  echo actor (and the bare-queue echo baseline ``baseline_ask_p50_us``).
* ``ping_pong_per_s``: two actors, 1,000 pings in flight, each pong answered
  by the next ping, until 500,000 exchanges.
* ``spawn_per_s``: 100,000 actors created, each handling one message;
  ``bytes_per_idle_actor``: RSS growth per actor over those 100,000.
  ``spawn_vs_baseline``: that rate divided by the rate of an asyncio
  baseline doing the same with one task per "actor", each reading its own
  ``asyncio.Queue`` (``baseline_spawn_per_s``), same count, same run.
* ``pipelined_asks_per_s``: 100,000 asks issued at once to one echo actor
  (``ask`` returns a future: no task per ask), then all awaited.
  ``pipelined_vs_baseline``: that rate divided by the same through bare
  futures put on an ``asyncio.Queue`` consumed by one task that completes
  each (``baseline_pipelined_per_s``).

Every timed phase, baselines included, starts after a full garbage
collection, so that one phase's garbage (100,000 stopped actors) is not
collected during the next one's timing.

Usage: ``python benchmarks/local.py [--runs N] [--verbose]`` (N > 1 reports medians).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from shoal import Actor, ActorSystem, Settings
from shoal.runtime import LocalActorRef

N_TELL = 1_000_000
N_ASK = 20_000
N_PING = 500_000
IN_FLIGHT = 1_000
N_SPAWN = 100_000
N_PIPELINED = 100_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class Counter(Actor):
    def __init__(self, target: int, done: asyncio.Future[None]) -> None:
        self.count = 0
        self.target = target
        self.done = done

    def receive(self, message: object) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)


class Echo(Actor):
    def receive(self, message: object) -> object:
        return message


class Ponger(Actor):
    def receive(self, message: object) -> None:
        sender = self.ctx.sender
        assert sender is not None
        sender.tell(message, self.ref)


class Pinger(Actor):
    def __init__(self, ponger: LocalActorRef, total: int, done: asyncio.Future[None]) -> None:
        self.ponger = ponger
        self.remaining = total
        self.received = 0
        self.done = done

    def receive(self, message: object) -> None:
        if message == "go":
            for i in range(IN_FLIGHT):
                self.ponger.tell(i, self.ref)
            self.remaining -= IN_FLIGHT
            return
        self.received += 1
        if self.remaining > 0:
            self.remaining -= 1
            self.ponger.tell(message, self.ref)
        elif self.received == N_PING:
            self.done.set_result(None)


class Once(Actor):
    """Spawned by class, as actors usually are: no per-actor closure is measured."""

    handled = 0
    done: asyncio.Future[None]

    def receive(self, message: object) -> None:
        cls = type(self)
        cls.handled += 1
        if cls.handled == N_SPAWN:
            cls.done.set_result(None)


async def bench_baseline_tell() -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.get_running_loop().create_future()

    async def consumer() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == N_TELL:
                done.set_result(None)
                return

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)
    start = time.perf_counter()
    put = queue.put_nowait
    for i in range(N_TELL):
        put(i)
    await done
    elapsed = time.perf_counter() - start
    await task
    return N_TELL / elapsed


async def bench_tell(system: ActorSystem) -> float:
    done = asyncio.get_running_loop().create_future()
    ref = system.spawn(lambda: Counter(N_TELL, done), capacity=N_TELL + 1)
    await asyncio.sleep(0)
    start = time.perf_counter()
    tell = ref.tell
    for i in range(N_TELL):
        tell(i)
    await done
    elapsed = time.perf_counter() - start
    await ref.stop()
    return N_TELL / elapsed


async def bench_ask(system: ActorSystem) -> dict[str, float]:
    ref = system.spawn(Echo)
    for i in range(1000):  # warm-up
        await ref.ask(i)
    samples = []
    perf = time.perf_counter
    start = perf()
    for i in range(N_ASK):
        t0 = perf()
        await ref.ask(i, timeout=5.0)
        samples.append(perf() - t0)
    elapsed = perf() - start
    await ref.stop()
    samples.sort()
    return {
        "ask_per_s": N_ASK / elapsed,
        "ask_p50_us": samples[len(samples) // 2] * 1e6,
        "ask_p99_us": samples[int(len(samples) * 0.99)] * 1e6,
    }


async def bench_baseline_ask() -> float:
    requests: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def echo() -> None:
        while True:
            value, reply = await requests.get()
            reply.set_result(value)

    task = asyncio.create_task(echo())
    loop = asyncio.get_running_loop()
    samples = []
    perf = time.perf_counter
    for i in range(N_ASK):
        t0 = perf()
        fut: asyncio.Future[int] = loop.create_future()
        requests.put_nowait((i, fut))
        await fut
        samples.append(perf() - t0)
    task.cancel()
    samples.sort()
    return samples[len(samples) // 2] * 1e6


async def bench_ping_pong(system: ActorSystem) -> float:
    done = asyncio.get_running_loop().create_future()
    ponger = system.spawn(Ponger)
    pinger = system.spawn(lambda: Pinger(ponger, N_PING, done))
    start = time.perf_counter()
    pinger.tell("go")
    await done
    elapsed = time.perf_counter() - start
    await asyncio.gather(pinger.stop(), ponger.stop())
    return N_PING / elapsed


async def bench_spawn(system: ActorSystem) -> dict[str, float]:
    done = asyncio.get_running_loop().create_future()
    Once.handled = 0
    Once.done = done
    gc.collect()
    rss_before = _rss_bytes()
    start = time.perf_counter()
    refs = []
    for _ in range(N_SPAWN):
        ref = system.spawn(Once)
        ref.tell(None)
        refs.append(ref)
    await done
    elapsed = time.perf_counter() - start
    gc.collect()
    rss_after = _rss_bytes()
    # Stopped and collected, so that the asyncio baseline measured next does not run
    # (and collect garbage) beside 100,000 live actors.
    await asyncio.gather(*[ref.stop() for ref in refs])
    del refs
    gc.collect()
    return {
        "spawn_per_s": N_SPAWN / elapsed,
        "bytes_per_idle_actor": (rss_after - rss_before) / N_SPAWN,
    }


async def bench_baseline_spawn() -> float:
    """One task per "actor", each waiting on its own queue for one message."""
    done = asyncio.get_running_loop().create_future()
    handled = 0

    async def actor(inbox: asyncio.Queue[object]) -> None:
        nonlocal handled
        await inbox.get()
        handled += 1
        if handled == N_SPAWN:
            done.set_result(None)

    gc.collect()
    start = time.perf_counter()
    tasks = []
    for _ in range(N_SPAWN):
        inbox: asyncio.Queue[object] = asyncio.Queue()
        tasks.append(asyncio.create_task(actor(inbox)))
        inbox.put_nowait(None)
    await done
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    return N_SPAWN / elapsed


async def bench_pipelined(system: ActorSystem) -> float:
    ref = system.spawn(Echo, capacity=N_PIPELINED + 1)
    await asyncio.gather(*[ref.ask(i) for i in range(1000)])  # warm-up
    gc.collect()
    start = time.perf_counter()
    ask = ref.ask
    answers = [ask(i, timeout=30.0) for i in range(N_PIPELINED)]
    for answer in answers:
        await answer
    elapsed = time.perf_counter() - start
    await ref.stop()
    return N_PIPELINED / elapsed


async def bench_baseline_pipelined() -> float:
    requests: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def echo() -> None:
        while True:
            value, reply = await requests.get()
            reply.set_result(value)

    task = asyncio.create_task(echo())
    loop = asyncio.get_running_loop()
    gc.collect()
    start = time.perf_counter()
    futures = []
    for i in range(N_PIPELINED):
        fut: asyncio.Future[int] = loop.create_future()
        requests.put_nowait((i, fut))
        futures.append(fut)
    for fut in futures:
        await fut
    elapsed = time.perf_counter() - start
    task.cancel()
    return N_PIPELINED / elapsed


async def one_run() -> dict[str, float]:
    result: dict[str, float] = {}
    async with ActorSystem("bench", Settings(ask_timeout=5.0)) as system:
        gc.collect()
        result["baseline_msgs_per_s"] = await bench_baseline_tell()
        gc.collect()
        result["tell_msgs_per_s"] = await bench_tell(system)
        result["tell_vs_baseline"] = result["tell_msgs_per_s"] / result["baseline_msgs_per_s"]
        gc.collect()
        result.update(await bench_ask(system))
        gc.collect()
        result["baseline_ask_p50_us"] = await bench_baseline_ask()
        gc.collect()
        result["ping_pong_per_s"] = await bench_ping_pong(system)
        # Spawn right after ping-pong, before the pipelined phase: 100,000 answered
        # asks stay referenced until their timeouts' sweep, and a heap that large
        # makes every garbage collection during the spawn phase dearer.
        result.update(await bench_spawn(system))  # collects before it starts
        # After bench_spawn: its RSS growth must not be hidden by memory the baseline freed.
        result["baseline_spawn_per_s"] = await bench_baseline_spawn()
        result["spawn_vs_baseline"] = result["spawn_per_s"] / result["baseline_spawn_per_s"]
        gc.collect()
        result["pipelined_asks_per_s"] = await bench_pipelined(system)
        result["baseline_pipelined_per_s"] = await bench_baseline_pipelined()
        result["pipelined_vs_baseline"] = (
            result["pipelined_asks_per_s"] / result["baseline_pipelined_per_s"]
        )
    gc.collect()
    return result


def _run(main: Callable[[], Coroutine[Any, Any, dict[str, float]]]) -> tuple[dict[str, float], str]:
    try:
        import uvloop  # noqa: PLC0415 - optional dependency
    except ImportError:
        return asyncio.run(main()), "asyncio"
    return uvloop.run(main()), "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported")
    parser.add_argument("--verbose", action="store_true", help="each run's figures to stderr")
    args = parser.parse_args()
    runs = []
    loop_name = "asyncio"
    for _ in range(args.runs):
        result, loop_name = _run(one_run)
        runs.append(result)
        if args.verbose:
            print(json.dumps({k: round(v, 3) for k, v in result.items()}), file=sys.stderr)
    report: dict[str, object] = {
        key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]
    }
    report["loop"] = loop_name
    report["runs"] = args.runs
    report["python"] = sys.version.split()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
