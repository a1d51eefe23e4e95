"""Shoal: a clustered, sharded, event-sourced actor runtime for asyncio.

The names needed to write an actor are re-exported here; each subsystem
(``shoal.runtime``, ``shoal.remote``, ``shoal.persistence``...) has its own
public face for the rest.
"""

from .runtime import Actor as Actor
from .runtime import ActorRef as ActorRef
from .runtime import ActorSystem as ActorSystem
from .runtime import AskTimeout as AskTimeout
from .runtime import Context as Context
from .runtime import Directive as Directive
from .runtime import PoisonPill as PoisonPill
from .runtime import Settings as Settings
from .runtime import SupervisorStrategy as SupervisorStrategy
from .runtime import Terminated as Terminated
from .runtime import message as message

__all__ = [
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

__version__ = "0.1.0"
