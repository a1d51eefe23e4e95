"""Shoal's local actor kernel.

Actors, refs, the actor system, supervision, timers, death watch, dead
letters, the clock and the serialization registry. Imports nothing else of
Shoal; every other layer builds on it.
"""

from ._actor import Actor as Actor
from ._cell import Context as Context
from ._cell import StashOverflowError as StashOverflowError
from ._clock import Cancellable as Cancellable
from ._clock import Clock as Clock
from ._clock import LoopClock as LoopClock
from ._errors import ActorInitializationError as ActorInitializationError
from ._errors import ActorStoppedError as ActorStoppedError
from ._errors import AskTimeout as AskTimeout
from ._errors import HandlerError as HandlerError
from ._errors import InvalidActorNameError as InvalidActorNameError
from ._errors import MailboxFullError as MailboxFullError
from ._errors import SerializationError as SerializationError
from ._errors import ShoalError as ShoalError
from ._errors import SystemNotRunningError as SystemNotRunningError
from ._errors import UnknownManifestError as UnknownManifestError
from ._eventstream import EventStream as EventStream
from ._messages import DeadLetter as DeadLetter
from ._messages import PoisonPill as PoisonPill
from ._messages import ReceiveTimeout as ReceiveTimeout
from ._messages import Terminated as Terminated
from ._path import ActorPath as ActorPath
from ._ratelimit import RateLimitedLog as RateLimitedLog
from ._ref import ActorRef as ActorRef
from ._ref import LocalActorRef as LocalActorRef
from ._reply import Reply as Reply
from ._run import run as run
from ._serialization import Serialization as Serialization
from ._serialization import Serialized as Serialized
from ._serialization import manifest_of as manifest_of
from ._serialization import message as message
from ._settings import MailboxOverflow as MailboxOverflow
from ._settings import Settings as Settings
from ._supervision import Backoff as Backoff
from ._supervision import Directive as Directive
from ._supervision import SupervisorStrategy as SupervisorStrategy
from ._system import ActorSystem as ActorSystem
from ._system import RefProvider as RefProvider
from ._timers import Timers as Timers

__all__ = [
    # actors and refs
    "Actor",
    "ActorPath",
    "ActorRef",
    "ActorSystem",
    "Context",
    "LocalActorRef",
    "MailboxOverflow",
    "Reply",
    "Settings",
    "Timers",
    # messages the runtime delivers
    "DeadLetter",
    "EventStream",
    "PoisonPill",
    "ReceiveTimeout",
    "Terminated",
    # supervision
    "Backoff",
    "Directive",
    "SupervisorStrategy",
    # running
    "run",
    "RateLimitedLog",
    # time
    "Cancellable",
    "Clock",
    "LoopClock",
    # serialization
    "Serialization",
    "Serialized",
    "manifest_of",
    "message",
    # transports
    "RefProvider",
    # errors
    "ActorInitializationError",
    "ActorStoppedError",
    "AskTimeout",
    "HandlerError",
    "InvalidActorNameError",
    "MailboxFullError",
    "SerializationError",
    "ShoalError",
    "StashOverflowError",
    "SystemNotRunningError",
    "UnknownManifestError",
]
