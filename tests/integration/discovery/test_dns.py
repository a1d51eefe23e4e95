"""DNS discovery: real ``shoal node`` processes, a real DNS server on 127.0.0.1.

Each node gets its own loopback address (127.0.0.0/8 is all loopback on
Linux), so A records name the nodes as a Kubernetes headless service would.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.management import DiscoverySettings
from shoal.management._discovery import LookupFailed, Resolver, _invalid_answer
from tests.dns_server import DnsServer
from tests.integration.cli._nodes import NodeProcess, Nodes, members

_hosts = itertools.count(20)


def fresh_hosts(n: int) -> list[str]:
    """Loopback addresses no earlier run of this process used (no TIME_WAIT clash)."""
    return [f"127.0.{k // 200 + 1}.{k % 200 + 10}" for k in itertools.islice(_hosts, n)]


def free_port(hosts: list[str]) -> int:
    """A TCP port free on every one of ``hosts``."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return int(port)
    raise AssertionError("no common free port")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    lab = Nodes(tmp_path)
    yield lab
    lab.close()


def config(tmp_path: Path, dns: DnsServer, name: str, **extra: object) -> Path:
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.toml"
    lines = [
        "[discovery]",
        'method = "dns"',
        f'service_name = "{name}"',
        f'nameserver = "{dns.nameserver}"',
        "required_contact_points = 3",
    ]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_on(nodes: Nodes, host: str, http_port: int, conf: Path) -> NodeProcess:
    return nodes.start(
        "--host", host, "--http-host", host, "--http-port", str(http_port), "--config", str(conf)
    )


def one_cluster(all_nodes: list[NodeProcess]) -> None:
    expected = sorted(f"shoal://{n.address}" for n in all_nodes)
    for node in all_nodes:
        body = members(node)
        assert sorted(m["node"] for m in body["members"]) == expected
        assert {m["status"] for m in body["members"]} == {"Up"}


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("run", range(10))
def test_three_nodes_started_together_form_exactly_one_cluster(
    nodes: Nodes, dns_server: DnsServer, tmp_path: Path, run: int
) -> None:
    hosts = fresh_hosts(3)
    port = free_port(hosts)
    dns_server.zone.set("shoal.test", "A", hosts)
    conf = config(tmp_path, dns_server, "shoal.test")
    started = [start_on(nodes, host, port, conf) for host in hosts]
    decisions = []
    for node in started:
        node.wait_event("started")
        decisions.append(node.wait_event("discovered")["decision"])
        node.wait_event("up")
    # Exactly one formed: the lowest address; the others joined it.
    assert decisions.count("formed") == 1, decisions
    assert decisions[0] == "formed"  # hosts are in ascending order
    one_cluster(started)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_srv_records_and_a_late_node_joins_the_running_cluster(
    nodes: Nodes, dns_server: DnsServer, tmp_path: Path
) -> None:
    hosts = fresh_hosts(4)
    ports = [free_port([h]) for h in hosts]
    dns_server.zone.set(
        "_mgmt._tcp.shoal.test", "SRV", list(zip(hosts[:3], ports[:3], strict=True))
    )
    conf = config(tmp_path, dns_server, "_mgmt._tcp.shoal.test", record_type="SRV")
    first = [start_on(nodes, h, p, conf) for h, p in zip(hosts[:3], ports[:3], strict=True)]
    for node in first:
        node.wait_event("started")
        node.wait_event("up")
    # A fourth node appears in DNS later: the others answer with their seeds.
    dns_server.zone.set("_mgmt._tcp.shoal.test", "SRV", list(zip(hosts, ports, strict=True)))
    late = start_on(nodes, hosts[3], ports[3], conf)
    late.wait_event("started")
    assert late.wait_event("discovered")["decision"].startswith("joined ")
    late.wait_event("up")
    one_cluster([*first, late])


async def test_the_resolver_reads_a_srv_and_aaaa_records(dns_server: DnsServer) -> None:
    zone = dns_server.zone
    zone.set("svc.test", "A", ["10.0.0.2", "10.0.0.1"])
    zone.set("svc.test", "AAAA", ["::1"])
    zone.set("srv.test", "SRV", [("node-a.test", 9001), ("10.0.0.9", 9002)])
    zone.set("node-a.test", "A", ["10.0.0.7"])
    settings = DiscoverySettings.testing(
        method="dns", service_name="svc.test", nameserver=dns_server.nameserver
    )
    points = await Resolver(settings, 8558).contact_points()
    assert points == [("10.0.0.1", 8558), ("10.0.0.2", 8558), ("::1", 8558)]
    srv = DiscoverySettings.testing(
        method="dns", service_name="srv.test", record_type="SRV", nameserver=dns_server.nameserver
    )
    assert await Resolver(srv, 8558).contact_points() == [("10.0.0.7", 9001), ("10.0.0.9", 9002)]
    missing = DiscoverySettings.testing(
        method="dns", service_name="nothing.test", nameserver=dns_server.nameserver
    )
    assert await Resolver(missing, 8558).contact_points() == []


async def test_an_unreachable_nameserver_fails_the_lookup() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never answers
        settings = DiscoverySettings.testing(
            method="dns", service_name="x.test", nameserver=f"127.0.0.1:{port}", lookup_timeout=0.2
        )
        with pytest.raises(LookupFailed):
            await Resolver(settings, 8558).contact_points()


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (500, None, "status 500"),
        (200, [], "not a seed-nodes answer"),
        (200, {"seedNodes": []}, "not a seed-nodes answer"),
        (200, {"selfNode": "shoal://a@h:1", "seedNodes": "x"}, "not a list"),
        (200, {"selfNode": "shoal://a@h:1", "seedNodes": ["shoal://b@h"]}, "without a port"),
        (200, {"selfNode": "shoal://a@h:1", "seedNodes": ["shoal://b@h:2"]}, None),
    ],
)
def test_contact_point_answers_are_checked(status: int, body: object, why: str | None) -> None:
    result = _invalid_answer(status, body)
    if why is None:
        assert result is None
    else:
        assert result is not None
        assert why in result


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "dns"}, "service_name is required"),
        ({"contact_port": 0}, "invalid contact_port"),
        ({"required_contact_points": 0}, "required_contact_points"),
        ({"probe_interval": 0}, "probe_interval"),
        ({"nameserver": "dns.example"}, "nameserver must be an IP address"),
        ({"nameserver": "10.0.0.1:99999"}, "invalid nameserver port"),
    ],
)
def test_invalid_discovery_settings_name_the_setting(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DiscoverySettings(**kwargs)  # type: ignore[arg-type]
