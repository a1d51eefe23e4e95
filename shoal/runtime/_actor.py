"""The ``Actor`` base class users subclass."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import ShoalError

if TYPE_CHECKING:
    from ._cell import Context
    from ._ref import ActorRef
    from ._supervision import SupervisorStrategy

# The cell whose actor instance is being constructed by spawn (or a restart),
# so that ``self.ctx`` already works inside ``__init__``.
constructing: ContextVar[Context | None] = ContextVar("shoal_constructing", default=None)


class Actor:
    """Base class of actors: state plus ``receive``, one message at a time.

    ``receive`` may be a plain method (the fast path: no task, no coroutine)
    or ``async``; while an async handler runs, no other message of this actor
    is processed. The value it returns answers an ``ask``; to answer later,
    take ``self.ctx.reply_later()``.

    Hooks, all optional and each either plain or ``async``: :meth:`started`
    runs before the first message (and again after a restart),
    :meth:`stopped` after the actor and all its children have stopped.
    :meth:`before_restart` / :meth:`after_restart` bracket a restart and must
    be plain methods.

    Instances are created by :meth:`ActorSystem.spawn` / :meth:`Context.spawn`
    from a factory (usually the class itself), never directly.
    """

    supervisor_strategy: ClassVar[SupervisorStrategy | None] = None
    """How this actor supervises its children; ``None`` means Resume."""

    _ctx: Context | None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self._ctx = constructing.get()
        return self

    @property
    def ctx(self) -> Context:
        """This actor's context: its ref, sender, children, timers, stash..."""
        ctx = self._ctx
        if ctx is None:
            raise ShoalError(
                f"{type(self).__qualname__} was not created by spawn, so it has no context"
            )
        return ctx

    @property
    def ref(self) -> ActorRef:
        """This actor's own ref (shorthand for ``self.ctx.ref``)."""
        ctx = self._ctx
        if ctx is None:
            return self.ctx.ref  # raises the explanatory error
        return ctx._ref

    def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement receive")

    def started(self) -> Awaitable[None] | None:
        """Called before the first message is processed, and after a restart."""
        return None

    def stopped(self) -> Awaitable[None] | None:
        """Called once the actor and all its children have stopped."""
        return None

    def before_restart(self, error: BaseException, message: object) -> None:
        """Called on the failed instance before it is replaced."""

    def after_restart(self, error: BaseException) -> None:
        """Called on the fresh instance, before ``started``."""
