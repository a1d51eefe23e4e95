"""Pytest plugin and lab: Linux network namespaces joined by bridges, partitioned for real.

A :class:`NetnsLab` gives each of its hosts a network namespace with its own
IPv4 address, joined to the other hosts by a veth pair on a bridge. A process
started in a host's namespace (:meth:`NetnsLab.run`, or any command prefixed
with :meth:`NetnsLab.exec_argv`) sees only the lab's network: no default
route, no loopback of the machine. :meth:`NetnsLab.partition` cuts traffic
between groups of hosts by moving each group's veths to a bridge of its own
(every process keeps running, established TCP connections simply stop
hearing from the other side); :meth:`NetnsLab.heal` puts them back on one
bridge. ``tc netem``, ``iptables`` and ``nft`` are not needed (see
``/work/shared/netns.md``: the kernel here has no netem).

Names and cleanup. Every namespace and link of a lab is named
``shoal<pid><lab><kind><index>`` (pid and lab number in base 36, at most 15
characters, the kernel's limit for a link name), so two runs never collide
and :func:`sweep_stale` can remove what a crashed run left behind: whatever
carries that shape and the pid of a process that no longer exists.
:meth:`NetnsLab.close` kills every process still inside the lab's
namespaces, then deletes the namespaces (their veths go with them) and the
bridges.

The fixture ``netns_lab`` is a factory (``netns_lab(3)`` -> a lab of three
hosts) that closes every lab it made. A test using it is marked ``netns``
automatically. Where namespaces cannot be created (not root, no ``ip``)
the test is skipped with the reason, and fails when ``$CI`` is ``true``, so
CI never passes without having run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import pytest

MARKER: Final = "netns"
FIXTURE_NAME: Final = "netns_lab"
PREFIX: Final = "shoal"

_NAME: Final = re.compile(rf"^{PREFIX}([0-9a-z]{{5}})([0-9a-z]{{2}})([bnv])([0-9a-z]{{2}})$")
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_HOSTS: Final = 200
_IP_TIMEOUT: Final = 10.0  # seconds for one `ip` command; only reached when something hangs
_labs: Final = itertools.count()


class LabError(RuntimeError):
    """An ``ip`` command failed (raised by :class:`NetnsLab` with the command and its error)."""


def _base36(number: int, width: int) -> str:
    digits = ""
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits = _DIGITS[digit] + digits
    if number:
        raise ValueError(f"{number} does not fit {width} base-36 digits")
    return digits


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


@dataclass(frozen=True, slots=True)
class Host:
    """One host of a lab: a network namespace with one address on the lab's network."""

    index: int
    """Position in ``NetnsLab.hosts`` (from 0)."""
    netns: str
    """The namespace's name (``ip netns exec <netns> ...``)."""
    ip: str
    """The host's IPv4 address; a process listens on it to be reachable from the lab."""
    port_link: str
    """The bridge-side end of the host's veth pair, in the machine's own namespace."""


class NetnsLab:
    """``count`` hosts in network namespaces, all connected until :meth:`partition`.

    Create with :meth:`NetnsLab.create` (raises :class:`LabError` when the
    machine does not allow it, after removing what it made). Methods run
    ``ip`` synchronously (a few milliseconds each) and are not thread-safe.
    """

    def __init__(self, tag: str, hosts: Sequence[Host]) -> None:
        self.tag = tag
        self.hosts: tuple[Host, ...] = tuple(hosts)
        self._bridges: list[str] = []
        self._closed = False

    @classmethod
    def create(cls, count: int) -> NetnsLab:
        """A lab of ``count`` (1..200) hosts with addresses ``10.x.y.1``, ``.2``, ..."""
        if not 1 <= count <= _MAX_HOSTS:
            raise ValueError(f"a lab has 1..{_MAX_HOSTS} hosts, not {count}")
        seq = next(_labs)
        tag = _base36(os.getpid(), 5) + _base36(seq % 36**2, 2)
        # Each lab is its own layer-2 network with no route out, so equal
        # subnets could not meet anyway; distinct ones keep logs unambiguous.
        subnet = ipaddress.ip_network(f"10.{77 + seq % 150}.{os.getpid() % 256}.0/24")
        hosts = [
            Host(
                index=i,
                netns=f"{PREFIX}{tag}n{_base36(i, 2)}",
                ip=str(subnet.network_address + i + 1),
                port_link=f"{PREFIX}{tag}v{_base36(i, 2)}",
            )
            for i in range(count)
        ]
        lab = cls(tag, hosts)
        try:
            lab._build(subnet.prefixlen)
        except BaseException:
            lab.close()
            raise
        return lab

    def _bridge(self, group: int) -> str:
        name = f"{PREFIX}{self.tag}b{_base36(group, 2)}"
        if name not in self._bridges:
            _ip("link", "add", name, "type", "bridge")
            self._bridges.append(name)
            _ip("link", "set", name, "up")
        return name

    def _build(self, prefixlen: int) -> None:
        bridge = self._bridge(0)
        for host in self.hosts:
            _ip("netns", "add", host.netns)
            # The namespace's end is created inside it, as eth0.
            _ip(*f"link add {host.port_link} type veth peer name eth0 netns {host.netns}".split())
            _ip("link", "set", host.port_link, "master", bridge, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.ip}/{prefixlen}", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")

    def _host(self, item: Host | int) -> Host:
        if isinstance(item, Host):
            if item not in self.hosts:
                raise ValueError(f"{item.netns} is not a host of lab {self.tag}")
            return item
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(self.hosts):
            return self.hosts[item]
        raise ValueError(f"no host {item!r} in a lab of {len(self.hosts)} hosts")

    def partition(self, *groups: Iterable[Host | int]) -> None:
        """Cut traffic between ``groups`` (hosts or host indexes); within a group it flows.

        Hosts named in no group form one more group together, so
        ``partition([2])`` cuts host 2 off from all the others. A host named
        twice, or not of this lab, raises ``ValueError`` and changes nothing.
        Replaces any earlier partition.
        """
        self._check_open()
        placed: dict[Host, int] = {}
        for number, group in enumerate(groups, start=1):
            for item in group:
                host = self._host(item)
                if host in placed:
                    raise ValueError(f"host {host.index} is in two groups")
                placed[host] = number
        for host in self.hosts:
            _ip("link", "set", host.port_link, "master", self._bridge(placed.get(host, 0)))

    def heal(self) -> None:
        """Connect every host to every other again (undoes :meth:`partition`)."""
        self._check_open()
        bridge = self._bridge(0)
        for host in self.hosts:
            _ip("link", "set", host.port_link, "master", bridge)

    def exec_argv(self, host: Host | int) -> list[str]:
        """The prefix that runs a command inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self._host(host).netns]

    async def run(
        self, host: Host | int, argv: Sequence[str], **kwargs: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` inside ``host``'s namespace (``kwargs`` as for
        ``asyncio.create_subprocess_exec``).

        The caller owns the process: end it and wait for it before its event
        loop closes. :meth:`close` kills whatever still runs in the lab anyway,
        so a failing test leaves no process behind."""
        self._check_open()
        if not argv:
            raise ValueError("run() needs a command")
        return await asyncio.create_subprocess_exec(*self.exec_argv(host), *argv, **kwargs)

    def close(self) -> None:
        """Kill what runs in the lab's namespaces, delete them and the bridges. Idempotent.

        Best effort over every object; raises :class:`LabError` at the end if
        one could not be removed.
        """
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for host in self.hosts:
            _kill_inside(host.netns)
            with _collect(errors):
                _delete_netns(host.netns)
        # A veth goes with its namespace, but the kernel frees a namespace
        # asynchronously: what is still listed is deleted here.
        existing = _existing_links()
        for host in self.hosts:
            if host.port_link in existing:
                with _collect(errors):
                    _delete_link(host.port_link)
        for bridge in self._bridges:
            with _collect(errors):
                _delete_link(bridge)
        if errors:
            raise LabError("; ".join(errors))

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.tag} is closed")


@contextlib.contextmanager
def _collect(errors: list[str]) -> Iterator[None]:
    try:
        yield
    except LabError as exc:
        errors.append(str(exc))


def _kill_inside(netns: str) -> None:
    """SIGKILL every process in ``netns`` (a namespace with processes outlives its name)."""
    done = _ip("netns", "pids", netns, check=False)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _delete_netns(name: str) -> None:
    done = _ip("netns", "del", name, check=False)
    if done.returncode != 0 and name in _existing_netns():
        raise LabError(f"ip netns del {name}: {done.stderr.strip()}")


def _delete_link(name: str) -> None:
    done = _ip("link", "del", name, check=False)
    if done.returncode != 0 and name in _existing_links():
        raise LabError(f"ip link del {name}: {done.stderr.strip()}")


def _existing_netns() -> set[str]:
    done = _ip("netns", "list", check=False)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def _existing_links() -> set[str]:
    done = _ip("-o", "link", "show", check=False)
    names = set()
    for line in done.stdout.splitlines():
        # "7: name@peer: <FLAGS> ..." -- the name ends at "@" or ":".
        fields = line.split(":", 2)
        if len(fields) == 3:
            names.add(fields[1].strip().partition("@")[0])
    return names


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lab_objects() -> tuple[set[str], set[str]]:
    """Names of every lab namespace and lab link on the machine (any run's)."""
    return (
        {name for name in _existing_netns() if _NAME.match(name)},
        {name for name in _existing_links() if _NAME.match(name)},
    )


def sweep_stale() -> list[str]:
    """Remove namespaces and links of labs whose process is gone; the names removed
    (a veth that went with its namespace meanwhile may be missing from them).

    Only names of the lab's shape are considered, and only those whose pid
    no longer runs: labs of live runs (another test session) are left alone.
    Runs are assumed to share one pid namespace (as on the project's machines
    and CI); a run in another pid namespace could have its lab taken for stale.
    """
    removed = []
    namespaces, links = lab_objects()
    for name in sorted(namespaces):
        match = _NAME.match(name)
        assert match is not None
        if not _owner_alive(int(match.group(1), 36)):
            _kill_inside(name)
            _delete_netns(name)
            removed.append(name)
    # Bridges and veth ends whose namespace is gone (veths die with their namespace).
    _, links = lab_objects()
    for name in sorted(links):
        match = _NAME.match(name)
        assert match is not None
        if not _owner_alive(int(match.group(1), 36)):
            _delete_link(name)
            removed.append(name)
    return removed


# -- the pytest plugin ----------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason}; CI=true requires the network-namespace tests to run", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``netns_lab`` fixture ``netns``."""
    for item in items:
        if FIXTURE_NAME in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)


@pytest.fixture(scope="session")
def _netns_swept() -> None:
    """Once per session, before the first lab: remove labs left by crashed runs."""
    if shutil.which("ip") is not None:
        with contextlib.suppress(LabError):
            sweep_stale()


@pytest.fixture
def netns_lab(_netns_swept: None) -> Iterator[Callable[[int], NetnsLab]]:
    """A factory of :class:`NetnsLab` (``netns_lab(hosts)``); every lab is closed at teardown.

    Skips the test with the reason where namespaces cannot be created (fails
    under ``CI=true``). The first use in a session removes labs left by
    crashed runs (:func:`sweep_stale`).
    """
    labs: list[NetnsLab] = []

    def make(count: int) -> NetnsLab:
        if shutil.which("ip") is None:
            _unavailable("network namespaces: the `ip` command (iproute2) is not installed")
        try:
            lab = NetnsLab.create(count)
        except LabError as exc:
            error = exc
        else:
            labs.append(lab)
            return lab
        _unavailable(f"network namespaces cannot be created here: {error}")

    yield make
    errors = []
    for lab in labs:
        try:
            lab.close()
        except LabError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail(f"lab cleanup left objects behind: {'; '.join(errors)}")
