"""Replay repair as a pure function: which of two writers' copies of an event survive."""

from __future__ import annotations

import pytest

from shoal.persistence import JournalCorruptionError, PersistentRepr
from shoal.persistence._replay_filter import Repair, ReplayFilter, writer_epoch


def row(seq: int, writer: str, timestamp: int) -> PersistentRepr:
    return PersistentRepr("p", seq, 1, "", f"{writer}{seq}".encode(), writer, timestamp)


def run(
    rows: list[PersistentRepr], chunk: int, window: int = 100
) -> tuple[list[str], list[Repair]]:
    f = ReplayFilter("p", window)
    out: list[PersistentRepr] = []
    for i in range(0, len(rows), chunk):
        out += f.feed(rows[i : i + chunk])
    out += f.finish()
    return [e.payload.decode() for e in out], f.repairs


OLD, NEW = 1_000, 2_000  # the writers' timestamps: the newer incarnation persisted later


@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
@pytest.mark.parametrize(
    ("rows", "kept", "dropped"),
    [
        # No second copy: everything, in order.
        ([row(1, "a", OLD), row(2, "a", OLD), row(3, "b", NEW)], ["a1", "a2", "b3"], []),
        # A late write of the old incarnation at 3, the new one continued from 3.
        (
            [
                row(1, "a", OLD),
                row(2, "a", OLD),
                row(3, "a", OLD),
                row(3, "b", NEW),
                row(4, "b", NEW),
            ],
            ["a1", "a2", "b3", "b4"],
            [(3, "a", "b")],
        ),
        # The old writer went on in parallel: all of its events from 3 on go.
        (
            [
                row(3, "z", OLD),
                row(3, "b", NEW),
                row(4, "z", OLD),
                row(4, "b", NEW),
                row(5, "z", OLD),
            ],
            ["b3", "b4"],
            [(3, "z", "b"), (4, "z", "b"), (5, "z", "b")],
        ),
        # Newer by timestamp, whatever the writer ids' order.
        ([row(7, "a", NEW), row(7, "z", OLD), row(8, "a", NEW)], ["a7", "a8"], [(7, "z", "a")]),
        # A copy in a later partition (rows out of order), within the window.
        (
            [
                row(1, "a", OLD),
                row(2, "a", OLD),
                row(3, "b", NEW),
                row(4, "b", NEW),
                row(2, "b", NEW),
            ],
            ["a1", "b2", "b3", "b4"],
            [(2, "a", "b")],
        ),
        # The same row read twice.
        ([row(1, "a", OLD), row(1, "a", OLD), row(2, "a", OLD)], ["a1", "a2"], []),
    ],
)
def test_the_newer_writer_wins(
    rows: list[PersistentRepr], kept: list[str], dropped: list[tuple[int, str, str]], chunk: int
) -> None:
    out, repairs = run(rows, chunk)
    assert out == kept
    assert sorted((r.sequence_nr, r.dropped_writer, r.kept_writer) for r in repairs) == dropped
    assert all(r.persistence_id == "p" for r in repairs)


def test_a_copy_beyond_the_window_is_corruption() -> None:
    rows = [row(n, "a", OLD) for n in range(1, 6)] + [row(1, "b", NEW)]
    with pytest.raises(JournalCorruptionError, match="'p' at sequence number 1: stored twice"):
        run(rows, 1, window=2)


def test_events_are_held_back_by_the_window_only() -> None:
    f = ReplayFilter("p", window=2)
    assert [e.sequence_nr for e in f.feed([row(n, "a", OLD) for n in range(1, 6)])] == [1, 2, 3]
    assert [e.sequence_nr for e in f.finish()] == [4, 5]
    with pytest.raises(ValueError, match="window"):
        ReplayFilter("p", window=0)


def test_a_higher_ownership_epoch_wins_whatever_the_clocks_say() -> None:
    # The stale owner (epoch 1) wrote 3 after the new owner (epoch 2), by its clock.
    rows = [row(2, "a#epoch=1", OLD), row(3, "a#epoch=1", NEW), row(3, "b#epoch=2", OLD)]
    out, repairs = run(rows, 1)
    assert out == ["a#epoch=12", "b#epoch=23"]
    assert [(r.sequence_nr, r.dropped_writer) for r in repairs] == [(3, "a#epoch=1")]


@pytest.mark.parametrize(
    ("writer", "epoch"),
    [
        ("w", 0),
        ("w#epoch=7", 7),
        ("w#epoch=7#epoch=12", 12),
        ("w#epoch=", 0),
        ("w#epoch=x", 0),
        ("w#epoch=\u0663", 0),
    ],
)
def test_the_epoch_a_stored_writer_id_carries(writer: str, epoch: int) -> None:
    assert writer_epoch(writer) == epoch
