"""Pure parts of the plugin API: write checks, fencing, chunk validation, criteria, decoding."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import generate_latest

import shoal.persistence
from shoal.persistence import (
    EventDecodeError,
    JournalCorruptionError,
    MemoryJournal,
    Persistence,
    PersistenceSettings,
    PersistentRepr,
    SequenceConflictError,
    SnapshotDecodeError,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
    decode_event,
    decode_snapshot,
)
from shoal.persistence._journal import check_persistence_id, check_write, fence, validate_chunk
from shoal.runtime import ActorSystem, Serialization, Settings, message


def r(seq: int, pid: str = "p") -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", b"")


def test_public_names_are_pinned() -> None:
    assert sorted(shoal.persistence.__all__) == sorted(
        [
            "PersistentActor",
            "Persistence",
            "PersistenceSettings",
            "MAX_SEQUENCE_NR",
            "Journal",
            "PersistentRepr",
            "SnapshotMetadata",
            "SnapshotRecord",
            "Repair",
            "SnapshotSelectionCriteria",
            "SnapshotStore",
            "decode_event",
            "decode_snapshot",
            "DEFAULT_POLL_INTERVAL",
            "JournalQueries",
            "EventEnvelope",
            "Offset",
            "Projection",
            "MemoryJournal",
            "MemorySnapshotStore",
            "SqliteJournal",
            "SqliteSettings",
            "SqliteSnapshotStore",
            "CassandraJournal",
            "CassandraSession",
            "CassandraSettings",
            "CassandraSnapshotStore",
            "PersistenceError",
            "PluginClosedError",
            "EventRejectedError",
            "RecoveryError",
            "JournalError",
            "JournalWriteError",
            "SequenceConflictError",
            "OwnershipLostError",
            "JournalReadError",
            "JournalCorruptionError",
            "EventDecodeError",
            "SnapshotStoreError",
            "SnapshotDecodeError",
        ]
    )
    for name in shoal.persistence.__all__:
        assert getattr(shoal.persistence, name) is not None


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([], "at least one"),
        ([r(0)], "start at 1"),
        ([r(1), r(3)], "consecutive"),
        ([r(2), r(1)], "consecutive"),
        ([r(1), r(2, "q")], "one persistence id"),
    ],
)
def test_check_write_refuses(events: list[PersistentRepr], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_write(events)


def test_check_write_accepts() -> None:
    assert check_write([r(4), r(5), r(6)]) == "p"


@pytest.mark.parametrize(
    ("highest", "first", "ok"),
    [(0, 1, True), (0, 2, False), (5, 6, True), (5, 5, False), (5, 7, False)],
)
def test_fence(highest: int, first: int, ok: bool) -> None:
    if ok:
        fence("p", highest, first)
    else:
        with pytest.raises(SequenceConflictError, match=f"starts at sequence number {first}"):
            fence("p", highest, first)


def test_validate_chunk() -> None:
    assert validate_chunk("p", 3, [r(3), r(4)]) == 5
    assert validate_chunk("p", 3, []) == 3
    with pytest.raises(JournalCorruptionError, match="'p' at sequence number 4: missing"):
        validate_chunk("p", 3, [r(3), r(5)])
    with pytest.raises(JournalCorruptionError, match="sequence number 3: stored twice"):
        validate_chunk("p", 3, [r(3), r(3)])


@pytest.mark.parametrize(
    ("criteria", "seq", "ts", "matches"),
    [
        (SnapshotSelectionCriteria(), 5, 5, True),
        (SnapshotSelectionCriteria.none(), 5, 5, False),
        (SnapshotSelectionCriteria(max_sequence_nr=4), 5, 5, False),
        (SnapshotSelectionCriteria(max_sequence_nr=5), 5, 5, True),
        (SnapshotSelectionCriteria(max_timestamp=4), 5, 5, False),
        (SnapshotSelectionCriteria(min_sequence_nr=6), 5, 5, False),
        (SnapshotSelectionCriteria(min_timestamp=5), 5, 5, True),
    ],
)
def test_criteria(criteria: SnapshotSelectionCriteria, seq: int, ts: int, matches: bool) -> None:
    assert criteria.matches(SnapshotMetadata("p", seq, ts)) is matches


def test_empty_criteria() -> None:
    assert SnapshotSelectionCriteria.none().is_empty()
    assert SnapshotSelectionCriteria(min_sequence_nr=5, max_sequence_nr=4).is_empty()
    assert not SnapshotSelectionCriteria().is_empty()


@message
@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int


class _Ref:
    path = "none"


def _serialization() -> Serialization:
    return Serialization(_Ref, lambda path: path)


def test_decode_event_round_trip() -> None:
    ser = _serialization()
    s = ser.serialize(Deposited(5))
    event = PersistentRepr("acct", 7, s.serializer_id, s.manifest, s.payload)
    assert decode_event(ser, event) == Deposited(5)


def test_decode_event_names_the_row() -> None:
    ser = _serialization()
    s = ser.serialize(Deposited(5))
    corrupt = PersistentRepr("acct", 7, s.serializer_id, s.manifest, b"\xc1garbage")
    with pytest.raises(EventDecodeError, match=r"event 7 of 'acct'.*cannot be decoded") as info:
        decode_event(ser, corrupt)
    assert (info.value.persistence_id, info.value.sequence_nr) == ("acct", 7)
    unknown = PersistentRepr("acct", 8, s.serializer_id, "gone.Module:Class", s.payload)
    with pytest.raises(EventDecodeError, match=r"event 8 of 'acct'.*unknown manifest"):
        decode_event(ser, unknown)


def test_decode_snapshot_names_the_row() -> None:
    ser = _serialization()
    record = SnapshotRecord(SnapshotMetadata("acct", 9), 99, "", b"")
    with pytest.raises(SnapshotDecodeError, match="sequence number 9 of 'acct'"):
        decode_snapshot(ser, record)


@pytest.mark.parametrize(
    ("pid", "problem"),
    [("", "must not be empty"), ("a\udc80", "lone surrogate"), (b"p", "a str, not bytes")],
)
def test_invalid_persistence_ids_are_refused_with_the_reason(pid: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_persistence_id(pid)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        check_write([PersistentRepr(pid, 1, 1, "", b"")])  # type: ignore[arg-type]
    assert check_persistence_id("accounts|älice") == "accounts|älice"


async def test_replay_repairs_are_a_metric() -> None:
    class Repairing(MemoryJournal):
        repaired_events = 3

    async with ActorSystem("metrics", Settings.testing()) as system:
        Persistence.configure(system, PersistenceSettings(journal=Repairing))
        assert "shoal_persistence_repaired_events_total" in generate_latest(system.metrics).decode()
        _ = system.extension(Persistence).journal
        text = generate_latest(system.metrics).decode()
        assert 'shoal_persistence_repaired_events_total{address="' in text
        assert "} 3.0" in text
