"""A real DNS server on 127.0.0.1 for discovery tests (dnslib), with records tests change."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import AAAA, QTYPE, RR, SRV, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):  # type: ignore[misc]
    """Records by (name, type); answers NXDOMAIN for names it does not know."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], list[Any]] = {}
        self.queries = 0

    def set(self, name: str, rtype: str, values: list[Any]) -> None:
        """Replace the ``rtype`` records of ``name``: IPs for A/AAAA, (target, port) for SRV."""
        with self._lock:
            self._records[(name.rstrip(".") + ".", rtype)] = list(values)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries += 1
            known = any(name == qname for name, _ in self._records)
            values = list(self._records.get((qname, qtype), []))
        for value in values:
            if qtype == "A":
                rdata: Any = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            else:
                target, port = value
                rdata = SRV(priority=0, weight=0, port=port, target=target)
            reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=1))
        if not known:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class DnsServer:
    def __init__(self) -> None:
        self.zone = Zone()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._udp = DNSServer(self.zone, port=self.port, address="127.0.0.1", logger=quiet)
        self._udp.start_thread()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._udp.stop()
        self._udp.server.server_close()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.stop()
