"""The receiving side: the accept handler of peers' connections and batch delivery.

Each peer connection (on any transport) is one handler task: it checks the handshake, then reads
batches in order and hands each envelope to its local target with the
runtime's hooks (``tell``/``deliver`` with a promise for asks, ``add_watcher``...),
at most ``Settings.throughput`` envelopes per loop turn (see :meth:`Inbound.receive`).
A frame that breaks the protocol ends that stream only; an envelope that
cannot be delivered is dropped alone. Both are counted and logged at a rate
limit. Nothing here blocks, and nothing received is ever unpickled.

What a peer may do (anything else is refused, counted under ``bad_input`` and
logged at a rate limit):

- send messages and asks to user actors (``/user/<name>/...``), and to the
  system actors this node exposed with ``Remoting.accept_control``; never to
  a guardian (``/user``, ``/system``) or another system actor;
- stop user actors, never a guardian or a system actor;
- watch live local actors, with a watcher of its own node (a watch of an
  actor that does not exist is answered with ``Terminated`` at once and
  leaves no state); unwatch only what it watches;
- send ``Terminated`` only for a watch this node made of one of its actors,
  and answers only to asks this node sent it.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import grpc

from shoal.runtime import (
    ActorRef,
    ActorStoppedError,
    AskTimeout,
    LocalActorRef,
    MailboxFullError,
    SerializationError,
    UnknownManifestError,
)

from ._errors import RemoteAskError
from ._handshake import BAD_HANDSHAKE_LIMIT, BAD_HANDSHAKE_TIMEOUT
from ._ref import RemoteActorRef
from ._timeout import with_timeout
from ._transport import InboundStream, ServerCall
from ._wire import (
    BAD_CLUSTER,
    BAD_FORBIDDEN_TARGET,
    BAD_FORBIDDEN_WATCHER,
    BAD_HANDSHAKE,
    BAD_INCARNATION_IN_USE,
    BAD_INTERNAL,
    BAD_NO_HANDSHAKE,
    BAD_OVERSIZE,
    BAD_PAYLOAD,
    BAD_QUARANTINED,
    BAD_SECRET,
    BAD_UNEXPECTED_TERMINATED,
    BAD_UNEXPECTED_UNWATCH,
    BAD_UNKNOWN_MANIFEST,
    BAD_UNKNOWN_TARGET,
    K_FAILURE,
    K_MESSAGE,
    K_REPLY,
    K_STOP,
    K_TERMINATED,
    K_TERMINATED_UNCONFIRMED,
    K_UNWATCH,
    K_WATCH,
    PROTOCOL_VERSION,
    FrameError,
    InBatch,
    decode_batch,
    decode_failure,
    decode_frame,
    encode_ack,
)

if TYPE_CHECKING:
    from shoal._proto import remote_pb2 as pb

    from ._association import Association
    from ._remoting import Remoting

_log: Final = logging.getLogger("shoal.remote")

_T = TypeVar("_T")

_USER_TARGETS_MAX: Final = 4096  # user actors whose addressability an inbound remembers

# Remote failures re-raised as the runtime's own errors: ask callers handle
# them the same way whether the target is local or not.
_RUNTIME_ERRORS: Final[dict[str, type[Exception]]] = {
    "ActorStoppedError": ActorStoppedError,
    "MailboxFullError": MailboxFullError,
    "AskTimeout": AskTimeout,
}

# (kind, target, sender, serializer id, manifest, target path, target unknown, allowed)
_Resolved = tuple[int, ActorRef | None, ActorRef | None, int, str, str, bool, bool]


class _Refusal(Exception):
    def __init__(self, kind: str, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.code = code


def _code(error: FrameError) -> str:
    """The status a stream is ended with for a frame that breaks the protocol."""
    if error.kind == BAD_OVERSIZE:
        return "RESOURCE_EXHAUSTED"
    return "INVALID_ARGUMENT"


def remote_failure(error_type: str, message: str) -> Exception:
    """The exception an asker raises for a failure its peer reported."""
    runtime_error = _RUNTIME_ERRORS.get(error_type)
    if runtime_error is not None:
        return runtime_error(message)
    return RemoteAskError(error_type, message)


_set_result: Final = asyncio.Future.set_result


class _Answer(asyncio.Future[Any]):
    """The promise of an ask that arrived from a peer.

    Completing it queues the answer for the asking node at once, in the turn
    the handler answered: a done-callback would cost the reply one more loop
    iteration of latency. Made with ``_Answer(loop=loop)``, then given
    ``assoc`` and ``correlation`` (no ``__init__`` of its own: one is made
    per ask, on the path of its latency).
    """

    __slots__ = ("assoc", "correlation")

    assoc: Association
    correlation: int

    def set_result(self, result: Any, /) -> None:
        _set_result(self, result)  # super().set_result without making a super object
        self.assoc.send_reply(self.correlation, result)

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        error = self.exception()  # also marks it retrieved: the asker gets it, not the log
        assert error is not None
        self.assoc.send_failure(self.correlation, type(error).__name__, str(error))

    def cancel(self, msg: Any | None = None) -> bool:
        cancelled = super().cancel(msg)
        if cancelled:
            self.assoc.send_failure(self.correlation, "CancelledError", "the ask was cancelled")
        return cancelled


class Inbound:
    """Serves peers' streams to this node (the ``Remoting/Stream`` handler)."""

    def __init__(self, remoting: Remoting) -> None:
        self._remoting = remoting
        self._system = remoting.system
        self._metrics = remoting.metrics
        self._bad_log = remoting.bad_log
        self._max_frame = remoting.settings.max_frame_bytes
        self._deserialize = remoting.system.serialization.deserialize
        # Local user actors that peers may address, seen lately: a path is made
        # and split per look-up, and this runs for every route of every frame.
        self._user_targets: set[ActorRef] = set()
        self.streams = 0
        """Peers' calls being served (handshake accepted, not ended)."""
        self.handshaking = 0
        """Peers' calls waiting for their handshake frame (at most ``max_pending_handshakes``)."""

    async def serve(self, call: ServerCall) -> None:
        """Handle one peer connection until it ends, breaks the protocol, or is refused.

        The first frame must be a handshake, within ``handshake_timeout`` (on
        the system clock); at most ``max_pending_handshakes`` connections wait
        for theirs, a connection beyond that is closed at once.
        """
        settings = self._remoting.settings
        if self.handshaking >= settings.max_pending_handshakes:
            await self._drop_stream(
                call,
                BAD_HANDSHAKE_LIMIT,
                f"{self.handshaking} calls already in their handshake",
                "RESOURCE_EXHAUSTED",
            )
        self.handshaking += 1
        try:
            data = await with_timeout(self._system.clock, call.read(), settings.handshake_timeout)
        except TimeoutError:
            await self._drop_stream(
                call,
                BAD_HANDSHAKE_TIMEOUT,
                f"no handshake within {settings.handshake_timeout} s",
                "DEADLINE_EXCEEDED",
            )
        finally:
            self.handshaking -= 1
        if data is call.eof:
            return
        try:
            assoc, uid = self._accept(self._handshake(data))
        except FrameError as exc:
            await self._drop_stream(call, exc.kind, str(exc), _code(exc))
        except _Refusal as exc:
            await self._drop_stream(call, exc.kind, str(exc), exc.code.name)
        await call.write(encode_ack(self._remoting.address, self._remoting.uid))
        stream = InboundStream(call, uid)
        self.streams += 1
        try:
            # This node may write its own traffic to the peer on this call.
            assoc.link.offer(stream)
            await self._serve(call, assoc, uid)
        finally:
            self.streams -= 1
            stream.ended(f"{assoc.address} ended its stream")

    async def _serve(self, call: ServerCall, assoc: Association, uid: int) -> None:
        read = call.read
        eof = call.eof
        quarantined = self._remoting.quarantined
        peer = (assoc.address, uid)
        while True:
            data = await read()
            if data is eof:
                return
            if peer in quarantined:
                # Quarantined while connected. A server cannot end a call from
                # outside its handler, so the stream ends at its next frame.
                await self._drop_stream(
                    call,
                    BAD_QUARANTINED,
                    f"{assoc.address} uid {uid} is quarantined",
                    "PERMISSION_DENIED",
                )
            try:
                await self.receive(data, assoc)
            except FrameError as exc:
                await self._drop_stream(
                    call, exc.kind, f"{exc} (from {assoc.address} uid {uid})", _code(exc)
                )

    async def receive(self, data: bytes, assoc: Association) -> None:
        """Decode a batch frame from ``assoc``'s peer and deliver it (either direction of
        a call); raises :class:`FrameError` if the frame breaks the protocol.

        At most ``Settings.throughput`` envelopes are delivered per loop turn, as
        an actor handles at most that many messages per turn: the rest of a large
        frame waits for the next turn as received bytes, instead of as envelopes
        and ask promises queued in mailboxes. Under a flood (100,000 pipelined
        asks) this keeps the backlog out of the garbage collector's young
        generations, which otherwise promoted it to full collections (a fifth of
        the answering node's CPU time). Frames are still delivered in order and
        whole before the next is read.
        """
        metrics = self._metrics
        metrics.frames_received += 1
        metrics.bytes_received += len(data)
        batch = decode_batch(data, self._max_frame)
        count = len(batch.route)
        per_turn = self._system.settings.throughput
        while assoc.delivering is not None:
            # The rest of a frame read on another stream of the peer (one that
            # ended meanwhile) goes first: order holds across a reconnection.
            await assoc.delivering
        if count <= per_turn:
            self._guarded(assoc, self.deliver, batch, None, assoc, 0, count)
            metrics.envelopes_received += count
            return
        delivering = assoc.delivering = self._system.loop.create_future()
        try:
            routes = self._guarded(assoc, self._resolve, batch)
            for start in range(0, count, per_turn):
                if start:
                    await asyncio.sleep(0)
                stop = min(count, start + per_turn)
                self._guarded(assoc, self.deliver, batch, routes, assoc, start, stop)
                metrics.envelopes_received += stop - start
        finally:
            assoc.delivering = None
            delivering.set_result(None)

    def _guarded(self, assoc: Association, step: Callable[..., _T], *args: Any) -> _T:
        """``step(*args)``, with the refs it resolves marked as named by ``assoc``'s peer.

        An unexpected error (a bug, not the peer's fault) ends the stream (the
        link restarts) rather than leave it half-delivered and its reader dead.
        """
        remoting = self._remoting
        remoting.receiving = True
        try:
            return step(*args)
        except Exception as exc:
            self._metrics.link_crashes += 1
            self._bad_log.report(
                BAD_INTERNAL,
                "[%s] delivering a frame from %s failed",
                remoting.address,
                assoc.address,
                exc_info=True,
            )
            raise FrameError(BAD_INTERNAL, f"delivery failed: {exc!r}") from exc
        finally:
            remoting.receiving = False

    async def _drop_stream(self, call: ServerCall, kind: str, detail: str, code: str) -> NoReturn:
        self._metrics.count_bad(kind)
        self._bad_log.report(
            kind, "[%s] dropping stream from %s: %s", self._remoting.address, call.peer(), detail
        )
        await call.abort(code, detail)

    def _handshake(self, data: object) -> pb.Handshake:
        if not isinstance(data, bytes):
            raise FrameError(BAD_NO_HANDSHAKE, "the first frame is not bytes")
        kind, frame = decode_frame(data, self._max_frame)
        if kind != "handshake":
            raise FrameError(BAD_NO_HANDSHAKE, "the first frame is not a handshake")
        return frame.handshake

    def _accept(self, hs: pb.Handshake) -> tuple[Association, int]:
        remoting = self._remoting
        settings = remoting.settings
        if hs.protocol_version != PROTOCOL_VERSION:
            raise _Refusal(
                BAD_HANDSHAKE,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol version {hs.protocol_version} (this node speaks {PROTOCOL_VERSION})",
            )
        if hs.cluster_name != settings.cluster_name:
            raise _Refusal(
                BAD_CLUSTER,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{hs.from_address} belongs to cluster {hs.cluster_name!r}",
            )
        secret = settings.cluster_secret
        if secret is not None and not hmac.compare_digest(hs.cluster_secret, secret):
            raise _Refusal(
                BAD_SECRET,
                grpc.StatusCode.UNAUTHENTICATED,
                f"{hs.from_address} presented a wrong cluster secret",
            )
        if hs.to_address != remoting.address:
            raise _Refusal(
                BAD_HANDSHAKE,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{hs.from_address} wants {hs.to_address}; this is {remoting.address}",
            )
        system, at, _ = hs.from_address.partition("@")
        if system != remoting.system.name or not at or not hs.from_uid:
            raise _Refusal(
                BAD_HANDSHAKE,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"invalid sender {hs.from_address!r} uid {hs.from_uid}",
            )
        if remoting.is_quarantined(hs.from_address, hs.from_uid):
            raise _Refusal(
                BAD_QUARANTINED,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{hs.from_address} uid {hs.from_uid} is quarantined",
            )
        try:
            assoc = remoting.association(hs.from_address)
        except ValueError as exc:
            raise _Refusal(BAD_HANDSHAKE, grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        if remoting.incarnation_in_use(assoc, hs.from_uid):
            # Not a refusal code: a node that really restarted retries with
            # backoff, keeping its outbox, until its old streams are gone here
            # or the cluster layer quarantines the old incarnation.
            self._metrics.incarnations_held += 1
            raise _Refusal(
                BAD_INCARNATION_IN_USE,
                grpc.StatusCode.UNAVAILABLE,
                f"{hs.from_address} uid {hs.from_uid}: incarnation {assoc.uid} of that "
                "address is connected",
            )
        remoting.learned_uid(assoc, hs.from_uid)
        self._metrics.handshakes_accepted += 1
        return assoc, hs.from_uid

    # -- delivery -------------------------------------------------------------------------

    def _resolve(self, batch: InBatch) -> list[_Resolved]:
        """Resolve each route's target and sender once per batch."""
        remoting = self._remoting
        redirects = remoting.redirects
        resolved: list[_Resolved] = []
        for kind, target, sender, serializer_id, manifest in batch.routes:
            target_ref: ActorRef | None = None
            unknown = False
            allowed = True
            if target:
                target_ref = remoting.local_target(target)
                unknown = type(target_ref) is not LocalActorRef
                if target_ref is not None and kind in (K_MESSAGE, K_STOP, K_WATCH):
                    allowed = self._addressable(kind, target_ref)
                    if redirects and kind == K_MESSAGE:
                        target_ref = redirects.get(target_ref, target_ref)
            sender_ref = remoting.resolve_or_none(sender) if sender else None
            resolved.append(
                (kind, target_ref, sender_ref, serializer_id, manifest, target, unknown, allowed)
            )
        return resolved

    def _addressable(self, kind: int, ref: ActorRef) -> bool:
        """Whether a peer may send ``kind`` to ``ref``: user actors, and exposed system
        actors for messages (watches: any actor but a guardian)."""
        if ref in self._user_targets:
            return True
        elements = ref.path.elements
        if len(elements) < 2:
            return False  # a guardian, or the root
        if elements[0] == "user":
            if len(self._user_targets) >= _USER_TARGETS_MAX:
                self._user_targets.clear()
            self._user_targets.add(ref)
            return True
        if kind == K_WATCH:
            return True
        return kind == K_MESSAGE and self._remoting.is_control_target(str(ref.path))

    def deliver(
        self,
        batch: InBatch,
        routes: list[_Resolved] | None,
        assoc: Association,
        start: int,
        stop: int,
    ) -> None:
        """Hand envelopes ``start`` to ``stop`` of ``batch`` (from ``assoc``'s peer) to
        their targets, in order; ``routes`` are the batch's, resolved by
        :meth:`_resolve` (``None``: resolve them here)."""
        if routes is None:
            routes = self._resolve(batch)
        deserialize = self._deserialize
        route_ids = batch.route
        payloads = batch.payloads
        correlations: Iterable[int] = batch.correlations or itertools.repeat(0)
        if start or stop < len(route_ids):
            route_ids = route_ids[start:stop]
            payloads = payloads[start:stop]
            correlations = itertools.islice(correlations, start, stop)
        pending = assoc.pending
        if len(routes) == 1 and routes[0][0] == K_REPLY:
            # A frame of answers only (what pipelined asks get back): the tight loop.
            serializer_id, manifest = routes[0][3], routes[0][4]
            for payload, correlation in zip(payloads, correlations, strict=False):
                future = pending.pop(correlation, None)
                # None or done: the asker gave up (timeout) or the node was declared gone.
                if future is not None and not future.done():
                    try:
                        result = deserialize(serializer_id, manifest, payload)
                    except SerializationError as exc:
                        self._count_decode_error(exc, "a reply")
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            return
        loop = self._system.loop
        for index, payload, correlation in zip(route_ids, payloads, correlations, strict=False):
            kind, target, sender, serializer_id, manifest, path, unknown, allowed = routes[index]
            if not allowed:
                self._forbidden(kind, path, assoc, correlation)
            elif kind == K_MESSAGE:
                if unknown:
                    self._count(BAD_UNKNOWN_TARGET, "no actor at %s", path)
                try:
                    message = deserialize(serializer_id, manifest, payload)
                except SerializationError as exc:
                    self._undecodable(exc, path, assoc, correlation)
                    continue
                if target is None:
                    self._misaddressed(message, sender, path, assoc, correlation)
                elif correlation:
                    answer = _Answer(loop=loop)
                    answer.assoc = assoc
                    answer.correlation = correlation
                    target.deliver(message, sender, answer)
                else:
                    target.tell(message, sender)
            elif kind in (K_REPLY, K_FAILURE):
                future = pending.pop(correlation, None)
                # None or done: the asker gave up (timeout) or the node was declared gone.
                if future is not None and not future.done():
                    self._settle(future, kind, serializer_id, manifest, payload)
            else:
                self._control(
                    kind, target, sender, serializer_id, manifest, payload, correlation, assoc
                )

    def _settle(
        self,
        future: asyncio.Future[Any],
        kind: int,
        serializer_id: int,
        manifest: str,
        payload: bytes,
    ) -> None:
        """Complete an ask of this node with the answer (REPLY) or failure (FAILURE) it got."""
        if kind == K_FAILURE:
            future.set_exception(remote_failure(*decode_failure(payload)))
            return
        try:
            result = self._deserialize(serializer_id, manifest, payload)
        except SerializationError as exc:
            self._count_decode_error(exc, "a reply")
            future.set_exception(exc)
            return
        future.set_result(result)

    def _control(
        self,
        kind: int,
        target: ActorRef | None,
        sender: ActorRef | None,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
        assoc: Association,
    ) -> None:
        if kind in (K_WATCH, K_UNWATCH):
            if target is None:
                self._count(BAD_UNKNOWN_TARGET, "a watch from %s of another node", assoc.address)
            elif type(sender) is not RemoteActorRef or sender.address != assoc.address:
                # Its Terminated would go to a node the peer only named.
                self._count(BAD_FORBIDDEN_WATCHER, "watcher %s is not of %s", sender, assoc.address)
            elif kind == K_UNWATCH:
                if not assoc.watches.remote_unwatch(target, sender):
                    # Counted, not logged: an unwatch crossing a Terminated is a normal race.
                    self._metrics.count_bad(BAD_UNEXPECTED_UNWATCH)
            elif type(target) is LocalActorRef and target.is_alive:
                assoc.watches.remote_watch(target, sender)
            else:
                # No such actor (any more): Terminated at once, and no state kept.
                assoc.watches.notify_terminated(sender, target, False)
        elif kind in (K_TERMINATED, K_TERMINATED_UNCONFIRMED):
            if (
                target is None
                or type(sender) is not RemoteActorRef
                or not assoc.watches.remote_terminated(sender, target, kind == K_TERMINATED)
            ):
                # Dropped. Counted, not logged: a Terminated crossing an unwatch is a
                # normal race.
                self._metrics.count_bad(BAD_UNEXPECTED_TERMINATED)
        elif kind == K_STOP:
            if target is None:
                assoc.send_reply(correlation, None)  # as stopping a dead local ref: done
            else:
                target.stop().add_done_callback(lambda _: assoc.send_reply(correlation, None))

    def _forbidden(self, kind: int, path: str, assoc: Association, correlation: int) -> None:
        what = "a stop" if kind == K_STOP else "a watch" if kind == K_WATCH else "a message"
        self._count(BAD_FORBIDDEN_TARGET, "refused %s from %s to %s", what, assoc.address, path)
        if correlation:
            assoc.send_failure(
                correlation, "PermissionError", f"{path} cannot be addressed from the network"
            )

    def _undecodable(
        self, error: SerializationError, path: str, assoc: Association, correlation: int
    ) -> None:
        self._count_decode_error(error, f"a message to {path}")
        if correlation:
            assoc.send_failure(correlation, type(error).__name__, str(error))

    def _count_decode_error(self, error: SerializationError, what: str) -> None:
        kind = BAD_UNKNOWN_MANIFEST if isinstance(error, UnknownManifestError) else BAD_PAYLOAD
        self._count(kind, "dropped %s: %s", what, error)

    def _misaddressed(
        self,
        message: object,
        sender: ActorRef | None,
        path: str,
        assoc: Association,
        correlation: int,
    ) -> None:
        self._system.dead_letter(message, sender, None, "remote-misaddressed")
        if correlation:
            assoc.send_failure(
                correlation, "ActorStoppedError", f"no actor at {path} on {self._remoting.address}"
            )

    def _count(self, kind: str, msg: str, *args: object) -> None:
        self._metrics.count_bad(kind)
        self._bad_log.report(kind, f"[%s] {msg}", self._remoting.address, *args)
