"""Cassandra's fencing modes on a real node: a stale owner's write is refused.

``fencing="none"`` refuses a stale incarnation writing through the same
journal instance (one node); ``fencing="epoch"`` also one on another node:
each "node" here is a real child process (``_journal_agent``) with its own
journal instance on the same keyspace.
"""

from __future__ import annotations

import dataclasses

import pytest

from shoal.persistence import CassandraJournal, CassandraSettings, PersistentRepr

from ._agents import agents

pytestmark = [pytest.mark.cassandra, pytest.mark.multiprocess]


def _config(settings: CassandraSettings, fencing: str) -> dict[str, object]:
    return {
        "plugin": "cassandra",
        "contact_points": list(settings.contact_points),
        "keyspace": settings.keyspace,
        "fencing": fencing,
    }


async def test_epoch_fencing_refuses_a_stale_owner_on_another_node(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    settings = dataclasses.replace(cassandra_settings, fencing="epoch")
    async with CassandraJournal(settings) as journal:
        await journal.start()  # the schema, before the nodes start
        async with agents(_config(settings, "epoch"), 2) as (old, new):
            await old.ask(op="claim", pid=pid, writer="a1")
            assert await old.writes("a1", (pid, 1, 3)) == [None]
            # The entity moves: the new owner claims, recovers, writes on.
            await new.ask(op="claim", pid=pid, writer="b1")
            assert (await new.ask(op="highest", pid=pid))["highest"] == 3
            assert await new.writes("b1", (pid, 4, 2)) == [None]
            # The old owner does not know: its write is stored, but not acknowledged;
            # the other id in its group (claimed at its first write) is.
            other = f"{pid}-other"
            late, fine = await old.writes("a1", (pid, 4, 1), (other, 1, 1))
            assert late is not None
            assert late[0] == "OwnershipLostError"
            assert "another writer claimed" in late[1]
            assert fine is None
            # From then on it is refused before anything is sent.
            [again] = await old.writes("a1", (pid, 5, 1))
            assert again is not None
            assert again[0] == "OwnershipLostError"
            assert "nothing stored" in again[1]
        # Every replay keeps the new owner's events: the stale event 4 (older epoch) is
        # dropped, whatever the clocks say.
        events = await journal.events(pid)
        assert [e.sequence_nr for e in events] == [1, 2, 3, 4, 5]
        assert [e.writer_uuid for e in events] == ["a1#epoch=1"] * 3 + ["b1#epoch=2"] * 2
        assert await journal.highest_sequence_nr(other) == 1


async def test_epoch_fencing_refuses_a_stale_incarnation_on_the_same_node(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    settings = dataclasses.replace(cassandra_settings, fencing="epoch")
    async with CassandraJournal(settings) as journal:
        await journal.claim_writer(pid, "first")
        await journal.write([PersistentRepr(pid, 1, 1, "", b"1", "first")])
        await journal.claim_writer(pid, "second")
        assert await journal.highest_sequence_nr(pid) == 1
        with pytest.raises(Exception, match="no longer owns") as refused:
            await journal.write([PersistentRepr(pid, 2, 1, "", b"2", "first")])
        assert type(refused.value).__name__ == "OwnershipLostError"
        await journal.write([PersistentRepr(pid, 2, 1, "", b"2", "second")])
        assert [e.payload for e in await journal.events(pid)] == [b"1", b"2"]


async def test_without_fencing_a_stale_incarnation_on_the_same_node_is_refused(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    async with CassandraJournal(cassandra_settings) as journal:
        await journal.write([PersistentRepr(pid, 1, 1, "", b"1", "old")])
        assert await journal.highest_sequence_nr(pid) == 1  # the new incarnation recovers
        await journal.write([PersistentRepr(pid, 2, 1, "", b"2", "new")])
        with pytest.raises(Exception, match="expects 3") as refused:
            await journal.write([PersistentRepr(pid, 2, 1, "", b"x", "old")])
        assert type(refused.value).__name__ == "SequenceConflictError"
        assert [e.payload for e in await journal.events(pid)] == [b"1", b"2"]
