"""The public surface of ``shoal.sharding`` is pinned: changing it must be a deliberate diff."""

from __future__ import annotations

import shoal.sharding


def test_sharding_exports() -> None:
    assert sorted(shoal.sharding.__all__) == sorted(
        [
            "BufferFullError",
            "ClusterSingleton",
            "InvalidEntityIdError",
            "ShardingError",
            "SingletonMetrics",
            "SingletonSettings",
        ]
    )
    for name in shoal.sharding.__all__:
        assert getattr(shoal.sharding, name).__module__.startswith("shoal.sharding")
