"""RemoteSettings: documented defaults, validation, the testing preset."""

from __future__ import annotations

import pytest

from shoal.remote import RemoteSettings
from shoal.remote._grpc import _keepalive_options


def test_defaults_are_production_values() -> None:
    settings = RemoteSettings()
    assert (settings.host, settings.port, settings.public_host) == ("127.0.0.1", 0, "127.0.0.1")
    assert settings.cluster_secret is None
    assert settings.tls is None
    assert settings.outbox_capacity == 100_000
    assert settings.max_frame_bytes >= settings.batch_max_bytes + 64 * 1024
    assert not settings.allow_unauthenticated
    assert settings.control_outbox_capacity > settings.outbox_capacity
    assert settings.outbox_max_bytes == 64 * 1024 * 1024


def test_testing_preset_is_fast_and_overridable() -> None:
    settings = RemoteSettings.testing(outbox_capacity=5)
    assert settings.backoff_max < RemoteSettings().backoff_max
    assert settings.unreachable_drop_after < RemoteSettings().unreachable_drop_after
    assert settings.outbox_capacity == 5
    # A partitioned stream is noticed in seconds, not the production 15 s.
    assert settings.keepalive_interval + settings.keepalive_timeout <= 2.0
    production = RemoteSettings()
    assert (production.keepalive_interval, production.keepalive_timeout) == (10.0, 5.0)


def test_keepalive_settings_reach_grpc_in_milliseconds() -> None:
    options = dict(
        _keepalive_options(RemoteSettings(keepalive_interval=1.5, keepalive_timeout=0.25))
    )
    assert options["grpc.keepalive_time_ms"] == 1500
    assert options["grpc.keepalive_timeout_ms"] == 250
    # Idle streams keep being pinged, so their partition is noticed too.
    assert options["grpc.http2.max_pings_without_data"] == 0


def test_advertised_host_is_the_public_host() -> None:
    settings = RemoteSettings(host="0.0.0.0", advertised_host="node-1.example")
    assert settings.public_host == "node-1.example"


@pytest.mark.parametrize(
    "fields",
    [
        {"port": 70_000},
        {"host": "0.0.0.0"},  # wildcard without an advertised host
        {"batch_max_envelopes": 0},
        {"outbox_capacity": 0},
        {"batch_max_bytes": 1024 * 1024, "max_frame_bytes": 1024 * 1024},
        {"handshake_timeout": 0},
        {"backoff_min": 0},
        {"backoff_min": 2.0, "backoff_max": 1.0},
        {"backoff_multiplier": 0.5},
        {"backoff_jitter": 1.5},
        {"outbox_max_bytes": 0},
        {"control_outbox_capacity": 0},
        {"max_idle_associations": -1},
        {"quarantine_max_entries": 0},
        {"quarantine_max_age": 0},
        {"unreachable_drop_after": -1},
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RemoteSettings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("keepalive_interval", 0.0),
        ("keepalive_interval", float("nan")),
        ("keepalive_interval", float("inf")),
        ("keepalive_interval", 3e6),  # beyond gRPC's 32-bit milliseconds
        ("keepalive_timeout", -1.0),
        ("keepalive_timeout", 0.0001),  # rounds to 0 ms: no timeout at all
    ],
)
def test_invalid_keepalive_is_refused_naming_the_setting(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        RemoteSettings(**{name: value})  # type: ignore[arg-type]
