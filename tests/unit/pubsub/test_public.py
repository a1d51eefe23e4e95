"""The public face of shoal.pubsub, pinned: a change to it is a deliberate diff."""

from __future__ import annotations

import pytest

import shoal.pubsub
from shoal.pubsub import PubSubSettings


def test_public_names() -> None:
    assert sorted(shoal.pubsub.__all__) == [
        "DistributedPubSub",
        "InvalidTopicError",
        "PubSubError",
        "PubSubMetrics",
        "PubSubSettings",
        "RegistryFullError",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"gossip_interval": 0.0},
        {"max_delta_entries": 0},
        {"max_keys": 0},
        {"max_name_length": 0},
        {"tombstone_ttl": -1.0},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PubSubSettings(**bad)  # type: ignore[arg-type]
