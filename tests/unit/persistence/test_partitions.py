"""The Cassandra journal's partition arithmetic, grouping and walks: pure, table-driven."""

from __future__ import annotations

import pytest

from shoal.persistence import JournalCorruptionError, PersistentRepr
from shoal.persistence._cassandra_grouping import group_writes
from shoal.persistence._cassandra_replay import ChunkQuery, HighestWalk, ReplayWalk
from shoal.persistence._partitions import next_partition, partition_nr, write_partition


@pytest.mark.parametrize(
    ("seq", "size", "expected"),
    [(1, 3, 0), (3, 3, 0), (4, 3, 1), (7, 3, 2), (1, 500_000, 0), (500_001, 500_000, 1)],
)
def test_partition_nr(seq: int, size: int, expected: int) -> None:
    assert partition_nr(seq, size) == expected


@pytest.mark.parametrize(
    ("first", "last", "size", "expected"),
    [(1, 1, 3, 0), (1, 3, 3, 0), (2, 4, 3, 1), (3, 4, 3, 1), (4, 6, 3, 1), (6, 7, 3, 2)],
)
def test_a_write_lives_in_its_last_events_partition(
    first: int, last: int, size: int, expected: int
) -> None:
    assert write_partition(first, last, size) == expected


def test_a_write_larger_than_a_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="partition size 3"):
        write_partition(1, 4, 3)


@pytest.mark.parametrize(
    ("exhausted", "next_seq", "size", "expected"),
    [
        (0, 3, 3, 1),  # event 3 (nominally in 0) may have moved into 1
        (1, 3, 3, None),  # ...but not further
        (0, 4, 3, 1),  # event 4 lives in 1 or 2
        (1, 4, 3, 2),
        (2, 4, 3, None),
        (5, 100, 3, 6),  # far behind the event: keep walking
    ],
)
def test_next_partition(exhausted: int, next_seq: int, size: int, expected: int | None) -> None:
    assert next_partition(exhausted, next_seq, size) == expected


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([], []),
        ([100], [(0, 1)]),
        ([100] * 25, [(0, 10), (10, 20), (20, 25)]),
        ([5000, 100, 100], [(0, 1), (1, 3)]),  # too big to share: alone
        ([2000, 2000, 200, 100], [(0, 2), (2, 4)]),
        ([100, 9000, 100], [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_group_writes(sizes: list[int], expected: list[tuple[int, int]]) -> None:
    groups = group_writes(sizes)
    assert [(g.start, g.stop) for g in groups] == expected


def _repr(seq: int, writer: str = "w") -> PersistentRepr:
    return PersistentRepr("p", seq, 1, "", b"", writer, 0)


def _replay(layout: dict[int, list[int]], start: int, size: int, chunk: int) -> list[int]:
    """Run a ReplayWalk against partitions laid out as ``{partition: [seqs]}``."""
    walk = ReplayWalk("p", start, 10**9, 10**9, size, chunk)
    out: list[int] = []
    query = walk.first()
    probes = 0
    while query is not None:
        probes += 1
        rows = sorted(layout.get(query.partition_nr, []))
        rows = [s for s in rows if (s > query.after[0] if query.after else s >= query.lower)]
        got = [_repr(s) for s in rows[: query.limit]]
        out.extend(s.sequence_nr for s in got)
        query = walk.advance(query, got)
        assert probes < 100
    return out


# Writes (2,2,3,1,3) of events 1..11 with partition size 3: each lies in its last event's.
LAYOUT = {0: [1, 2], 1: [3, 4], 2: [5, 6, 7, 8], 3: [9, 10, 11]}


@pytest.mark.parametrize("start", range(1, 13))
@pytest.mark.parametrize("chunk", [1, 2, 50])
def test_replay_walk_finds_every_event_in_order(start: int, chunk: int) -> None:
    assert _replay(LAYOUT, start, 3, chunk) == list(range(start, 12))


def test_replay_walk_skips_empty_nominal_partition() -> None:
    # Events 3..5 in one write sit in partition 1, leaving partition 0 with 1..2 only.
    layout = {0: [1, 2], 1: [3, 4, 5], 2: [6]}
    assert _replay(layout, 3, 3, 10) == [3, 4, 5, 6]


def test_replay_walk_passes_a_second_copy_on() -> None:
    walk = ReplayWalk("p", 1, 100, 100, 3, 10)
    first = walk.first()
    assert first == ChunkQuery(0, 1, 100, 10)
    assert walk.advance(first, [_repr(1), _repr(2, "a"), _repr(2, "b")]) == ChunkQuery(
        1, 1, 100, 10
    )


def test_replay_walk_reports_a_gap() -> None:
    walk = ReplayWalk("p", 1, 100, 100, 3, 10)
    first = walk.first()
    assert first is not None
    with pytest.raises(JournalCorruptionError, match="sequence number 2: missing"):
        walk.advance(first, [_repr(1), _repr(3)])


def test_replay_walk_respects_bounds() -> None:
    walk = ReplayWalk("p", 5, 4, 100, 3, 10)
    assert walk.first() is None
    walk = ReplayWalk("p", 1, 100, 0, 3, 10)
    assert walk.first() is None
    walk = ReplayWalk("p", 1, 100, 2, 3, 10)
    query = walk.first()
    assert query == ChunkQuery(0, 1, 100, 2)
    assert walk.advance(query, [_repr(1), _repr(2)]) is None


@pytest.mark.parametrize(
    ("known", "layout", "expected"),
    [
        (0, {}, 0),
        (0, LAYOUT, 11),
        (5, LAYOUT, 11),
        (11, LAYOUT, 11),
        (8, {2: [5, 6, 7, 8]}, 8),  # everything up to 8 deleted, nothing after
        (2, {1: [3, 4, 5]}, 5),  # the write 3..5 moved into partition 1
    ],
)
def test_highest_walk(known: int, layout: dict[int, list[int]], expected: int) -> None:
    walk = HighestWalk(known, 3)
    probe: int | None = walk.first()
    while probe is not None:
        rows = layout.get(probe, [])
        probe = walk.advance(probe, max(rows) if rows else None)
    assert walk.highest == expected
