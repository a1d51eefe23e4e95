"""The errors of ``shoal.pubsub``."""

from __future__ import annotations

from shoal.runtime import ShoalError


class PubSubError(ShoalError):
    """Raised by :class:`DistributedPubSub` when it is used before it is started or
    after its node shut down, or with a ref it cannot take (a ref of another node)."""


class InvalidTopicError(PubSubError, ValueError):
    """Raised by ``subscribe``, ``publish`` and the other calls for a topic, group or
    path that is empty, too long (``PubSubSettings.max_name_length``), or not
    printable; nothing changes."""


class RegistryFullError(PubSubError):
    """Raised by ``subscribe``/``register`` when this node already registers
    ``PubSubSettings.max_keys`` topics and paths; nothing changes."""
