"""Mutual TLS between nodes, with certificates made by openssl for the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.remote import RemoteSettings, RemotingStartError, TlsSettings
from shoal.runtime.testing import Probe

from ._actors import Echo
from .conftest import Nodes, eventually

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    """A self-signed CA (``ca.pem``, ``ca.key``) and one node certificate it signed
    (``node.pem``, ``node.key``) valid for 127.0.0.1 and localhost, as server and client."""
    directory.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", f"/CN={name} test CA", cwd=directory)  # fmt: skip
    _openssl("req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node",
             cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "ext.cnf",
             cwd=directory)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("certs")
    make_ca(root / "cluster", "cluster")
    make_ca(root / "rogue", "rogue")
    return root


def tls(directory: Path) -> TlsSettings:
    return TlsSettings(directory / "node.pem", directory / "node.key", directory / "ca.pem")


async def test_nodes_with_certificates_of_the_cluster_ca_talk(nodes: Nodes, certs: Path) -> None:
    a, _ = await nodes.start(settings=RemoteSettings.testing(tls=tls(certs / "cluster")))
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(tls=tls(certs / "cluster")))
    b.spawn(Echo, name="echo")
    assert await a.resolve(f"shoal://{remote_b.address}/user/echo").ask("over tls") == "over tls"
    assert remote_b.metrics.handshakes_accepted == 1


@pytest.mark.parametrize("client", ["plaintext", "rogue"])
async def test_a_peer_without_a_cluster_certificate_cannot_connect(
    nodes: Nodes, certs: Path, client: str
) -> None:
    settings = (
        RemoteSettings.testing()
        if client == "plaintext"
        else RemoteSettings.testing(tls=tls(certs / "rogue"))
    )
    a, remote_a = await nodes.start(settings=settings)
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(tls=tls(certs / "cluster")))
    probe = Probe(b, "probe")
    a.resolve(f"shoal://{remote_b.address}/user/probe").tell("let me in")
    # The TLS handshake fails, so the stream does: A backs off and keeps the message.
    await eventually(lambda: remote_a.peers[remote_b.address].state == "backoff")
    assert remote_a.peers[remote_b.address].queued == 1
    assert remote_b.metrics.handshakes_accepted == 0
    assert remote_a.metrics.connects == 0
    assert probe.pending() == 0


async def test_unreadable_certificate_files_fail_start(nodes: Nodes, tmp_path: Path) -> None:
    missing = TlsSettings(tmp_path / "no.pem", tmp_path / "no.key", tmp_path / "no-ca.pem")
    with pytest.raises(RemotingStartError, match="cannot read TLS files"):
        await nodes.start(settings=RemoteSettings.testing(tls=missing))
