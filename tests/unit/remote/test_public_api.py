"""The public surface of shoal.remote is pinned: changing it must be a deliberate diff."""

from __future__ import annotations

import shoal.remote
import shoal.remote.testing
from shoal.runtime import ShoalError


def test_remote_exports() -> None:
    assert sorted(shoal.remote.__all__) == [
        "GrpcTransport",
        "NodeGoneError",
        "OutboxFullError",
        "PeerConnected",
        "PeerDisconnected",
        "PeerEvent",
        "PeerQuarantined",
        "PeerStatus",
        "RemoteActorRef",
        "RemoteAskError",
        "RemoteError",
        "RemoteMetrics",
        "RemoteSettings",
        "Remoting",
        "RemotingStartError",
        "TlsSettings",
        "Transport",
        "UnreachableError",
    ]
    for name in shoal.remote.__all__:
        assert getattr(shoal.remote, name) is not None


def test_remote_testing_exports() -> None:
    assert shoal.remote.testing.__all__ == ["MemoryNetwork"]


def test_errors_form_one_hierarchy() -> None:
    for name in (
        "NodeGoneError",
        "OutboxFullError",
        "RemoteAskError",
        "RemotingStartError",
        "UnreachableError",
    ):
        assert issubclass(getattr(shoal.remote, name), shoal.remote.RemoteError)
    assert issubclass(shoal.remote.RemoteError, ShoalError)
