"""ClusterSettings: production defaults, the testing preset, validation naming the setting."""

from __future__ import annotations

import pytest

from shoal.cluster import ClusterSettings
from shoal.runtime import Address


def test_production_defaults() -> None:
    s = ClusterSettings()
    assert s.gossip_interval == 1.0
    assert s.phi_threshold == 8.0
    assert s.acceptable_heartbeat_pause == 3.0
    assert s.sbr_stable_after == 7.0
    assert s.monitored_neighbours == 5
    assert s.sbr_strategy == "keep-majority"
    assert s.removal_bound == 3.0 + 7.0 + 2 * 1.0


def test_testing_preset_is_fast_and_overridable() -> None:
    s = ClusterSettings.testing(roles=frozenset({"web"}))
    assert 0.1 <= s.gossip_interval <= 0.2
    assert s.sbr_stable_after == pytest.approx(1.0)
    assert s.phi_threshold == 8.0
    assert s.roles == {"web"}


def test_seed_nodes_are_parsed() -> None:
    s = ClusterSettings(seed_nodes=("app@10.0.0.1:2552", "app@[::1]:2553"))
    assert s.seed_addresses == (Address("app", "10.0.0.1", 2552), Address("app", "::1", 2553))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"gossip_interval": -1.0}, "gossip_interval"),
        ({"gossip_interval": 0.0}, "gossip_interval"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"acceptable_heartbeat_pause": -3}, "acceptable_heartbeat_pause"),
        ({"sbr_stable_after": 0}, "sbr_stable_after"),
        ({"seed_node_timeout": 0}, "seed_node_timeout"),
        ({"join_retry_min": 2.0, "join_retry_max": 1.0}, "join_retry_max"),
        ({"weakly_up_after": 0.0}, "weakly_up_after"),
        ({"monitored_neighbours": 0}, "monitored_neighbours"),
        ({"max_sample_size": 1}, "max_sample_size"),
        ({"phi_threshold": 0}, "phi_threshold"),
        ({"sbr_strategy": "keep-everyone"}, "sbr_strategy"),
        ({"sbr_strategy": "static-quorum"}, "sbr_quorum_size"),
        ({"seed_nodes": ("app@host",)}, "seed_nodes"),
        ({"seed_nodes": ("app",)}, "seed_nodes"),
    ],
)
def test_invalid_settings_name_the_setting(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ClusterSettings(**fields)  # type: ignore[arg-type]


def test_weakly_up_can_be_disabled() -> None:
    assert ClusterSettings(weakly_up_after=None).weakly_up_after is None
