"""Actor paths: ``shoal://<system>@<host>:<port>/user/<name>/...``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._address import Address

_SCHEME: Final = "shoal://"
# Names are URI path segments; "$" starts the names Shoal generates itself.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9\-_.~:@!&'()*+,;=%][A-Za-z0-9\-_.~:@!&'()*+,;=%$]*")


def valid_name(name: str) -> bool:
    """Whether ``name`` may be given to ``spawn`` (no ``/``, no leading ``$``)."""
    return len(name) <= 255 and name not in (".", "..") and _NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class ActorPath:
    """A parsed actor path.

    ``address`` is ``"system"`` for a system without remoting and
    ``"system@host:port"`` for one reachable over the network; ``elements``
    are the names below the root, e.g. ``("user", "counter")``.
    """

    address: str
    elements: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ActorPath:
        """Parse ``shoal://address/elem/...``; raises ``ValueError`` if malformed."""
        if not text.startswith(_SCHEME):
            raise ValueError(f"not a shoal actor path: {text!r}")
        address, _, rest = text[len(_SCHEME) :].partition("/")
        if not address or not rest:
            raise ValueError(f"actor path without address or elements: {text!r}")
        elements = tuple(rest.split("/"))
        if any(not e for e in elements):
            raise ValueError(f"empty element in actor path: {text!r}")
        return cls(address, elements)

    @property
    def system(self) -> str:
        """The actor system's name."""
        return self.address.partition("@")[0]

    @property
    def host_port(self) -> tuple[str, int] | None:
        """``(host, port)`` of a remote address, or ``None`` for a local-only one."""
        _, at, hp = self.address.partition("@")
        if not at:
            return None
        host, colon, port = hp.rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"malformed address {self.address!r}")
        return host.strip("[]"), int(port)

    @property
    def node(self) -> Address:
        """The typed :class:`Address` of the node; ``ValueError`` if it is malformed."""
        from ._address import Address  # noqa: PLC0415 - _address imports this module

        return Address.parse(self.address)

    @property
    def name(self) -> str:
        """The last element."""
        return self.elements[-1]

    def child(self, name: str) -> ActorPath:
        return ActorPath(self.address, (*self.elements, name))

    def __str__(self) -> str:
        return f"{_SCHEME}{self.address}/{'/'.join(self.elements)}"
