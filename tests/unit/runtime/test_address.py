"""Typed node addresses: parsing, formatting, ordering."""

from __future__ import annotations

import pytest

from shoal.runtime import ActorPath, Address, UniqueAddress


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app", Address("app")),
        ("app@10.0.0.2:2552", Address("app", "10.0.0.2", 2552)),
        ("app@node-1.example:1", Address("app", "node-1.example", 1)),
        ("app@[::1]:2552", Address("app", "::1", 2552)),
        ("app@[fe80::1%eth0]:65535", Address("app", "fe80::1%eth0", 65535)),
    ],
)
def test_parse_and_format_round_trip(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("app@host", "without a port"),
        ("app@host:", "without a port"),
        ("app@host:x1", "without a port"),
        ("app@::1:2552", "IPv6 host must be in brackets"),
        ("app@[::1:2552", "unclosed bracket"),
        ("app@:2552", "invalid host"),
        ("app@host:0", "invalid port"),
        ("app@host:70000", "invalid port"),
        ("", "invalid actor system name"),
        ("a/b@host:1", "invalid actor system name"),
    ],
)
def test_malformed_addresses_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Address.parse(text)


def test_host_and_port_come_together() -> None:
    with pytest.raises(ValueError, match="both a host and a port"):
        Address("app", "h", None)
    assert not Address("app").has_host
    assert Address("app", "h", 1).has_host


def test_addresses_are_hashable_and_ordered_field_by_field() -> None:
    unordered = [
        Address("app", "10.0.0.2", 2552),
        Address("app", "10.0.0.1", 2553),
        Address("app"),
        Address("app", "10.0.0.1", 2552),
        Address("aaa", "z", 1),
    ]
    assert sorted(unordered) == [
        Address("aaa", "z", 1),
        Address("app"),  # local-only before remote
        Address("app", "10.0.0.1", 2552),
        Address("app", "10.0.0.1", 2553),
        Address("app", "10.0.0.2", 2552),
    ]
    assert len({Address.parse("app@h:1"), Address("app", "h", 1)}) == 1
    assert Address("app") < Address("app", "h", 1) <= Address("app", "h", 1)


def test_unique_addresses_tell_incarnations_apart() -> None:
    node = Address("app", "h", 2552)
    first, second = UniqueAddress(node, 7), UniqueAddress(node, 3)
    assert first != second
    assert sorted([first, second]) == [second, first]
    assert UniqueAddress(Address("app", "a", 9), 99) < first  # address first, then uid
    assert str(first) == "app@h:2552#7"
    assert {first: 1}[UniqueAddress(Address("app", "h", 2552), 7)] == 1


def test_an_actor_path_exposes_its_node_address() -> None:
    assert ActorPath.parse("shoal://app@[::1]:2552/user/a").node == Address("app", "::1", 2552)
    assert ActorPath.parse("shoal://app/user/a").node == Address("app")
