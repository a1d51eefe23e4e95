"""The stable shard id: the same in every process and version; bad ids refused."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from shoal.sharding import InvalidEntityIdError
from shoal.sharding._shard_id import MAX_ENTITY_ID_BYTES, entity_actor_name, shard_id

# Pinned values: changing them would move every entity of every running cluster.
PINNED = {"alice": 29, "bob": 42, "ünïcødé": 29, "user-123": 83, "x" * 512: 91}


def test_shard_ids_are_pinned() -> None:
    assert {k: shard_id(k, 100) for k in PINNED} == PINNED
    assert shard_id("anything", 1) == 0


def test_another_process_computes_the_same_shards() -> None:
    # hash() of a str is salted per process; the shard id must not be.
    code = (
        "from shoal.sharding._shard_id import shard_id;"
        "print([shard_id(s, 100) for s in ['alice', 'bob', 'ünïcødé', 'user-123', 'x' * 512]])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == str(list(PINNED.values()))


def test_ids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_id(f"user-{i}", 100) for i in range(100_000))
    assert len(counts) == 100
    assert max(counts.values()) < 1_150  # 1,000 expected each
    assert min(counts.values()) > 850


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("", "not empty"),
        ("x" * (MAX_ENTITY_ID_BYTES + 1), "at most"),
        ("é" * (MAX_ENTITY_ID_BYTES // 2 + 1), "at most"),
        ("\ud800", "UTF-8"),
        (42, "is a str"),
        (None, "is a str"),
    ],
)
def test_bad_entity_ids_are_refused(bad: object, match: str) -> None:
    with pytest.raises(InvalidEntityIdError, match=match):
        shard_id(bad, 10)  # type: ignore[arg-type]


def test_number_of_shards_must_be_positive() -> None:
    with pytest.raises(ValueError, match="number_of_shards"):
        shard_id("a", 0)


@pytest.mark.parametrize(
    ("entity_id", "name"),
    [("alice", "alice"), ("a/b", "a%2Fb"), ("$x", "%24x"), ("é", "%C3%A9"), ("a b", "a%20b")],
)
def test_entity_actor_names_are_valid_and_reversible(entity_id: str, name: str) -> None:
    assert entity_actor_name(entity_id) == name
