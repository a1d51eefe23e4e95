"""A ``shoal node --app`` application for the real-process sharding tests.

It starts sharding of ``counter`` and then, every ``SHARDING_TEST_INTERVAL``
seconds, asks ``SHARDING_TEST_ENTITIES`` entities where they run and prints
one JSON line (``{"event": "round", ...}``) on stdout, where the test's
node harness reads milestones.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

from shoal.runtime import Actor, ActorSystem, ShutdownPhase, message
from shoal.sharding import Sharding, ShardingSettings

SETTINGS = ShardingSettings.testing(number_of_shards=30)


@message
@dataclass(frozen=True, slots=True)
class Where:
    pass


class Counter(Actor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        self.asked = 0

    def receive(self, msg: Where) -> list[object]:
        self.asked += 1
        return [self.ctx.system.address, self.asked]


async def start(system: ActorSystem) -> None:
    region = await Sharding.get(system).start("counter", Counter, SETTINGS)
    entities = int(os.environ.get("SHARDING_TEST_ENTITIES", "30"))
    interval = float(os.environ.get("SHARDING_TEST_INTERVAL", "0.5"))

    async def rounds() -> None:
        number = 0
        while system.is_running:
            number += 1
            ids = [f"e{i}" for i in range(entities)]
            results = await asyncio.gather(
                *(region.entity(e).ask(Where(), timeout=2.0) for e in ids), return_exceptions=True
            )
            answers = {e: r[0] for e, r in zip(ids, results, strict=True) if isinstance(r, list)}
            errors = sorted({type(r).__name__ for r in results if isinstance(r, BaseException)})
            line = {"event": "round", "n": number, "answers": answers, "errors": errors}
            print(json.dumps(line), flush=True)
            await asyncio.sleep(interval)

    task = system.loop.create_task(rounds())

    async def stop_rounds() -> None:
        task.cancel()

    system.coordinated_shutdown.add_task(
        ShutdownPhase.BEFORE_SERVICE_UNBIND, "test-rounds", stop_rounds
    )
