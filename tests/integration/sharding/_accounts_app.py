"""A ``shoal node --app`` application for the sharding acceptance tests: persistent
accounts under continuous load, and a probe of every entity start and stop.

Environment (paths are shared by the test's nodes, on one host):

* ``SHARDING_TEST_DB``: the SQLite journal every node uses (one file, WAL).
* ``SHARDING_TEST_PROBE``: every entity start (once recovered) and stop is
  appended as a JSON line ``{"ev", "entity", "node", "t"}`` (``t``: wall
  clock, the same for every process of the host); one ``write`` per line on
  a file opened for appending, so lines of several processes never mix.
* ``SHARDING_TEST_LOAD``: ``1`` to run a loader on this node: it keeps
  ``SHARDING_TEST_CONCURRENCY`` asks ``Deposit(1)`` in flight to accounts
  ``a0..a{SHARDING_TEST_ENTITIES - 1}`` chosen at random, until the file
  ``SHARDING_TEST_STOP`` exists. Then it asks every account for its total
  and prints one line ``{"event": "load", "ok": {account: successful
  deposits}, "errors": {error type: count}, "late_errors": n, "totals":
  {account: [total, sequence nr] or error}}``; ``late_errors`` counts the
  failures of asks sent after the file ``SHARDING_TEST_SETTLED`` appeared.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.persistence import (
    Persistence,
    PersistenceSettings,
    PersistentActor,
    SqliteSettings,
)
from shoal.runtime import ActorSystem, ShutdownPhase, message
from shoal.sharding import Sharding, ShardingSettings

SETTINGS = ShardingSettings.testing(number_of_shards=30)
ASK_TIMEOUT = 10.0


@message
@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int


@message
@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int


@message
@dataclass(frozen=True, slots=True)
class Total:
    pass


def _probe(ev: str, entity: str, node: str) -> None:
    path = os.environ.get("SHARDING_TEST_PROBE")
    if path is None:
        return
    line = json.dumps({"ev": ev, "entity": entity, "node": node, "t": time.time()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Account(PersistentActor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return f"account|{self.entity_id}"

    def recovery_completed(self) -> None:
        _probe("start", self.entity_id, self.ctx.system.address)

    def stopped(self) -> None:
        _probe("stop", self.entity_id, self.ctx.system.address)

    async def on_command(self, msg: Deposit | Total) -> object:
        match msg:
            case Deposit(amount):
                await self.persist(Deposited(amount))
                return self.total
            case Total():
                return [self.total, self.last_sequence_nr]
        return None

    def on_event(self, event: Deposited) -> None:
        self.total += event.amount


async def start(system: ActorSystem) -> None:
    db = os.environ.get("SHARDING_TEST_DB")
    if db is not None:
        Persistence.configure(system, PersistenceSettings(sqlite=SqliteSettings(path=db)))
    region = await Sharding.get(system).start("account", Account, SETTINGS)
    if os.environ.get("SHARDING_TEST_LOAD") != "1":
        return
    entities = int(os.environ.get("SHARDING_TEST_ENTITIES", "60"))
    concurrency = int(os.environ.get("SHARDING_TEST_CONCURRENCY", "20"))
    stop = Path(os.environ["SHARDING_TEST_STOP"])
    settled = Path(os.environ["SHARDING_TEST_SETTLED"])
    ids = [f"a{i}" for i in range(entities)]
    ok: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    late = 0
    rng = random.Random(os.getpid())
    flags = {"stop": False, "settled": False}

    async def watch_files() -> None:
        while not flags["stop"]:
            flags["settled"] = await asyncio.to_thread(settled.exists)
            flags["stop"] = await asyncio.to_thread(stop.exists)
            await asyncio.sleep(0.05)

    async def asker() -> None:
        nonlocal late
        while not flags["stop"]:
            entity = rng.choice(ids)
            after_settling = flags["settled"]
            try:
                await region.entity(entity).ask(Deposit(1), timeout=ASK_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                errors[type(exc).__name__] += 1
                late += after_settling
                await asyncio.sleep(0.05)
            else:
                ok[entity] += 1

    async def load() -> None:
        await asyncio.gather(watch_files(), *(asker() for _ in range(concurrency)))
        totals: dict[str, Any] = {}
        for entity in ids:
            try:
                totals[entity] = await region.entity(entity).ask(Total(), timeout=ASK_TIMEOUT)
            except Exception as exc:
                totals[entity] = type(exc).__name__
        line = {
            "event": "load",
            "ok": dict(ok),
            "errors": dict(errors),
            "late_errors": late,
            "totals": totals,
        }
        print(json.dumps(line), flush=True)

    task = system.loop.create_task(load())

    async def stop_load() -> None:
        task.cancel()

    system.coordinated_shutdown.add_task(
        ShutdownPhase.BEFORE_SERVICE_UNBIND, "test-load", stop_load
    )
