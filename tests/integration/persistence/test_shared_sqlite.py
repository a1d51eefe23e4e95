"""Several node processes share one SQLite journal file: never two writers of one number.

Each "node" is a real child process (``_journal_agent``) with its own
journal instance on the same file (WAL), as the nodes of a cluster on one
host run. A persistence id moves between them the way cluster sharding moves
an entity: the new owner recovers what the previous one wrote, and the
previous (stale) owner's later writes are refused with
``SequenceConflictError``, only its own, never the writes grouped with it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ._agents import agents

pytestmark = pytest.mark.multiprocess


def _sqlite(path: Path) -> dict[str, object]:
    return {"plugin": "sqlite", "path": str(path)}


async def test_a_stale_owner_in_another_process_is_refused_only_its_own_write(
    tmp_path: Path,
) -> None:
    async with agents(_sqlite(tmp_path / "shared.db"), 2) as (old, new):
        assert await old.writes("old", ("moving", 1, 3)) == [None]
        # The id moves: the new owner recovers, then writes on.
        assert (await new.ask(op="highest", pid="moving"))["highest"] == 3
        assert await new.writes("new", ("moving", 4, 2)) == [None]
        # The old owner still believes it holds 3 events (its fencing cache says so):
        # its write is refused, and only its own; the other ids in its group commit.
        outcomes = await old.writes("old", ("other-a", 1, 1), ("moving", 4, 1), ("other-b", 1, 2))
        assert outcomes[0] is None
        assert outcomes[2] is None
        assert outcomes[1] is not None
        name, message = outcomes[1]
        assert name == "SequenceConflictError"
        assert "'moving'" in message
        assert "expects 6" in message
        # Refused again, exactly, however often it tries; never an overwrite.
        [again] = await old.writes("old", ("moving", 5, 1))
        assert again is not None
        assert again[0] == "SequenceConflictError"
        events = (await new.ask(op="events", pid="moving"))["events"]
        assert events == [[1, "old"], [2, "old"], [3, "old"], [4, "new"], [5, "new"]]
        assert (await old.ask(op="highest", pid="other-b"))["highest"] == 2


async def test_three_processes_write_one_file_while_an_id_moves_between_them(
    tmp_path: Path,
) -> None:
    config = _sqlite(tmp_path / "cluster.db")
    async with agents(config, 3) as nodes:
        bursts = [
            asyncio.ensure_future(
                node.ask(
                    op="burst", prefix=f"n{i}", ids=50, events=40, writer=f"w{i}", snapshot_every=10
                )
            )
            for i, node in enumerate(nodes)
        ]
        # Meanwhile one id moves around the three nodes: each owner recovers the
        # previous owner's events, writes its own, and the previous owner, still
        # writing on its stale view, is refused.
        seq = 0
        for step in range(6):
            owner, stale = nodes[step % 3], nodes[(step - 1) % 3]
            assert (await owner.ask(op="highest", pid="mover"))["highest"] == seq
            assert await owner.writes(f"owner{step}", ("mover", seq + 1, 5)) == [None]
            seq += 5
            if step:
                [outcome] = await stale.writes(f"owner{step - 1}", ("mover", seq - 4, 1))
                assert outcome is not None
                assert outcome[0] == "SequenceConflictError"
        results = await asyncio.gather(*bursts)
        for result in results:
            assert result["failures"] == {}, results  # no "database is locked", no conflict
            assert result["acked"] == 50 * 40
        events = (await nodes[0].ask(op="events", pid="mover"))["events"]
        assert [seq for seq, _ in events] == list(range(1, 31))
        assert [writer for _, writer in events] == [f"owner{n // 5}" for n in range(30)]
        for i in range(3):
            for pid in (f"n{i}-0", f"n{i}-49"):
                assert (await nodes[(i + 1) % 3].ask(op="highest", pid=pid))["highest"] == 40
