"""The serialization registry: how messages, events and snapshots become bytes.

Remote transport and persistence both go through one :class:`Serialization`
object per :class:`~shoal.runtime.ActorSystem`. A serialized value is a triple
``(serializer_id, manifest, payload)``; the receiver needs all three.

Serializers, by id (stable: they are stored in journals and sent on the wire):

* ``1`` raw ``bytes``; manifest ``""``.
* ``2`` primitives and their containers (``None``, ``bool``, ``int``,
  ``float``, ``str``, ``list``, ``tuple``, ``dict``) as MessagePack; manifest
  ``""``. Tuples come back as lists.
* ``3`` protobuf messages; manifest = the message's full name.
* ``4`` registered message classes (frozen dataclasses or ``msgspec.Struct``)
  as MessagePack maps; manifest = the class's stable manifest (see
  :func:`message`).

Actor refs inside any of these travel as their path and are resolved against
the receiving system on arrival.

Nothing is ever pickled. A class is only ever instantiated from bytes if it
was marked with :func:`message` (or registered explicitly) *and* its manifest
is registered on this system or its defining module is already imported: no
manifest can make Shoal import a module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final, NamedTuple, TypeVar, overload

import msgspec
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtobufMessage

from ._errors import SerializationError, UnknownManifestError

__all__ = [
    "SERIALIZER_BYTES",
    "SERIALIZER_MESSAGE",
    "SERIALIZER_PRIMITIVE",
    "SERIALIZER_PROTOBUF",
    "Serialization",
    "Serialized",
    "manifest_of",
    "message",
]

SERIALIZER_BYTES: Final = 1
SERIALIZER_PRIMITIVE: Final = 2
SERIALIZER_PROTOBUF: Final = 3
SERIALIZER_MESSAGE: Final = 4

_MANIFEST_ATTR: Final = "__shoal_manifest__"
_REF_EXT: Final = 1  # MessagePack extension code of an actor ref (its path, UTF-8)

_T = TypeVar("_T", bound=type)


class Serialized(NamedTuple):
    """A value in its wire/journal form."""

    serializer_id: int
    manifest: str
    payload: bytes


_new_tuple: Final = tuple.__new__
"""``_new_tuple(Serialized, (id, manifest, payload))`` builds what ``Serialized(...)``
does without its generated Python ``__new__``: a C call instead of a Python
frame, on the path of every message sent or persisted."""


@overload
def message(cls: _T, /) -> _T: ...
@overload
def message(*, manifest: str) -> Callable[[_T], _T]: ...
def message(cls: _T | None = None, /, *, manifest: str | None = None) -> _T | Callable[[_T], _T]:
    """Mark a class as a Shoal message, event or snapshot type.

    The class must be a dataclass or a ``msgspec.Struct`` whose fields are
    encodable (primitives, containers, other message classes, enums,
    datetimes, ``ActorRef``...). Use it bare, ``@message``, to get the default
    manifest ``"module:QualName"``, or give a stable name that survives
    renames and moves, ``@message(manifest="bank.Deposited.v1")``; a class
    with an explicit manifest must be registered on each system that receives
    it (``system.serialization.register(cls)``), while default manifests are
    found in already-imported modules.

    The decorator only stamps the class; it keeps no global registry.
    """

    def stamp(klass: _T) -> _T:
        name = manifest if manifest is not None else f"{klass.__module__}:{klass.__qualname__}"
        if not name or not name.isprintable():
            raise ValueError(f"invalid manifest {name!r} for {klass.__qualname__}")
        setattr(klass, _MANIFEST_ATTR, name)
        return klass

    if cls is not None:
        return stamp(cls)
    return stamp


def manifest_of(cls: type) -> str | None:
    """The manifest :func:`message` gave ``cls``, or ``None`` if it is unmarked."""
    name = cls.__dict__.get(_MANIFEST_ATTR)
    return name if isinstance(name, str) else None


_PRIMITIVES: Final = frozenset({type(None), bool, int, float, str, list, tuple, dict})
_LEAVES: Final = frozenset({type(None), bool, int, float, str, bytes})


class Serialization:
    """One system's registry of message types and its encoders.

    ``ref_type`` is the class of actor refs (encoded as their path) and
    ``resolve_ref`` turns a path back into a ref of the receiving system; the
    :class:`~shoal.runtime.ActorSystem` supplies both.

    Not thread-safe; like everything of a system, use it from its event loop.
    """

    __slots__ = (
        "_by_class",
        "_by_manifest",
        "_decoders",
        "_encoder",
        "_generic_decoder",
        "_protobuf",
        "_ref_type",
        "_resolve_ref",
    )

    def __init__(self, ref_type: type, resolve_ref: Callable[[str], object]) -> None:
        self._ref_type = ref_type
        self._resolve_ref = resolve_ref
        self._by_class: dict[type, str] = {}
        self._by_manifest: dict[str, type] = {}
        self._protobuf: dict[str, type[ProtobufMessage]] = {}
        self._decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._generic_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            ext_hook=self._ext_hook
        )

    # -- registration -------------------------------------------------------------

    def register(self, *classes: type) -> None:
        """Register message classes (marked with :func:`message`) or protobuf classes.

        Registering the same class twice is harmless; two classes under one
        manifest is an error.
        """
        for cls in classes:
            if isinstance(cls, type) and issubclass(cls, ProtobufMessage):
                self._protobuf[cls.DESCRIPTOR.full_name] = cls
                continue
            name = manifest_of(cls)
            if name is None:
                raise SerializationError(
                    f"{cls.__qualname__} is not a message class: decorate it with @shoal.message"
                )
            known = self._by_manifest.get(name)
            if known is not None and known is not cls:
                raise SerializationError(
                    f"manifest {name!r} is already registered for {known.__module__}."
                    f"{known.__qualname__}"
                )
            self._by_manifest[name] = cls
            self._by_class[cls] = name

    def manifest(self, cls: type) -> str | None:
        """The manifest ``cls`` is serialized under, or ``None`` if it cannot be."""
        name = self._by_class.get(cls)
        if name is None:
            name = manifest_of(cls)
        return name

    # -- encoding -----------------------------------------------------------------

    def serialize(self, value: object) -> Serialized:
        """Encode ``value``; raises :class:`SerializationError` if its type is not allowed."""
        cls = type(value)
        name = self._by_class.get(cls)
        new = _new_tuple
        try:
            if name is not None:
                return new(Serialized, (SERIALIZER_MESSAGE, name, self._encoder.encode(value)))
            if cls is bytes:
                return new(Serialized, (SERIALIZER_BYTES, "", value))
            if cls in _PRIMITIVES:
                if cls not in _LEAVES:  # a leaf needs no walk (the check would pass at once)
                    self._check_primitive(value)
                return new(Serialized, (SERIALIZER_PRIMITIVE, "", self._encoder.encode(value)))
            if isinstance(value, ProtobufMessage):
                full_name = value.DESCRIPTOR.full_name
                return new(Serialized, (SERIALIZER_PROTOBUF, full_name, value.SerializeToString()))
            name = manifest_of(cls)
            if name is not None:
                self.register(cls)
                return new(Serialized, (SERIALIZER_MESSAGE, name, self._encoder.encode(value)))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot encode {cls.__qualname__}: {exc}") from exc
        raise SerializationError(
            f"{cls.__module__}.{cls.__qualname__} is not a registered message type; mark it "
            "with @shoal.message (Shoal never pickles)"
        )

    def _check_primitive(self, value: object) -> None:
        """Refuse anything but primitives and refs inside a primitive container.

        msgspec would encode a nested dataclass, datetime or set silently and
        it would come back as a dict, string or list: a clear error is better.
        Message classes are the way to send typed values.
        """
        stack = [value]
        while stack:
            item = stack.pop()
            cls = type(item)
            if cls in _LEAVES or isinstance(item, self._ref_type):
                continue
            if cls is list or cls is tuple:
                stack.extend(item)  # type: ignore[arg-type]
            elif cls is dict:
                stack.extend(item.keys())  # type: ignore[attr-defined]
                stack.extend(item.values())  # type: ignore[attr-defined]
            else:
                raise SerializationError(
                    f"{cls.__module__}.{cls.__qualname__} inside a {type(value).__name__} is "
                    "not a primitive: send it in a @shoal.message class with typed fields"
                )

    def _enc_hook(self, obj: object) -> object:
        if isinstance(obj, self._ref_type):
            return msgspec.msgpack.Ext(_REF_EXT, str(obj.path).encode())  # type: ignore[attr-defined]
        raise TypeError(f"{type(obj).__qualname__} is not encodable")

    # -- decoding -----------------------------------------------------------------

    def deserialize(self, serializer_id: int, manifest: str, payload: bytes) -> object:
        """Decode a payload; raises :class:`SerializationError` on any bad input."""
        try:
            if serializer_id == SERIALIZER_MESSAGE:
                return self._decoder_for(manifest).decode(payload)
            if serializer_id == SERIALIZER_BYTES:
                return bytes(payload)
            if serializer_id == SERIALIZER_PRIMITIVE:
                return self._generic_decoder.decode(payload)
            if serializer_id == SERIALIZER_PROTOBUF:
                cls = self._protobuf_class(manifest)
                msg = cls()
                msg.ParseFromString(payload)
                return msg
        except SerializationError:
            raise
        except (msgspec.DecodeError, DecodeError, ValueError, TypeError, RecursionError) as exc:
            raise SerializationError(
                f"payload of serializer {serializer_id} manifest {manifest!r} does not decode: "
                f"{exc}"
            ) from exc
        raise UnknownManifestError(f"unknown serializer id {serializer_id}")

    def _decoder_for(self, manifest: str) -> msgspec.msgpack.Decoder[Any]:
        cls = self._by_manifest.get(manifest)
        if cls is None:
            cls = self._find_declared(manifest)
        decoder = self._decoders.get(cls)
        if decoder is None:
            decoder = msgspec.msgpack.Decoder(cls, dec_hook=self._dec_hook, ext_hook=self._ext_hook)
            self._decoders[cls] = decoder
        return decoder

    def _find_declared(self, manifest: str) -> type:
        """Find a default-manifest class in an already-imported module (never imports)."""
        module_name, sep, qualname = manifest.partition(":")
        module = sys.modules.get(module_name) if sep else None
        obj: object = module
        for part in qualname.split(".") if module is not None else ():
            # Never getattr(): a module's __getattr__ may import, a descriptor may run.
            try:
                namespace = vars(obj)
            except TypeError:
                namespace = None
            obj = namespace.get(part) if namespace is not None else None
        if isinstance(obj, type) and manifest_of(obj) == manifest:
            self.register(obj)
            return obj
        raise UnknownManifestError(
            f"unknown manifest {manifest!r}: register its class on this system"
        )

    def _protobuf_class(self, full_name: str) -> type[ProtobufMessage]:
        cls = self._protobuf.get(full_name)
        if cls is None:
            try:
                descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
            except KeyError:
                raise UnknownManifestError(f"unknown protobuf message {full_name!r}") from None
            cls = message_factory.GetMessageClass(descriptor)
            self._protobuf[full_name] = cls
        return cls

    def _ext_hook(self, code: int, data: memoryview) -> object:
        if code == _REF_EXT:
            return self._resolve_ref(bytes(data).decode())
        raise SerializationError(f"unknown MessagePack extension {code}")

    def _dec_hook(self, typ: type, obj: object) -> object:
        if isinstance(obj, typ):
            return obj
        raise TypeError(f"expected {typ.__qualname__}, got {type(obj).__qualname__}")
