"""The actor system: the root of one node's actors and everything they share."""

from __future__ import annotations

import asyncio
import logging
import random
from asyncio import shield
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from . import _lifecycle as lc
from ._actor import Actor
from ._cell import Context
from ._clock import Clock, LoopClock
from ._errors import ActorStoppedError, SystemNotRunningError
from ._eventstream import EventStream
from ._extensions import Extensions
from ._messages import DeadLetter
from ._metrics import RuntimeCollector
from ._path import ActorPath, valid_name
from ._ratelimit import RateLimitedLog
from ._ref import ActorlessRef, ActorRef, AskTimeouts, LocalActorRef, check_ask_timeout
from ._serialization import Serialization
from ._settings import MailboxOverflow, Settings
from ._shutdown import CoordinatedShutdown, ShutdownPhase

if TYPE_CHECKING:
    from types import TracebackType

    from ._supervision import SupervisorStrategy

_log = logging.getLogger("shoal.runtime")

E = TypeVar("E")


class RefProvider(Protocol):
    """What a transport (``shoal.remote``) installs to reach other nodes.

    ``address`` is this node's network address (``system@host:port``);
    ``resolve`` returns a ref for a path on another node. Called on the loop.
    """

    @property
    def address(self) -> str: ...

    def resolve(self, path: ActorPath) -> ActorRef: ...


class _Guardian(Actor):
    """The parent of top-level (``/user``) or runtime (``/system``) actors."""

    def __init__(self, strategy: SupervisorStrategy) -> None:
        self.supervisor_strategy = strategy  # type: ignore[misc]

    def receive(self, message: object) -> None:
        self.ctx.system.dead_letter(message, self.ctx.sender, self.ctx.ref, "no-such-actor")


class _DeadRef(ActorlessRef):
    """A ref to a path with no actor behind it: everything goes to dead letters."""

    __slots__ = ("_reason", "_system", "_target")

    def __init__(self, system: ActorSystem, path: ActorPath, reason: str) -> None:
        self._system = system
        self._target = path
        self._reason = reason

    @property
    def path(self) -> ActorPath:
        return self._target

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        self._system.dead_letter(message, sender, self, self._reason)

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        if promise is not None:
            if not promise.done():
                promise.set_exception(ActorStoppedError(f"no actor at {self._target}"))
            return
        self.tell(message, sender)

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._system._loop.create_future()
        if timeout is not None:
            check_ask_timeout(timeout)
        future.set_exception(ActorStoppedError(f"no actor at {self._target}"))
        return future

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self._system._loop

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DeadRef) and other._target == self._target

    def __hash__(self) -> int:
        return hash(self._target)


class ActorSystem:
    """A node's actors, their clock, serialization, event stream and extensions.

    Create it inside a running event loop and use it as an async context
    manager (or call :meth:`shutdown`)::

        async with ActorSystem("demo") as system:
            ref = system.spawn(Counter, name="counter")

    Several systems may live in one process; they share nothing. A system is
    used from its own event loop's thread only. Layers built on it are
    extensions (:meth:`extension`) and stop with it in the phases of its
    :attr:`coordinated_shutdown`.
    """

    def __init__(self, name: str = "shoal", settings: Settings | None = None) -> None:
        if not valid_name(name) or "@" in name or ":" in name:
            raise ValueError(f"invalid actor system name {name!r}")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise SystemNotRunningError(
                "an ActorSystem must be created inside a running event loop"
            ) from None
        self._name = name
        self._settings = settings if settings is not None else Settings()
        self._clock: Clock = (
            self._settings.clock if self._settings.clock is not None else LoopClock(self._loop)
        )
        rng = self._settings.rng
        self._random = rng if isinstance(rng, random.Random) else random.Random(rng)
        self._provider: RefProvider | None = None
        self._serialization = Serialization(ActorRef, self.resolve)
        self._serialization.register(*self._settings.messages)
        self._events = EventStream()
        self._ask_timeouts = AskTimeouts(self._clock)
        self._room_waiters: dict[Context, deque[asyncio.Future[None]]] = {}
        self._shutdown = CoordinatedShutdown(self, self._stop_accepting)
        self._extensions = Extensions(self)
        self._metrics: CollectorRegistry | None = None
        self._processed = 0
        self._spawned = 0
        self._stopped = 0
        self._dead_letters = 0
        self._dl_log = RateLimitedLog(
            _log,
            self._clock,
            self._settings.dead_letter_log_limit,
            self._settings.dead_letter_log_interval,
            level=logging.INFO,
        )
        self._failure_log = RateLimitedLog(  # actor failures, hooks, restarts (_lifecycle)
            _log,
            self._clock,
            self._settings.failure_log_limit,
            self._settings.failure_log_interval,
            level=logging.ERROR,
        )
        self._running = True
        self._user = self._guardian("user", self._settings.guardian_strategy)
        self._system = self._guardian("system", self._settings.guardian_strategy)
        add = self._shutdown.add_task
        # Shielded: a phase that overruns cancels its tasks, not the shared stop futures.
        user, system = self._user, self._system
        add(
            ShutdownPhase.STOP_USER_ACTORS, "stop user actors", lambda: shield(user._request_stop())
        )
        add(
            ShutdownPhase.STOP_SYSTEM_ACTORS,
            "stop system actors",
            lambda: shield(system._request_stop()),
        )
        add(ShutdownPhase.ACTOR_SYSTEM_TERMINATE, "fail pending asks", self._close_asks)

    def _guardian(self, name: str, strategy: SupervisorStrategy) -> Context:
        cell = Context(self, None, name, lambda: _Guardian(strategy), 1 << 30, 100)
        cell._actor = lc.instantiate(cell)
        cell._state = lc.RUNNING  # guardians have no started() hook
        return cell

    # -- identity --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The system's name (the same on every node of a cluster)."""
        return self._name

    @property
    def address(self) -> str:
        """``name`` alone, or ``name@host:port`` once a transport is installed."""
        return self._provider.address if self._provider is not None else self._name

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def clock(self) -> Clock:
        """The clock every timer and timeout of this system uses."""
        return self._clock

    @property
    def random(self) -> random.Random:
        """The system's random source (``Settings.rng``): use it for jitter and
        any other randomness, so that a test fixing the seed fixes every draw."""
        return self._random

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this system runs on."""
        return self._loop

    @property
    def serialization(self) -> Serialization:
        """This system's serialization registry."""
        return self._serialization

    @property
    def event_stream(self) -> EventStream:
        """Runtime events, e.g. :class:`DeadLetter`, for subscribed actors."""
        return self._events

    @property
    def is_running(self) -> bool:
        """``False`` once the coordinated shutdown has begun (:meth:`shutdown`)."""
        return self._running

    # -- actors ------------------------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        capacity: int | None = None,
        throughput: int | None = None,
        overflow: MailboxOverflow | None = None,
    ) -> LocalActorRef:
        """Create a top-level actor under ``/user`` (see :meth:`Context.spawn`)."""
        if not self._running:
            raise SystemNotRunningError(f"actor system {self._name} is shut down")
        return self._user.spawn(
            factory, name=name, capacity=capacity, throughput=throughput, overflow=overflow
        )

    def spawn_system_actor(
        self, factory: Callable[[], Actor], *, name: str | None = None
    ) -> LocalActorRef:
        """Create a runtime actor under ``/system`` (for extensions such as remoting).

        System actors outlive user actors at shutdown.
        """
        if not self._running:
            raise SystemNotRunningError(f"actor system {self._name} is shut down")
        return self._system.spawn(factory, name=name)

    def stop(self, ref: ActorRef) -> asyncio.Future[None]:
        """Stop ``ref``; the future completes once it and its children are dead."""
        return ref.stop()

    def resolve(self, path: str | ActorPath) -> ActorRef:
        """The ref for ``path``: a live local actor, a remote ref, or a dead-letter ref.

        Raises ``ValueError`` for a malformed path.
        """
        target = ActorPath.parse(path) if isinstance(path, str) else path
        if target.address in (self._name, self.address):
            cell: Context | None = None
            head, *rest = target.elements
            if head == "user":
                cell = self._user
            elif head == "system":
                cell = self._system
            for name in rest:
                children = lc.children_of(cell) if cell is not None else None
                if not children:
                    cell = None
                    break
                cell = children.get(name)
            if cell is not None and cell._state < lc.STOPPED:
                return cell._ref
            return _DeadRef(self, target, "no-such-actor")
        if target.system != self._name:
            # Nodes talk only within one actor system name (a wrong name is a typo).
            return _DeadRef(self, target, f"other-system: this system is {self._name}")
        if self._provider is None:
            return _DeadRef(self, target, "no-remoting: a remote path resolved before remoting")
        return self._provider.resolve(target)

    @property
    def dead_letters(self) -> ActorRef:
        """A ref whose every message is a dead letter."""
        return _DeadRef(self, ActorPath(self.address, ("system", "deadLetters")), "dead-letters")

    # -- dead letters -------------------------------------------------------------------------

    def dead_letter(
        self, message: object, sender: ActorRef | None, recipient: ActorRef | None, reason: str
    ) -> None:
        """Record ``message`` as undeliverable to ``recipient`` because of ``reason``.

        Counted (``stats()["dead_letters"]``), logged at a rate limit
        (``Settings.dead_letter_log_*``) and published as a
        :class:`DeadLetter` to subscribers of the event stream. Never raises;
        for transports and extensions as much as for the runtime itself.
        """
        self._dead_letters += 1
        if isinstance(message, DeadLetter):
            return  # a dead letter about a dead letter would loop
        self._dl_log.report(
            "dead-letter",
            "[%s] dead letter (%s): %s to %s",
            self.address,
            reason,
            type(message).__qualname__,
            recipient.path if recipient is not None else "?",
        )
        if self._events._subscribers:
            self._events.publish(DeadLetter(message, sender, recipient, reason))

    # -- asks ---------------------------------------------------------------------------------

    def track_ask(
        self,
        promise: asyncio.Future[Any],
        timeout: float | None,
        target: ActorRef,
        message: object,
    ) -> None:
        """Fail ``promise`` with :class:`AskTimeout` unless it is done within ``timeout``.

        The extension API for refs (local and remote): an ask creates its
        promise, calls this *before* sending (so that an invalid timeout
        raises ``ValueError`` with nothing sent), then sends. ``timeout`` is
        in seconds of the system's clock; ``None`` means
        ``Settings.ask_timeout``. ``target`` and ``message`` only name the
        ask in the timeout's error. Costs no timer and no callback per ask;
        a promise completed by anyone else is simply forgotten. Pending
        promises fail when the system shuts down.
        """
        if timeout is None:
            timeout = self._settings.ask_timeout
        else:
            check_ask_timeout(timeout)
        self._ask_timeouts.add(promise, timeout, target, message)

    # -- statistics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since start: messages processed, actors spawned/stopped, dead letters."""
        return {
            "messages_processed": self._processed,
            "actors_spawned": self._spawned,
            "actors_stopped": self._stopped,
            "dead_letters": self._dead_letters,
        }

    @property
    def metrics(self) -> CollectorRegistry:
        """This system's Prometheus registry; layers add their collectors to it.

        ``prometheus_client.generate_latest(system.metrics)`` renders it.
        """
        registry = self._metrics
        if registry is None:
            registry = self._metrics = CollectorRegistry(auto_describe=True)
            registry.register(RuntimeCollector(self))
        return registry

    # -- extensions ----------------------------------------------------------------------------

    def extension(self, factory: Callable[[ActorSystem], E]) -> E:
        """The system's single instance of an extension, created by ``factory(system)``.

        ``factory`` is usually the extension's class. Contract, for the
        layers built on the runtime:

        * Created once, on first call, synchronously on the system's loop
          (the constructor must not block; async start-up is the extension's
          own method, e.g. ``await Remoting.start(system)``). Later calls
          return the same instance. Raises :class:`SystemNotRunningError`
          once shutdown has begun.
        * ``factory.depends_on`` (optional, a tuple of factories) names the
          extensions it needs: they are created first. A cycle, a dependency
          that is not callable or one whose creation raised is an
          :class:`ExtensionError` naming them; nothing is registered then.
        * ``factory.shutdown_phase`` (optional, a :class:`ShutdownPhase`,
          default ``CLOSE_EXTENSIONS``) is the phase in which the instance's
          ``async def aclose()``, if it has one, is awaited. Within a phase
          the last created closes first, so an extension closes before what
          it depends on; a dependency must not close in an earlier phase than
          its dependent (an :class:`ExtensionError`). For other work at
          shutdown, register tasks with :attr:`coordinated_shutdown`.
        """
        return self._extensions.get(factory)

    def install_provider(self, provider: RefProvider) -> None:
        """Install the transport that resolves remote paths (done by ``shoal.remote``)."""
        if self._provider is not None and self._provider is not provider:
            raise ValueError("a ref provider is already installed")
        self._provider = provider

    # -- shutdown -------------------------------------------------------------------------------

    @property
    def coordinated_shutdown(self) -> CoordinatedShutdown:
        """The phases this system stops in; register shutdown tasks here."""
        return self._shutdown

    async def shutdown(self, reason: str = "system-shutdown") -> None:
        """Run the coordinated shutdown (see :class:`CoordinatedShutdown`) and wait for it.

        Stops user actors (children before parents), closes extensions, then
        stops system actors, each phase time-boxed. Idempotent: later calls
        wait for the first, whose ``reason`` is kept.
        """
        await self._shutdown.run(reason)

    def _stop_accepting(self) -> None:
        self._running = False

    async def _close_asks(self) -> None:
        self._ask_timeouts.close()

    async def __aenter__(self) -> ActorSystem:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"<ActorSystem {self.address}>"
