"""The registry's pure core: buckets, delta selection, merge, pruning and incarnations."""

from __future__ import annotations

import pytest

from shoal.pubsub._registry import Bucket, Delta, Entry, Key, KeyKind, Merge, Registry
from shoal.runtime import Address, UniqueAddress

A = UniqueAddress(Address("s", "10.0.0.1", 2552), 1)
B = UniqueAddress(Address("s", "10.0.0.2", 2552), 2)
B2 = UniqueAddress(Address("s", "10.0.0.2", 2552), 22)
C = UniqueAddress(Address("s", "10.0.0.3", 2552), 3)


def t(name: str) -> Key:
    return (KeyKind.TOPIC, name)


def bucket_of(owner: UniqueAddress, *changes: tuple[str, dict[str, int]]) -> Bucket:
    bucket = Bucket(owner)
    for name, groups in changes:
        bucket.put(t(name), groups)
    return bucket


def test_every_change_takes_the_next_version_and_moves_the_key_last() -> None:
    b = bucket_of(B, ("x", {"": 1}), ("y", {"g": 2}), ("x", {"": 2}))
    assert b.version == 3
    assert list(b.entries.items()) == [
        (t("y"), Entry(2, (("g", 2),))),
        (t("x"), Entry(3, (("", 2),))),
    ]
    b.put(t("y"), {"g": 0})
    assert b.entries[t("y")] == Entry(4, ())
    assert b.entries[t("y")].removed
    assert list(b.live()) == [(t("x"), Entry(3, (("", 2),)))]


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        # (from, to, bucket, full, entry names)
        (4, 10, None),
        (0, 10, (0, 4, 4, False, ["y", "z", "x"])),
        (2, 10, (2, 4, 4, False, ["z", "x"])),
        (3, 10, (3, 4, 4, False, ["x"])),
        (0, 2, (0, 3, 4, False, ["y", "z"])),
        (2, 1, (2, 3, 4, False, ["z"])),
        # a peer that saw a previous life of this counter gets everything
        (9, 10, (0, 4, 4, True, ["y", "z", "x"])),
    ],
)
def test_delta_selection_sends_only_what_the_peer_has_not_seen(
    since: int, limit: int, expected: tuple[int, int, int, bool, list[str]] | None
) -> None:
    b = bucket_of(B, ("x", {"": 1}), ("y", {"": 1}), ("z", {"g": 1}), ("x", {"": 3}))
    delta = b.delta_since(since, limit)
    if expected is None:
        assert delta is None
        return
    assert delta is not None
    got = (
        delta.from_version,
        delta.to_version,
        delta.bucket_version,
        delta.full,
        [k[1] for k, _ in delta.entries],
    )
    assert got == expected


def test_a_peer_older_than_a_pruned_tombstone_gets_the_whole_live_bucket() -> None:
    b = bucket_of(B, ("x", {"": 1}), ("y", {"": 1}), ("x", {}))
    assert b.prune_tombstones(3) == 1
    assert b.pruned_through == 3
    delta = b.delta_since(1, 10)
    assert delta is not None
    assert delta.full
    assert [k for k, _ in delta.entries] == [t("y")]
    assert b.delta_since(3, 10) is None


def _sync(reg: Registry, bucket: Bucket, since: int | None = None, limit: int = 100) -> Merge:
    delta = bucket.delta_since(reg.known_version(bucket.owner) if since is None else since, limit)
    assert delta is not None
    return reg.merge(delta)


def test_merge_applies_a_delta_and_indexes_the_nodes_of_each_key() -> None:
    reg = Registry(A)
    reg.put_local(t("x"), {"": 1})
    b = bucket_of(B, ("x", {"g": 2}), ("y", {"": 1}))
    assert _sync(reg, b) is Merge.APPLIED
    assert reg.known_version(B) == 2
    assert dict(reg.nodes(t("x"))) == {A.address: (("", 1),), B.address: (("g", 2),)}
    assert dict(reg.nodes(t("y"))) == {B.address: (("", 1),)}
    assert sorted(reg.keys(KeyKind.TOPIC)) == ["x", "y"]
    assert _sync(reg, b, since=0) is Merge.STALE
    b.put(t("y"), {})
    assert _sync(reg, b) is Merge.APPLIED
    assert dict(reg.nodes(t("y"))) == {}
    assert t("y") not in reg.peers[B.address].entries


@pytest.mark.parametrize(
    ("held", "delta_from", "delta_to", "result", "version_after"),
    [
        (0, 0, 2, Merge.APPLIED, 2),
        (1, 0, 2, Merge.APPLIED, 2),  # overlapping: only what is newer applies
        (2, 0, 2, Merge.STALE, 2),
        (1, 2, 3, Merge.GAP, 1),  # version 2 was lost: ask again from 1
        (3, 2, 3, Merge.STALE, 3),
    ],
)
def test_merge_table(
    held: int, delta_from: int, delta_to: int, result: Merge, version_after: int
) -> None:
    b = bucket_of(B, ("x", {"": 1}), ("y", {"": 1}), ("z", {"": 1}))
    reg = Registry(A)
    if held:
        _sync(reg, b, since=0, limit=held)
    delta = b.delta_since(delta_from, delta_to - delta_from)
    assert delta is not None
    assert delta.to_version == delta_to
    assert reg.merge(delta) is result
    assert reg.known_version(B) == version_after


def test_chunks_converge() -> None:
    b = bucket_of(B, *((f"t{i}", {"": 1}) for i in range(25)))
    reg = Registry(A)
    rounds = 0
    while reg.known_version(B) < b.version:
        assert _sync(reg, b, limit=10) is Merge.APPLIED
        rounds += 1
    assert rounds == 3
    assert len(list(reg.keys(KeyKind.TOPIC))) == 25


def test_a_full_delta_replaces_the_copy() -> None:
    b = bucket_of(B, ("x", {"": 1}), ("y", {"": 1}))
    reg = Registry(A)
    _sync(reg, b)
    b.put(t("x"), {})
    b.put(t("z"), {"": 1})
    b.prune_tombstones(b.version)
    assert _sync(reg, b) is Merge.APPLIED
    assert sorted(reg.keys(KeyKind.TOPIC)) == ["y", "z"]


def test_a_restarted_incarnation_never_mixes_with_its_old_bucket() -> None:
    reg = Registry(A)
    _sync(reg, bucket_of(B, ("old", {"": 1}), ("both", {"": 1})))
    fresh = bucket_of(B2, ("both", {"g": 1}))
    assert reg.known_version(B2) == 0
    assert _sync(reg, fresh) is Merge.NEW_INCARNATION
    assert reg.peers[B.address].owner == B2
    assert sorted(reg.keys(KeyKind.TOPIC)) == ["both"]
    assert dict(reg.nodes(t("both"))) == {B.address: (("g", 1),)}
    assert reg.known_version(B) == 0


def test_a_delta_of_the_own_bucket_is_a_caller_error() -> None:
    reg = Registry(A)
    with pytest.raises(ValueError, match="own bucket"):
        reg.merge(Delta(A, 0, 1, 1, False, ((t("x"), Entry(1, (("", 1),))),)))


def test_pruning_drops_the_buckets_of_nodes_no_longer_members() -> None:
    reg = Registry(A)
    _sync(reg, bucket_of(B, ("x", {"": 1})))
    _sync(reg, bucket_of(C, ("x", {"": 1}), ("c", {"": 1})))
    assert reg.prune([A, B]) == [C]
    assert dict(reg.nodes(t("x"))) == {B.address: (("", 1),)}
    assert list(reg.keys(KeyKind.TOPIC)) == ["x"]
    assert reg.prune([A, B2]) == [B]
    assert reg.peers == {}
