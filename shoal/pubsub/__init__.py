"""Distributed publish-subscribe: a mediator on every node and a gossiped topic registry.

::

    pubsub = DistributedPubSub.get(system)             # after Cluster.start
    await pubsub.subscribe("room.42", session)          # acknowledged locally
    await pubsub.wait_for_subscribers("room.42", 1)     # on a publishing node
    pubsub.publish("room.42", Posted("hi"))             # one copy per node

Each node owns a versioned bucket of its registrations (topic -> subscribers
per group, path -> registered actor); buckets travel as deltas on the
cluster's control lane, at once on change and in a status round every
gossip interval; buckets of removed nodes are pruned, and a restarted node's
new incarnation starts a new bucket. ``publish`` sends one copy to each node
with subscribers, whose mediator fans it out; ``one_per_group``, ``send``
(one registered actor, local preferred) and ``send_to_all`` as in Akka's
DistributedPubSub. Delivery is at most once, like ``tell``; per publisher
and subscriber, order is kept. See ``proto/pubsub.proto`` for the wire format.
"""

from ._errors import InvalidTopicError as InvalidTopicError
from ._errors import PubSubError as PubSubError
from ._errors import RegistryFullError as RegistryFullError
from ._metrics import PubSubMetrics as PubSubMetrics
from ._pubsub import DistributedPubSub as DistributedPubSub
from ._settings import PubSubSettings as PubSubSettings

__all__ = [
    "DistributedPubSub",
    "PubSubSettings",
    "PubSubMetrics",
    "PubSubError",
    "InvalidTopicError",
    "RegistryFullError",
]
