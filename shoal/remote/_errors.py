"""The remote transport's error hierarchy.

Every error :mod:`shoal.remote` raises on purpose is defined here and
exported from the package. ``tell`` never raises any of them: what cannot be
delivered goes to dead letters. They surface from ``ask`` (and
``RemoteActorRef.stop()``) and from :meth:`Remoting.start`.
"""

from __future__ import annotations

from shoal.runtime import ShoalError


class RemoteError(ShoalError):
    """Base class of the errors of :mod:`shoal.remote`."""


class RemoteAskError(RemoteError):
    """The remote handler of an ``ask`` raised; re-raised on the asking node.

    Nothing is pickled: only the exception's class name (``error_type``) and
    its message (``error_message``) cross the wire. ``ActorStoppedError`` and
    ``MailboxFullError`` raised remotely are re-raised as themselves instead,
    so code handling a local ask's failures works unchanged.
    """

    def __init__(self, error_type: str, error_message: str) -> None:
        super().__init__(f"the remote handler raised {error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message


class NodeGoneError(RemoteError):
    """An ``ask`` (or remote ``stop()``) whose target node was declared gone.

    Raised when :meth:`Remoting.node_gone` or :meth:`Remoting.quarantine`
    is called for the node while the ask waits, or when the ask is sent to a
    node this one has quarantined.
    """


class OutboxFullError(RemoteError):
    """An ``ask`` that could not be queued because the peer's outbox is full.

    ``tell`` sends such messages to dead letters instead; ``ask`` fails at
    once, so the caller does not wait for a timeout.
    """


class RemotingStartError(RemoteError):
    """:meth:`Remoting.start` failed: the address cannot be bound, the TLS
    files cannot be read, remoting is already started on this system, or it
    would listen on a non-loopback address without authentication (see
    ``RemoteSettings.allow_unauthenticated``)."""


class UnreachableError(RemoteError):
    """An ``ask`` whose message could not be delivered to a reachable peer.

    Raised when the peer stayed unreachable longer than
    ``unreachable_drop_after`` (for asks already waiting, and at once for new
    ones until a stream is established again), refused this node's handshake,
    when the stream broke while the message was being written, or when
    remoting closed while the ask waited. The message names the address and
    the last connect error.
    """
