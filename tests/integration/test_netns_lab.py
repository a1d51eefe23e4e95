"""The network-namespace lab (tests/netns.py): real connectivity, real partitions, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.netns import PREFIX, LabError, NetnsLab, lab_objects, sweep_stale

# The lab's processes run on their own; the test's event loop only waits for
# them, so one loop is enough (asyncio's; uvloop adds nothing here).
ONE_LOOP = pytest.mark.asyncio(loop_factories=["asyncio"])

MakeLab = Callable[[int], NetnsLab]

# A TCP server answering "pong" to every connection.
SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(b"pong")
    conn.close()
"""

# One connection attempt: prints "pong", or "unreachable" after 0.5 s without an answer.
CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5) as conn:
        print(conn.recv(4).decode())
except OSError:
    print("unreachable")
"""

PORT = 4711
REPO = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def serving(lab: NetnsLab, host: int) -> AsyncIterator[None]:
    """A "pong" server on ``host`` while the block runs."""
    ip = lab.hosts[host].ip
    server = await lab.run(
        host, [sys.executable, "-c", SERVER, ip, str(PORT)], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        assert await asyncio.wait_for(server.stdout.readline(), 30) == b"ready\n"
        yield
    finally:
        server.kill()
        await server.wait()


async def probe(lab: NetnsLab, source: int, target: int) -> str:
    argv = [sys.executable, "-c", CLIENT, lab.hosts[target].ip, str(PORT)]
    client = await lab.run(source, argv, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(client.communicate(), 30)
    return out.decode().strip()


def master_of(link: str) -> str:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "dev", link], capture_output=True, text=True, check=True
    ).stdout
    fields = out.split()
    return fields[fields.index("master") + 1]


@ONE_LOOP
async def test_hosts_talk_until_partitioned_and_again_after_heal(netns_lab: MakeLab) -> None:
    lab = netns_lab(3)
    assert len({host.ip for host in lab.hosts}) == 3
    async with serving(lab, 0):
        assert [await probe(lab, source, 0) for source in (1, 2)] == ["pong", "pong"]

        lab.partition([2])  # 2 | 0 1
        assert await probe(lab, 1, 0) == "pong"
        assert await probe(lab, 2, 0) == "unreachable"

        lab.partition([0], [1, 2])  # replaces the earlier partition
        assert await probe(lab, 1, 0) == "unreachable"
        assert await probe(lab, 2, 0) == "unreachable"

        lab.heal()
        assert [await probe(lab, source, 0) for source in (1, 2)] == ["pong", "pong"]


@ONE_LOOP
async def test_a_host_does_not_reach_the_machines_loopback(netns_lab: MakeLab) -> None:
    lab = netns_lab(1)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        # The machine's loopback answers here, but 127.0.0.1 in the lab is the host's own.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        argv = [sys.executable, "-c", CLIENT, "127.0.0.1", str(port)]
        client = await lab.run(0, argv, stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(client.communicate(), 30)
        assert out.decode().strip() == "unreachable"


@ONE_LOOP
async def test_close_kills_what_runs_inside_and_removes_every_object(netns_lab: MakeLab) -> None:
    lab = netns_lab(2)
    lab.partition([1])
    sleeper = await lab.run(1, ["sleep", "600"])
    namespaces, links = lab_objects()
    assert {host.netns for host in lab.hosts} <= namespaces
    assert {host.port_link for host in lab.hosts} <= links

    lab.close()
    assert await asyncio.wait_for(sleeper.wait(), 30) < 0  # killed by a signal
    namespaces, links = lab_objects()
    assert not {name for name in namespaces | links if name.startswith(PREFIX + lab.tag)}
    lab.close()  # idempotent
    with pytest.raises(LabError, match="closed"):
        lab.heal()


def test_bad_partitions_are_refused_and_change_nothing(netns_lab: MakeLab) -> None:
    lab = netns_lab(2)
    other = netns_lab(1)
    bridge = master_of(lab.hosts[0].port_link)
    with pytest.raises(ValueError, match="two groups"):
        lab.partition([0], [0, 1])
    with pytest.raises(ValueError, match="no host 5"):
        lab.partition([5])
    with pytest.raises(ValueError, match="not a host"):
        lab.partition([other.hosts[0]])
    assert {master_of(host.port_link) for host in lab.hosts} == {bridge}
    with pytest.raises(ValueError, match=r"1\.\.200 hosts"):
        netns_lab(0)


# A run that builds a lab, says so, and waits to be killed.
CRASHING_RUN = """
import sys, time
from tests.netns import NetnsLab
lab = NetnsLab.create(2)
lab.partition([1])
print(lab.tag, flush=True)
time.sleep(600)
"""


@ONE_LOOP
async def test_labs_left_by_a_crashed_run_are_swept(netns_lab: MakeLab) -> None:
    live = netns_lab(1)  # this run's lab stays
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_RUN, cwd=REPO, stdout=subprocess.PIPE
    )
    assert run.stdout is not None
    tag = (await asyncio.wait_for(run.stdout.readline(), 30)).decode().strip()
    run.kill()  # no cleanup: the lab stays behind
    await run.wait()
    namespaces, links = lab_objects()
    left = {name for name in namespaces | links if name.startswith(PREFIX + tag)}
    assert len(left) == 2 + 2 + 2  # namespaces, veth ends, bridges (one per group)

    # (Names of other runs are left out: another session may sweep meanwhile.)
    removed = {name for name in sweep_stale() if name.startswith(PREFIX + tag)}
    # Veth ends may go with their namespace before the sweep gets to them.
    assert {name for name in left if name[-3] in "nb"} <= removed <= left
    namespaces, links = lab_objects()
    assert not {name for name in namespaces | links if name.startswith(PREFIX + tag)}
    assert live.hosts[0].netns in namespaces
    assert not [name for name in sweep_stale() if name.startswith(PREFIX + tag)]


@pytest.mark.parametrize(("ci", "outcome"), [("", "skip"), ("true", "fail")])
def test_no_namespaces_skips_with_the_reason_but_fails_in_ci(
    netns_lab: MakeLab, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", "/nonexistent")  # no `ip`
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="iproute2"):
        netns_lab(1)
