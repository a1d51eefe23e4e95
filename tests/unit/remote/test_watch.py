"""Remote death-watch bookkeeping with one peer, without a network."""

from __future__ import annotations

from typing import Any

from shoal.remote._watch import RemoteWatches
from shoal.remote._wire import K_TERMINATED, K_TERMINATED_UNCONFIRMED, K_UNWATCH, K_WATCH


class FakeRef:
    """Stands in for local actor refs and remote ones (``path_str``) alike."""

    def __init__(self, path: str) -> None:
        self.path_str = path
        self.events: list[tuple[str, Any, Any]] = []

    def notify_terminated(self, ref: Any, existence_confirmed: bool = True) -> None:
        self.events.append(("terminated", ref, existence_confirmed))

    def add_watcher(self, watcher: Any) -> None:
        self.events.append(("watch", watcher, None))

    def remove_watcher(self, watcher: Any) -> None:
        self.events.append(("unwatch", watcher, None))


def make(gone: bool = False) -> tuple[RemoteWatches, list[tuple[int, str, str]]]:
    sent: list[tuple[int, str, str]] = []
    watches = RemoteWatches(
        lambda kind, target, sender: sent.append((kind, target, sender)),
        lambda ref: ref.path_str,  # type: ignore[attr-defined]
        lambda: gone,
    )
    return watches, sent


def test_a_watch_is_sent_once_per_pair_and_unwatch_undoes_it() -> None:
    watches, sent = make()
    remote, local = FakeRef("remote/x"), FakeRef("local/w")
    watches.watch(remote, local)  # type: ignore[arg-type]
    watches.watch(remote, local)  # type: ignore[arg-type]
    assert sent == [(K_WATCH, "remote/x", "local/w")]
    watches.unwatch(remote, local)  # type: ignore[arg-type]
    watches.unwatch(remote, local)  # type: ignore[arg-type]
    assert sent[1:] == [(K_UNWATCH, "remote/x", "local/w")]
    assert watches.watching == {}


def test_a_notification_reaches_a_watcher_only_while_it_watches() -> None:
    watches, _ = make()
    remote, local = FakeRef("remote/x"), FakeRef("local/w")
    watches.watch(remote, local)  # type: ignore[arg-type]
    watches.remote_terminated(remote, local, confirmed=True)  # type: ignore[arg-type]
    watches.remote_terminated(remote, local, confirmed=True)  # type: ignore[arg-type]
    assert local.events == [("terminated", remote, True)]


def test_watching_an_actor_of_a_quarantined_incarnation_terminates_at_once() -> None:
    watches, sent = make(gone=True)
    remote, local = FakeRef("remote/x"), FakeRef("local/w")
    watches.watch(remote, local)  # type: ignore[arg-type]
    assert local.events == [("terminated", remote, False)]
    assert sent == []


def test_remote_watchers_of_local_actors_are_notified_and_forgotten() -> None:
    watches, sent = make()
    target, watcher = FakeRef("local/t"), FakeRef("remote/w")
    watches.remote_watch(target, watcher)  # type: ignore[arg-type]
    assert target.events == [("watch", watcher, None)]
    watches.notify_terminated(watcher, target, confirmed=False)  # type: ignore[arg-type]
    assert sent == [(K_TERMINATED_UNCONFIRMED, "remote/w", "local/t")]
    assert watches.watched_by == {}
    watches.remote_watch(target, watcher)  # type: ignore[arg-type]
    watches.notify_terminated(watcher, target, confirmed=True)  # type: ignore[arg-type]
    assert sent[-1] == (K_TERMINATED, "remote/w", "local/t")


def test_settle_ends_every_watch_in_both_directions() -> None:
    watches, _ = make()
    remote_x, remote_y = FakeRef("remote/x"), FakeRef("remote/y")
    local_w, local_t = FakeRef("local/w"), FakeRef("local/t")
    remote_watcher = FakeRef("remote/w")
    watches.watch(remote_x, local_w)  # type: ignore[arg-type]
    watches.watch(remote_y, local_w)  # type: ignore[arg-type]
    watches.remote_watch(local_t, remote_watcher)  # type: ignore[arg-type]
    assert watches.settle() == 3
    assert sorted(e[1].path_str for e in local_w.events) == ["remote/x", "remote/y"]
    assert all(e[0] == "terminated" and e[2] is False for e in local_w.events)
    assert local_t.events[-1] == ("unwatch", remote_watcher, None)
    assert (watches.watching, watches.watched_by) == ({}, {})
    assert watches.settle() == 0
