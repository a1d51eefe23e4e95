"""A small structural JSON schema, and the management API's shapes as documented."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

NODE = r"^shoal://shoal@127\.\d+\.\d+\.\d+:\d+$"


def check_schema(value: Any, schema: Any, where: str = "$") -> None:
    """A small structural schema: types, dict keys (exact), list items, regexes."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        assert set(value) == set(schema), f"{where}: keys {sorted(value)} != {sorted(schema)}"
        for key, sub in schema.items():
            check_schema(value[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, tuple):  # alternatives
        errors = []
        for alt in schema:
            try:
                check_schema(value, alt, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(" / ".join(errors))
    elif isinstance(schema, str):
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
        assert re.match(schema, value), f"{where}: {value!r} !~ {schema}"
    elif schema is None:
        assert value is None, f"{where}: {value!r} is not null"
    else:
        assert isinstance(value, schema), f"{where}: {value!r} is not {schema.__name__}"


MEMBER = {
    "node": NODE,
    "nodeUid": r"^\d+$",
    "status": r"^(Joining|WeaklyUp|Up|Leaving|Exiting|Down)$",
    "roles": [str],
}


def members_schema(roles: Iterable[str]) -> dict[str, Any]:
    per_role = dict.fromkeys(roles, (NODE, None))
    return {
        "selfNode": NODE,
        "leader": (NODE, None),
        "oldest": (NODE, None),
        "members": [MEMBER],
        "unreachable": [{"node": NODE, "observedBy": [NODE]}],
        "oldestPerRole": per_role,
        "leaderPerRole": per_role,
    }


ERROR = {"error": str, "status": int}

READY = {"status": r"^(ready|not ready)$", "failed": dict}

ALIVE = {"status": "^alive$", "node": NODE}

SEED_NODES = {"selfNode": NODE, "seedNodes": [NODE]}
