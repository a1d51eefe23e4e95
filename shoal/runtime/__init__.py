"""Shoal's local actor kernel.

Actors, refs, the actor system, supervision, timers, death watch, dead
letters, the clock and the serialization registry. Imports nothing else of
Shoal; every other layer builds on it.

The extension API
-----------------

What the layers above the runtime (remoting, persistence, the cluster,
sharding) use, instead of any private name. Everything is called on the
system's event loop; nothing here blocks.

Refs. A transport implements :class:`ActorRef`: ``tell``/``ask``/``stop``
for users, and for the runtime ``deliver(message, sender, promise)``,
``add_watcher(watcher)``, ``remove_watcher(watcher)`` and
``notify_terminated(ref, existence_confirmed)``. Whoever ends up handling a
delivered message completes its ``promise`` (the future an ``ask`` awaits):
the target actor with its handler's return value or error, the runtime with
:class:`ActorStoppedError` or :class:`MailboxFullError` when the target
cannot take it, a transport with the remote answer or its own error. The
asking side owns the timeout: the system's ask tracking (on its
``ActorSystem``) fails a promise still pending at its deadline with
:class:`AskTimeout`, on the system's clock, so a transport keeps no timer
per ask. ``add_watcher`` promises one ``Terminated``, sent
with ``notify_terminated`` on the watcher (``existence_confirmed=False``
when the target was never seen or its node is gone). A transport resolves
other nodes' paths by installing a :class:`RefProvider`
(``system.install_provider``).

Dead letters. ``system.dead_letter(message, sender, recipient, reason)``
counts and logs (rate-limited) what could not be delivered and publishes a
:class:`DeadLetter` on ``system.event_stream`` when someone subscribed.
``reason`` is a short kebab-case word (``no-such-actor``, ``unreachable``,
``remote-refused``...).

Events. ``system.event_stream`` publishes runtime and layer events by class
(dead letters, ``shoal.remote``'s peer events); subscribers are refs.

Extensions. ``system.extension(factory)`` creates a layer's single instance
per system, after the extensions listed in ``factory.depends_on``, and
awaits its ``aclose()`` at shutdown in ``factory.shutdown_phase``, before
those it depends on (see :meth:`ActorSystem.extension`;
:class:`ExtensionError` for cycles and failed dependencies).

Shutdown. ``system.coordinated_shutdown`` runs the :class:`ShutdownPhase`
phases in order, each time-boxed on the clock; a layer registers async tasks
in its phase with ``add_task(phase, name, task)`` (a sharding region hands
off in ``cluster-sharding-shutdown-region``, while remoting, closed in
``close-remoting``, still runs). ``system.shutdown(reason)`` runs it.

Time, randomness, retries, logs. ``system.clock`` (a :class:`Clock`) for
every timer and "now"; ``system.random`` (seeded by ``Settings.rng``) for
every random draw; :class:`Backoff` for every retry delay (pure
``delay(attempt, rand)``, downward jitter, ``max_delay`` a hard bound);
:class:`RateLimitedLog` for every log line a peer or a user can trigger at
will.

Addresses. :class:`Address` (``system@host:port``, or ``system`` alone) and
:class:`UniqueAddress` (with the incarnation uid) are frozen, hashable and
ordered; ``ActorPath.node`` gives a path's :class:`Address`.
"""

from ._actor import Actor as Actor
from ._address import Address as Address
from ._address import UniqueAddress as UniqueAddress
from ._cell import Context as Context
from ._cell import StashOverflowError as StashOverflowError
from ._clock import Cancellable as Cancellable
from ._clock import Clock as Clock
from ._clock import LoopClock as LoopClock
from ._errors import ActorInitializationError as ActorInitializationError
from ._errors import ActorStoppedError as ActorStoppedError
from ._errors import AskTimeout as AskTimeout
from ._errors import ExtensionError as ExtensionError
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
from ._shutdown import CoordinatedShutdown as CoordinatedShutdown
from ._shutdown import ShutdownPhase as ShutdownPhase
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
    # running, extensions and shutdown
    "run",
    "CoordinatedShutdown",
    "ShutdownPhase",
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
    # transports and nodes
    "RefProvider",
    "Address",
    "UniqueAddress",
    # errors
    "ActorInitializationError",
    "ActorStoppedError",
    "AskTimeout",
    "ExtensionError",
    "HandlerError",
    "InvalidActorNameError",
    "MailboxFullError",
    "SerializationError",
    "ShoalError",
    "StashOverflowError",
    "SystemNotRunningError",
    "UnknownManifestError",
]
