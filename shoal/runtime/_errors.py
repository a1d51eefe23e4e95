"""The runtime's error hierarchy.

Every error a user of :mod:`shoal.runtime` can catch is defined here and
exported from the package. Each docstring says who raises it and when.
"""

from __future__ import annotations


class ShoalError(Exception):
    """Base class of every error Shoal raises on purpose."""


class AskTimeout(ShoalError, TimeoutError):
    """Raised by :meth:`ActorRef.ask` when no reply arrived within the timeout.

    The timeout is measured on the system's :class:`Clock`, so a test with a
    manual clock decides exactly when it fires.
    """


class ActorStoppedError(ShoalError):
    """An ask whose target stopped (or was already dead) before it replied.

    Raised by :meth:`ActorRef.ask` for a message that was still in the
    mailbox, or being handled, when the actor stopped, and for an ask sent to
    an actor that had already stopped.
    """


class HandlerError(ShoalError):
    """A handler raised a ``BaseException`` that is not an ``Exception``.

    Typically ``asyncio.CancelledError`` from the ``result()`` of a future
    that was cancelled: the actor's own task was not cancelled, so this fails
    the message like any error (the ask gets this error, with the original as
    ``__cause__``, and supervision decides). ``KeyboardInterrupt`` and
    ``SystemExit`` are never wrapped: they propagate.
    """


class MailboxFullError(ShoalError):
    """An ask that could not be enqueued because the target's mailbox is full.

    ``tell`` never raises this: the message goes to dead letters instead.
    ``ask`` fails at once with it, so callers do not wait for a timeout.
    """


class ActorInitializationError(ShoalError):
    """The actor factory given to ``spawn`` raised, or did not return an Actor.

    Raised synchronously by ``spawn`` for the first incarnation; a failure in
    a restart's factory stops the actor and is logged.
    """


class InvalidActorNameError(ShoalError, ValueError):
    """``spawn`` was given a name that is malformed or already taken."""


class SystemNotRunningError(ShoalError):
    """An operation needs a running :class:`ActorSystem` and it has shut down."""


class SerializationError(ShoalError):
    """A message could not be turned into bytes, or bytes back into a message.

    Raised by :class:`Serialization` for a value whose type is not registered
    (nothing is ever pickled), and for payloads that fail to decode.
    """


class UnknownManifestError(SerializationError):
    """A payload names a serializer id or manifest this system does not know."""


class ExtensionError(ShoalError):
    """An extension cannot be created: its dependencies form a cycle, one of them
    is not an extension factory or failed to start, or it would be closed after
    one of its dependencies.

    Raised by ``ActorSystem.extension``; the message names the extensions involved.
    """
