"""The public surface of ``shoal.sharding`` is pinned: changing it must be a deliberate diff."""

from __future__ import annotations

import shoal.sharding


def test_sharding_exports() -> None:
    assert sorted(shoal.sharding.__all__) == sorted(
        [
            "BufferFullError",
            "EntityRef",
            "MAX_ENTITY_ID_BYTES",
            "RebalanceLimits",
            "RegionMetrics",
            "ShardRegion",
            "Sharding",
            "ShardingSettings",
            "passivate",
            "shard_id",
            "ClusterSingleton",
            "InvalidEntityIdError",
            "ShardingError",
            "SingletonMetrics",
            "SingletonSettings",
        ]
    )
    for name in shoal.sharding.__all__:
        value = getattr(shoal.sharding, name)
        assert isinstance(value, int) or value.__module__.startswith("shoal.sharding")
