"""Entity ids and shard ids: validation, the stable hash, and entity actor names."""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import quote

from ._errors import InvalidEntityIdError

MAX_ENTITY_ID_BYTES: Final = 512
"""The longest entity id, in UTF-8 bytes (it travels in every message to the entity)."""


def check_entity_id(entity_id: object) -> str:
    """``entity_id`` if it can address an entity, else :class:`InvalidEntityIdError`.

    An entity id is a non-empty ``str`` of at most :data:`MAX_ENTITY_ID_BYTES`
    bytes in UTF-8 (so no lone surrogates).
    """
    if not isinstance(entity_id, str):
        raise InvalidEntityIdError(f"an entity id is a str, not {type(entity_id).__name__}")
    if not entity_id:
        raise InvalidEntityIdError("an entity id is not empty")
    try:
        size = len(entity_id.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidEntityIdError(f"entity id {entity_id!r} is not valid UTF-8: {exc}") from None
    if size > MAX_ENTITY_ID_BYTES:
        raise InvalidEntityIdError(
            f"an entity id has at most {MAX_ENTITY_ID_BYTES} UTF-8 bytes, not {size}"
        )
    return entity_id


def shard_id(entity_id: str, number_of_shards: int) -> int:
    """The shard of ``entity_id``: a stable hash of its UTF-8 bytes modulo ``number_of_shards``.

    The hash is the first 8 bytes of BLAKE2b, big-endian: the same in every
    process, platform and Python version (``hash()`` is salted per process
    and would send one entity to two shards). Raises
    :class:`InvalidEntityIdError` for a bad id, ``ValueError`` for
    ``number_of_shards < 1``.
    """
    if number_of_shards < 1:
        raise ValueError(f"number_of_shards must be >= 1, not {number_of_shards}")
    data = check_entity_id(entity_id).encode("utf-8")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") % number_of_shards


def entity_actor_name(entity_id: str) -> str:
    """The child name of an entity under its shard: the id, percent-encoded (reversible)."""
    return quote(entity_id, safe="") or "%00"
