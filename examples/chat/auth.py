"""Chat tokens: ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``.

The payload is the JSON ``{"u": user, "exp": unix seconds}``. Every node
shares the secret, so a token from one node is valid on all of them. The
user id of a connection comes from its token only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Final

from .protocol import valid_name

DEFAULT_TTL: Final = 24 * 3600.0


class TokenError(Exception):
    """A token that is missing, malformed, tampered with or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: bytes, user: str, now: float, ttl: float = DEFAULT_TTL) -> tuple[str, int]:
    """A token for ``user`` valid until ``now + ttl``; returns it and its expiry."""
    if not valid_name(user):
        raise ValueError(f"not a valid user name: {user!r}")
    expires = int(now + ttl)
    payload = json.dumps({"u": user, "exp": expires}, separators=(",", ":")).encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}", expires


def verify(secret: bytes, token: str | None, now: float) -> str:
    """The user ``token`` was issued for; :class:`TokenError` if it is not valid now."""
    if not token:
        raise TokenError("no token")
    if len(token) > 1024:
        raise TokenError("token too long")
    payload_text, dot, signature_text = token.partition(".")
    if not dot:
        raise TokenError("malformed token")
    try:
        payload = _unb64(payload_text)
        signature = _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("bad token signature")
    try:
        body = json.loads(payload)
    except ValueError:
        raise TokenError("malformed token") from None
    if not isinstance(body, dict):
        raise TokenError("malformed token")
    user, expires = body.get("u"), body.get("exp")
    if not valid_name(user) or not isinstance(expires, int) or isinstance(expires, bool):
        raise TokenError("malformed token")
    if now >= expires:
        raise TokenError("token expired")
    assert isinstance(user, str)
    return user
