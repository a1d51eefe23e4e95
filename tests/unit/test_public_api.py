"""The public surface is pinned: changing it must be a deliberate diff."""

from __future__ import annotations

import shoal
import shoal.runtime
import shoal.runtime.testing


def test_top_level_exports() -> None:
    assert sorted(shoal.__all__) == [
        "Actor",
        "ActorRef",
        "ActorSystem",
        "AskTimeout",
        "Context",
        "Directive",
        "PoisonPill",
        "Settings",
        "SupervisorStrategy",
        "Terminated",
        "message",
    ]


def test_runtime_exports() -> None:
    assert sorted(shoal.runtime.__all__) == sorted(
        [
            "Actor",
            "ActorInitializationError",
            "Address",
            "ActorPath",
            "ActorRef",
            "ActorStoppedError",
            "ActorSystem",
            "AskTimeout",
            "Backoff",
            "Cancellable",
            "Clock",
            "Context",
            "CoordinatedShutdown",
            "DeadLetter",
            "Directive",
            "EventStream",
            "ExtensionError",
            "HandlerError",
            "InvalidActorNameError",
            "LocalActorRef",
            "LoopClock",
            "MailboxFullError",
            "MailboxOverflow",
            "PoisonPill",
            "ReceiveTimeout",
            "RefProvider",
            "Reply",
            "Serialization",
            "SerializationError",
            "Serialized",
            "Settings",
            "ShoalError",
            "ShutdownPhase",
            "StashOverflowError",
            "SupervisorStrategy",
            "SystemNotRunningError",
            "Terminated",
            "Timers",
            "UniqueAddress",
            "UnknownManifestError",
            "manifest_of",
            "message",
            "run",
            "RateLimitedLog",
        ]
    )
    for name in shoal.runtime.__all__:
        assert getattr(shoal.runtime, name) is not None


def test_testing_exports() -> None:
    assert sorted(shoal.runtime.testing.__all__) == [
        "ManualClock",
        "Probe",
        "QuiesceError",
        "quiesce",
        "settle",
    ]
