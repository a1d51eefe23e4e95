"""Property tests of the codec: every reachable state round-trips, and no byte string
makes decoding fail with anything but ProtocolError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.cluster import KeepMajority, ProtocolError
from shoal.cluster._codec import decode, encode
from shoal.cluster._events import diff
from shoal.cluster._gossip import forbidden_claims
from shoal.cluster._membership import leader_actions, receive_gossip
from shoal.cluster._messages import Envelope, GossipState
from shoal.cluster._sbr import SbrView, decide

from ._support import SETTINGS, node
from .test_properties import operation, run


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(operation, min_size=5, max_size=60))
def test_every_reachable_state_round_trips(ops: list[tuple[int, str, int]]) -> None:
    for state in run(ops):
        env = Envelope("app", node(1), node(2), GossipState(state.gossip))
        assert decode(encode(env)) == env


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(operation, min_size=5, max_size=30), st.data())
def test_corrupted_frames_raise_protocol_error_or_decode(
    ops: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    frame = bytearray(encode(Envelope("app", node(1), node(2), GossipState(run(ops)[0].gossip))))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(frame) - 1))
        frame[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    try:
        envelope = decode(bytes(frame[:cut]))
    except ProtocolError:
        return
    if isinstance(envelope.body, GossipState):
        # What decodes is safe to merge and act on: a node would do exactly this.
        for state in run(ops):
            merged, _ = receive_gossip(state, envelope.body.gossip)
            forbidden_claims(state.gossip, envelope.body.gossip)
            acted, _ = leader_actions(merged, 100.0, SETTINGS)
            decide(KeepMajority(), SbrView.of(acted.gossip, acted.self_node))
            diff(state.gossip, acted.gossip, state.self_node)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_protocol_error_or_decode(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass
