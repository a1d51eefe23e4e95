"""The errors of ``shoal.sharding``: one small hierarchy, each saying who raises it and when."""

from __future__ import annotations

from shoal.runtime import ShoalError


class ShardingError(ShoalError):
    """Base of every error raised by ``shoal.sharding`` (singletons included).

    Raised as such for misuse of the API: a singleton or entity type started
    twice with different settings, an unknown type name, sharding used on a
    system whose cluster is not started.
    """


class BufferFullError(ShardingError):
    """An ask failed because the buffer in front of a moving target was full.

    Raised into the asker by a singleton proxy or a shard region whose
    bounded buffer (``buffer_size``) overflowed while the singleton or the
    shard was being located or handed off; the message itself went to dead
    letters (reason ``buffer-full``) and was counted.
    """


class InvalidEntityIdError(ShardingError, ValueError):
    """An entity id that cannot address an entity: empty, too long, or not a string.

    Raised by :meth:`ShardRegion.entity` (and by ``shard_id``) at the call,
    before anything is sent.
    """
