"""The pure parts of remember-entities and the active-entity limit, as tables."""

from __future__ import annotations

import pytest

from shoal.runtime import ActorSystem
from shoal.sharding import ShardingSettings
from shoal.sharding._passivation import ActiveEntities
from shoal.sharding._remember import (
    EntityStarted,
    EntityStopped,
    effective,
    remember_persistence_id,
    restart_pace,
)


@pytest.mark.parametrize(
    ("rate", "batch", "interval"),
    [
        (1000.0, 100, 0.1),
        (100.0, 10, 0.1),
        (15.0, 2, 2 / 15),
        (5.0, 1, 0.2),
        (0.5, 1, 2.0),
    ],
)
def test_restart_pace_is_exactly_the_rate_in_at_most_ten_batches_a_second(
    rate: float, batch: int, interval: float
) -> None:
    assert restart_pace(rate) == (batch, pytest.approx(interval))
    assert batch / interval == pytest.approx(rate)


S, X = EntityStarted, EntityStopped


@pytest.mark.parametrize(
    ("ids", "changes", "kept"),
    [
        (set(), [S("a"), S("a")], [S("a")]),
        ({"a"}, [S("a"), X("b")], []),
        ({"a"}, [X("a"), S("a"), X("a")], [X("a"), S("a"), X("a")]),
        (set(), [S("a"), X("a"), X("a"), S("b")], [S("a"), X("a"), S("b")]),
    ],
)
def test_only_changes_that_change_the_set_are_written(
    ids: set[str], changes: list[EntityStarted | EntityStopped], kept: list[object]
) -> None:
    before = set(ids)
    assert effective(ids, changes) == kept
    assert ids == before


def test_the_persistence_id_names_type_and_shard() -> None:
    assert remember_persistence_id("account", 7) == "sharding/account/7"


async def test_least_recently_used_across_shards() -> None:
    async with ActorSystem("lru") as system:
        one, two = system.dead_letters, system.resolve(f"shoal://{system.address}/user/x")
        active = ActiveEntities(3)
        assert active.add(one, "a") == []
        assert active.add(two, "b") == []
        assert active.add(one, "c") == []
        active.touch(one, "a")
        assert active.add(two, "d") == [(two, "b")]
        active.remove(one, "c")  # passivating: no longer counted
        assert len(active) == 2
        assert active.add(one, "e") == []
        assert active.add(one, "f") == [(one, "a")]
        active.touch(two, "zzz")  # unknown: nothing happens
        assert len(active) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("active_entity_limit", 0), ("remembered_restarts_per_s", 0.0)],
)
def test_settings_refuse_nonsense(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ShardingSettings(**{field: value})  # type: ignore[arg-type]
