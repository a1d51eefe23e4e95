"""The snapshot-store compliance suite, run against every plugin."""

from __future__ import annotations

import asyncio

import pytest

from shoal.persistence import (
    PluginClosedError,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

from .conftest import SnapshotKit


def snap(pid: str, seq: int, timestamp: int = 0, payload: bytes | None = None) -> SnapshotRecord:
    return SnapshotRecord(
        SnapshotMetadata(pid, seq, timestamp or 1_000 + seq),
        4,
        "tck:State",
        payload if payload is not None else f"state-{seq}".encode(),
    )


async def stored(store: SnapshotStore, pid: str) -> list[int]:
    """Sequence numbers stored, found by loading below each one in turn."""
    found: list[int] = []
    criteria = SnapshotSelectionCriteria()
    while (record := await store.load(pid, criteria)) is not None:
        found.append(record.metadata.sequence_nr)
        criteria = SnapshotSelectionCriteria(max_sequence_nr=record.metadata.sequence_nr - 1)
    return found


async def test_nothing_stored(snapshots: SnapshotStore, pid: str) -> None:
    assert await snapshots.load(pid) is None
    await snapshots.delete(pid, SnapshotSelectionCriteria())


async def test_load_returns_the_newest(snapshots: SnapshotStore, pid: str) -> None:
    for seq in (10, 30, 20):
        await snapshots.save(snap(pid, seq))
    assert await snapshots.load(pid) == snap(pid, 30)
    assert await snapshots.load(pid, SnapshotSelectionCriteria.latest()) == snap(pid, 30)
    assert await snapshots.load(pid, SnapshotSelectionCriteria.none()) is None


async def test_load_honours_every_bound(snapshots: SnapshotStore, pid: str) -> None:
    for seq, ts in ((10, 500), (20, 100), (30, 300), (40, 200)):
        await snapshots.save(snap(pid, seq, ts))

    async def load(**bounds: int) -> int | None:
        record = await snapshots.load(pid, SnapshotSelectionCriteria(**bounds))
        return None if record is None else record.metadata.sequence_nr

    assert await load(max_sequence_nr=35) == 30
    assert await load(max_sequence_nr=30) == 30
    assert await load(max_timestamp=250) == 40
    assert await load(max_timestamp=150) == 20
    assert await load(max_sequence_nr=35, max_timestamp=250) == 20
    assert await load(min_sequence_nr=41) is None
    assert await load(min_timestamp=400) == 10
    assert await load(max_sequence_nr=9) is None


async def test_save_replaces_the_same_sequence_number(snapshots: SnapshotStore, pid: str) -> None:
    await snapshots.save(snap(pid, 5, payload=b"old"))
    await snapshots.save(snap(pid, 5, payload=b"new"))
    record = await snapshots.load(pid)
    assert record is not None
    assert record.payload == b"new"
    assert await stored(snapshots, pid) == [5]


async def test_delete_by_sequence_number(snapshots: SnapshotStore, pid: str) -> None:
    for seq in (1, 2, 3, 4, 5):
        await snapshots.save(snap(pid, seq))
    await snapshots.delete(pid, SnapshotSelectionCriteria(max_sequence_nr=2))
    assert await stored(snapshots, pid) == [5, 4, 3]
    await snapshots.delete(pid, SnapshotSelectionCriteria(min_sequence_nr=4, max_sequence_nr=4))
    assert await stored(snapshots, pid) == [5, 3]
    await snapshots.delete(pid, SnapshotSelectionCriteria())
    assert await stored(snapshots, pid) == []


async def test_delete_by_timestamp(snapshots: SnapshotStore, pid: str) -> None:
    for seq, ts in ((1, 300), (2, 100), (3, 200), (4, 400)):
        await snapshots.save(snap(pid, seq, ts))
    await snapshots.delete(pid, SnapshotSelectionCriteria(max_timestamp=250))
    assert await stored(snapshots, pid) == [4, 1]
    await snapshots.delete(pid, SnapshotSelectionCriteria(max_sequence_nr=3, min_timestamp=250))
    assert await stored(snapshots, pid) == [4]


async def test_ids_are_independent(snapshots: SnapshotStore, pid: str) -> None:
    ids = [f"{pid}-{i}" for i in range(50)]
    await asyncio.gather(*(snapshots.save(snap(p, i + 1)) for i, p in enumerate(ids)))
    loaded = await asyncio.gather(*(snapshots.load(p) for p in ids))
    assert loaded == [snap(p, i + 1) for i, p in enumerate(ids)]
    await snapshots.delete(ids[0], SnapshotSelectionCriteria())
    assert await snapshots.load(ids[0]) is None
    assert await snapshots.load(ids[1]) == snap(ids[1], 2)


async def test_large_snapshot(snapshots: SnapshotStore, pid: str) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    await snapshots.save(snap(pid, 7, payload=big))
    record = await snapshots.load(pid)
    assert record is not None
    assert record.payload == big


async def test_snapshots_survive_reopening(snapshot_kit: SnapshotKit, pid: str) -> None:
    if not snapshot_kit.durable:
        pytest.skip("memory is not durable")
    store = snapshot_kit.open()
    await store.save(snap(pid, 3))
    await store.close()
    assert await snapshot_kit.open().load(pid) == snap(pid, 3)


async def test_closed_store_refuses_calls(snapshot_kit: SnapshotKit, pid: str) -> None:
    store = snapshot_kit.open()
    await store.save(snap(pid, 1))
    await store.close()
    await store.close()
    with pytest.raises(PluginClosedError):
        await store.save(snap(pid, 2))
    with pytest.raises(PluginClosedError):
        await store.load(pid)
    with pytest.raises(PluginClosedError):
        await store.delete(pid, SnapshotSelectionCriteria())


@pytest.mark.parametrize("bad", ["", "lone-\udc80-surrogate"])
async def test_an_invalid_persistence_id_is_refused(snapshots: SnapshotStore, bad: str) -> None:
    with pytest.raises(ValueError, match="persistence id"):
        await snapshots.save(SnapshotRecord(SnapshotMetadata(bad, 1, 0), 1, "", b"s"))
    with pytest.raises(ValueError, match="persistence id"):
        await snapshots.load(bad)
    with pytest.raises(ValueError, match="persistence id"):
        await snapshots.delete(bad, SnapshotSelectionCriteria())
