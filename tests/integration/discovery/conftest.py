"""The discovery tests' real DNS server."""

from tests.dns_server import dns_server

__all__ = ["dns_server"]
