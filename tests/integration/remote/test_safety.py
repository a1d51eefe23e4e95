"""Remoting that is safe by default: authentication beyond loopback, what a peer may
address, and who decides that an incarnation replaced another."""

from __future__ import annotations

import logging

import pytest

from shoal.remote import RemoteSettings, RemotingStartError

from .conftest import Nodes

# -- listening beyond loopback -------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "node-1.example"])
async def test_listening_beyond_loopback_without_authentication_fails(
    nodes: Nodes, host: str
) -> None:
    with pytest.raises(RemotingStartError, match="cluster_secret=") as info:
        await nodes.start(settings=RemoteSettings.testing(host=host, advertised_host="n1"))
    assert "allow_unauthenticated" in str(info.value)
    assert "tls=TlsSettings" in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert RemoteSettings(host=host).loopback


def test_other_hosts_are_not_loopback() -> None:
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.org"):
        assert not RemoteSettings(host=host, advertised_host="x").loopback


async def test_a_cluster_secret_allows_listening_on_a_wildcard(nodes: Nodes) -> None:
    _, remoting = await nodes.start(
        settings=RemoteSettings.testing(
            host="0.0.0.0", advertised_host="127.0.0.1", cluster_secret=b"s"
        )
    )
    assert remoting.port > 0


async def test_the_explicit_opt_out_listens_and_warns(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.remote")
    _, remoting = await nodes.start(
        settings=RemoteSettings.testing(
            host="0.0.0.0", advertised_host="127.0.0.1", allow_unauthenticated=True
        )
    )
    assert remoting.port > 0
    assert any("allow_unauthenticated=True" in r.getMessage() for r in caplog.records)


async def test_loopback_needs_no_authentication(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.remote")
    await nodes.start()
    assert not caplog.records
