"""Read network pickles without running anything they contain.

NVIDIA's PyTorch network pickles ask the unpickler to call
`torch_utils.persistence._reconstruct_persistent_obj`, which `exec`s the Python source stored in
the file; their TensorFlow pickles restore `dnnlib.tflib.network.Network`, whose `__setstate__`
does the same; and every tensor arrives through `torch.storage._load_from_bytes`, which is
`torch.load(weights_only=False)` on bytes from the file. A plain `pickle.load` of such a file runs
whatever it holds. stylelift reads them in two passes instead:

1. `scan` walks the opcodes without building anything. It refuses any global outside the
   allow-list, protocol-0 calls (INST, OBJ), extension codes, calls of anything but a named
   global, BUILD (`__setstate__`) on anything but the few records defined here, global names
   that are not literal strings, lengths beyond the end of the file, huge integers, huge memo
   indices, runaway stacks and deep nesting.
2. `SafeUnpickler` (a `pickle.Unpickler`) builds the objects. Each allowed global resolves to a
   function or class of this module that only records data: a persistent object becomes a
   `PersistentObject` (class name and state; its source is kept as text and never run), a
   TensorFlow network a `TFNetwork`, a tensor a `TensorRecord` whose storage bytes are decoded
   here (never by `torch.load`), a numpy array an `ArrayRecord`.

Nothing in a file can name a function outside `NETWORK_PICKLES`, so nothing in it can run.
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import pickletools
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional

import numpy as np
import torch

from ..errors import CheckpointError, StyleliftError, UnsafeCheckpointError, first_line

HIGHEST_PROTOCOL = 5
MAX_NESTING = 100  # containers within containers; NVIDIA's pickles need about 30
MAX_STACK = 100_000  # items on the unpickler's stack at once
MAX_OPS = 5_000_000  # opcodes in one pickle (each may allocate an object); real network pickles use < 200k
MAX_INT_BYTES = 1024  # LONG4 / text LONG; real files hold no integer above 2**64
MAX_LINE = 1 << 20  # one text argument of a protocol-0 opcode
MAX_NDIM = 32
MAX_EXPANDED = 1 << 25  # items of one value counted through its shared references (what hashing or printing it visits)

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (pre-zip) torch.save stream
TORCH_LEGACY_PROTOCOL = 1001


def refusal(source: str, what: str) -> UnsafeCheckpointError:
    """The one message for a file that names a global outside the allow-list; `what` is usually
    `module.qualname`. A torch data type (complex, float8, quantised) is named as such, since that is
    the likelier story, but the scan stopped there, so the file is refused as unsafe all the same."""
    module, _, name = what.rpartition(".")
    kind = vars(torch).get(name) if module in ("torch", "torch.storage") else None  # vars: no lazy imports for a file's names
    rebuilds_a_tensor = module == "torch._utils" and name in ("_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor", "_rebuild_meta_tensor_no_storage")
    if isinstance(kind, torch.dtype) or (isinstance(kind, type) and name.endswith("Storage")) or rebuilds_a_tensor:
        return UnsafeCheckpointError(f"refusing to load {source}: it names a tensor type stylelift does not read ({what}; network weights are real floating-point numbers)")
    return UnsafeCheckpointError(f"refusing to load {source}: it asks to run code ({what})")


def _corrupt(source: str, why: str) -> CheckpointError:
    return CheckpointError(f"cannot read {source}: {why}")


class _Malformed(Exception):
    """Raised by the recording functions below; `_load_one` turns it into a CheckpointError naming the file."""


class _Trick(Exception):
    """Raised when a record is asked to do what no real file asks (BUILD on it); becomes a refusal."""


# ----------------------------------------------------------------------------------------------
# Records: what the allowed globals build instead of live objects.


class _Record:
    """Base of the objects built here. BUILD on them is refused (the scanner already stops it)."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Trick(f"BUILD/__setstate__ on {type(self).__name__}")


class PersistentObject(_Record):
    """A `torch_utils.persistence` object: its class name and `__dict__`, never its code."""

    __slots__ = ("class_name", "version", "state", "module_src")

    def __init__(self, class_name: str, version: int, state: dict, module_src: str):
        self.class_name, self.version, self.state, self.module_src = class_name, version, state, module_src

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


class LegacyStorage(_Record):
    """A tensor storage decoded from the bytes of a legacy `torch.save` (a view of those bytes)."""

    __slots__ = ("dtype", "numel", "data", "location")

    def __init__(self, dtype: torch.dtype, numel: int, data: memoryview, location: str):
        self.dtype, self.numel, self.data, self.location = dtype, numel, data, location

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def tensor(self) -> torch.Tensor:
        """The storage as a new 1-D CPU tensor (a copy; the file's bytes stay untouched)."""
        if self.numel == 0:
            return torch.empty([0], dtype=self.dtype)
        return torch.frombuffer(bytearray(self.data), dtype=self.dtype)


class TensorRecord(_Record):
    """A tensor as `torch._utils._rebuild_tensor_v2` describes it, checked to lie inside its storage."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: LegacyStorage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    def materialize(self) -> torch.Tensor:
        """A new contiguous CPU tensor with the recorded values."""
        base = self.storage.tensor()
        return torch.as_strided(base, self.shape, self.stride, self.offset).clone(memory_format=torch.contiguous_format)

    def __repr__(self) -> str:
        return f"TensorRecord({list(self.shape)}, {self.dtype})"


class ArrayRecord(_Record):
    """A numpy array (`numpy.core.multiarray._reconstruct` + BUILD), read-only over the file's bytes."""

    __slots__ = ("array",)

    def __init__(self, array: Optional[np.ndarray] = None):
        self.array = array

    def __setstate__(self, state):
        if self.array is not None:
            raise _Malformed("a numpy array was restored twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Malformed("bad numpy array state")
        if len(state) == 5:
            state = state[1:]
        shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran is True else "C")

    def __repr__(self) -> str:
        return f"ArrayRecord({None if self.array is None else self.array.shape})"


class _DtypeRecord(_Record):
    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise _Malformed("unsupported numpy dtype state (only plain numeric dtypes are read)")
        order = state[1]
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)
        elif order not in ("|", "="):
            raise _Malformed(f"bad numpy byte order {order!r}")


class TFNetwork:
    """Stands in for `dnnlib.tflib.network.Network`: keeps the state BUILD gives it, builds nothing.

    The state holds `version`, `name`, `static_kwargs`, `components` (nested networks),
    `build_module_src` (kept as text, never run), `build_func_name` and `variables`
    (a list of `(name, ArrayRecord)`).
    """

    __slots__ = ("state",)

    def __setstate__(self, state):
        if getattr(self, "state", None) is not None:
            raise _Malformed("a TensorFlow network was restored twice")
        if not isinstance(state, dict):
            raise _Malformed("a TensorFlow network without a state dict")
        self.state = state

    def get(self, key: str, default: Any = None) -> Any:
        return (getattr(self, "state", None) or {}).get(key, default)

    def __repr__(self) -> str:
        return f"TFNetwork({self.get('name')!r}, version={self.get('version')})"


class _Marker:
    """A name the allow-list accepts as data only (e.g. `numpy.ndarray` as an argument); not callable."""

    def __init__(self, name: str, dtype: Optional[torch.dtype] = None):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"<{self.name}>"


_NDARRAY = _Marker("numpy.ndarray")


# ----------------------------------------------------------------------------------------------
# The functions allowed globals resolve to. Each checks its arguments and only records data.


def _persistent_obj(meta) -> PersistentObject:
    """Replaces `torch_utils.persistence._reconstruct_persistent_obj`; `module_src` is never run."""
    if not isinstance(meta, dict):
        raise _Malformed("a persistent object without its meta dict")
    if meta.get("type") != "class":
        raise _Malformed(f"unsupported persistent object type {str(meta.get('type'))[:40]!r}")
    class_name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(src, str):
        raise _Malformed("a persistent object with a malformed meta dict")
    version = meta.get("version")
    return PersistentObject(class_name, version if isinstance(version, int) else -1, state, src)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_tuple(x, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or len(x) > MAX_NDIM or not all(_is_int(v) and v >= 0 for v in x):
        raise _Malformed(f"bad tensor {what}")
    return tuple(x)


def _rebuild_tensor(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
) -> TensorRecord:
    """Replaces `torch._utils._rebuild_tensor_v2`; checks that the view stays inside its storage."""
    if not isinstance(storage, LegacyStorage):
        raise _Malformed("a tensor without a storage")
    shape, strides = _int_tuple(size, "shape"), _int_tuple(stride, "strides")
    if len(shape) != len(strides) or not _is_int(storage_offset) or storage_offset < 0:
        raise _Malformed("bad tensor layout")
    numel = math.prod(shape)
    if numel:
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= storage.numel or numel > storage.numel:
            raise _Malformed(f"a tensor of shape {list(shape)} does not fit its storage of {storage.numel} elements")
    return TensorRecord(storage, storage_offset, shape, strides)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> TensorRecord:
    """Replaces `torch._utils._rebuild_parameter[_with_state]`: a parameter is its tensor."""
    if not isinstance(data, TensorRecord):
        raise _Malformed("a parameter without a tensor")
    return data


_NUMPY_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16))")


def _numpy_dtype(spec, align=False, copy=True) -> _DtypeRecord:
    """Replaces `numpy.dtype`, for plain numeric dtypes only (no objects, records or subarrays)."""
    if not isinstance(spec, str) or not _NUMPY_DTYPE.fullmatch(spec):
        raise _Malformed(f"unsupported numpy dtype {str(spec)[:20]!r}")
    return _DtypeRecord(np.dtype(spec))


def _array_from_bytes(raw, dtype, shape, order: str) -> np.ndarray:
    if not isinstance(dtype, _DtypeRecord):
        raise _Malformed("a numpy array without a dtype")
    if isinstance(raw, str):  # Python 2 pickles store the data as a latin-1 str
        raw = raw.encode("latin-1")
    if not isinstance(raw, (bytes, bytearray)):
        raise _Malformed("a numpy array whose data is not raw bytes (object arrays are not read)")
    shape = _int_tuple(shape, "shape")
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise _Malformed(f"a numpy array of shape {list(shape)} with {len(raw)} bytes of data")
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)


def _numpy_reconstruct(cls, shape, typecode) -> ArrayRecord:
    """Replaces `numpy.core.multiarray._reconstruct`: an empty record that BUILD then fills."""
    if cls is not _NDARRAY:
        raise _Malformed("numpy _reconstruct of something other than an ndarray")
    return ArrayRecord()


def _numpy_frombuffer(buffer, dtype, shape, order) -> ArrayRecord:
    """Replaces `numpy.core.numeric._frombuffer` (protocol-5 arrays, data in band)."""
    return ArrayRecord(_array_from_bytes(buffer, dtype, shape, "F" if order == "F" else "C"))


def _numpy_scalar(dtype, data=None):
    """Replaces `numpy.core.multiarray.scalar`: a numeric scalar, returned as a Python number."""
    if not isinstance(dtype, _DtypeRecord) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise _Malformed("a malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0].item()


def _latin1_encode(text, encoding="utf-8"):
    """Replaces `_codecs.encode`, which protocol-2 pickles use for bytes: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Malformed("unexpected use of _codecs.encode")
    return text.encode("latin-1")


# ----------------------------------------------------------------------------------------------
# Storages inside `torch.storage._load_from_bytes`: a legacy torch.save stream, decoded here.

TORCH_STORAGE_TYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _PendingStorage:
    def __init__(self, dtype: torch.dtype, key: str, numel: int, location: str):
        self.dtype, self.key, self.numel, self.location = dtype, key, numel, location


def _storage_persistent_id(pid) -> _PendingStorage:
    # ('storage', storage_type, key, location, numel, view_metadata)
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
        raise _Malformed("unsupported persistent id in tensor storage bytes")
    _, kind, key, location, numel, view = pid
    if not isinstance(kind, _Marker) or kind.dtype is None or not isinstance(key, str) or not isinstance(location, str):
        raise _Malformed("malformed storage id in tensor storage bytes")
    if not _is_int(numel) or numel < 0 or view is not None:
        raise _Malformed("unsupported storage view in tensor storage bytes")
    return _PendingStorage(kind.dtype, key, numel, location)


def _legacy_storage(data, *, source: str) -> LegacyStorage:
    """Replaces `torch.storage._load_from_bytes`, reading the bytes without `torch.load`.

    The bytes are a legacy `torch.save` of one storage: five pickles (magic number, protocol
    version, system info, the storage as a persistent id, the list of storage keys), then per
    storage an int64 element count and the raw little-endian data. Each pickle goes through the
    same scan and restricted unpickler as the file itself, so a payload hidden here is refused.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"cannot read {source}: tensor storage that is not bytes")
    end = len(data)
    f = io.BytesIO(data)
    magic, pos = _load_one(f, 0, end, source, PLAIN_DATA)
    version, pos = _load_one(f, pos, end, source, PLAIN_DATA)
    sys_info, pos = _load_one(f, pos, end, source, PLAIN_DATA)
    if magic != TORCH_LEGACY_MAGIC or version != TORCH_LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise _corrupt(source, "tensor storage bytes that are not a torch.save stream")
    if sys_info.get("little_endian") is not True:
        raise _corrupt(source, "tensor storage saved on a big-endian machine (not supported)")
    pending, pos = _load_one(f, pos, end, source, LEGACY_STORAGE, persistent_load=_storage_persistent_id)
    keys, pos = _load_one(f, pos, end, source, PLAIN_DATA)
    if not isinstance(pending, _PendingStorage) or keys != [pending.key]:
        raise _corrupt(source, "tensor storage bytes that hold something other than one storage")
    if end - pos < 8:
        raise _corrupt(source, "truncated tensor storage bytes")
    (numel,) = struct.unpack("<q", data[pos : pos + 8])
    nbytes = pending.numel * torch.empty([], dtype=pending.dtype).element_size()
    if numel != pending.numel or nbytes > end - pos - 8:
        raise _corrupt(source, "tensor storage bytes whose size does not match their header")
    view = memoryview(data)[pos + 8 : pos + 8 + nbytes]
    return LegacyStorage(pending.dtype, pending.numel, view, pending.location)


# ----------------------------------------------------------------------------------------------
# Allow-lists


@dataclass(frozen=True)
class AllowList:
    """Which globals a pickle may name, and what each resolves to.

    `buildable`: globals whose results may receive BUILD (their own `__setstate__`, defined here).
    `dict_like`: globals whose results may receive SETITEM(S).
    """

    globals: Mapping[tuple[str, str], Any]
    buildable: frozenset = frozenset()
    dict_like: frozenset = frozenset()
    persistent_ids: bool = False

    def names(self) -> list[str]:
        return sorted(f"{m}.{n}" for m, n in self.globals)


_NUMPY = {
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
}

NETWORK_PICKLES = AllowList(
    globals={
        # NVIDIA PyTorch pickles
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _legacy_storage,
        ("dnnlib.util", "EasyDict"): dict,
        ("dnnlib", "EasyDict"): dict,
        # NVIDIA TensorFlow pickles
        ("dnnlib.tflib.network", "Network"): TFNetwork,
        # plain containers and numbers
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,  # protocol 2 written by Python 3 keeps Python 2's module names
        ("__builtin__", "frozenset"): frozenset,
        ("_codecs", "encode"): _latin1_encode,
        **_NUMPY,
    },
    buildable=frozenset(
        {
            ("dnnlib.tflib.network", "Network"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    ),
    dict_like=frozenset({("collections", "OrderedDict"), ("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}),
)

PLAIN_DATA = AllowList(globals={})

LEGACY_STORAGE = AllowList(  # CUDA storages too: only their dtype is used, the data is read to the CPU
    globals={
        (module, name): _Marker(f"{module}.{name}", dtype)
        for module in ("torch", "torch.cuda")
        for name, dtype in TORCH_STORAGE_TYPES.items()
    },
    persistent_ids=True,
)

_NEEDS_SOURCE = (_legacy_storage,)  # resolved with the file's name, for its error messages


# ----------------------------------------------------------------------------------------------
# Pass 1: the opcode scan


class _Tag:
    """What the scanner knows about one stack item: its kind, for strings and globals a value, and
    whether it may be hashed (a dict key, a set member).

    Hashing a tuple hashes its items every time, so a tuple built from shared references to itself
    (`x = (x, x)`, 60 times) takes 2**60 steps to hash, and ints or floats can be chosen to share
    one hash (a dict of them fills in quadratic time). Network pickles key their dicts and sets by
    strings and small ints only, so only those, and short flat tuples of them, are `hashable`.
    `members_hashable`: every item put into this container so far is. `size`: the items a walk of
    the value visits, a shared reference counted each time, as `hash`, `repr` and `==` visit them
    (a reader that looks a setting up in a set, or prints it, would hang on `x = (x, x)` too).
    `items`: a tuple's or list's first few items (a REDUCE's arguments, a persistent id, a pair);
    `members_are_pairs`, `placed`: see below. `nbytes`: the bytes of a string's or bytes' data (and
    of what a `_COPYING` call makes of them), 0 where not known."""

    __slots__ = ("kind", "value", "height", "hashable", "members_hashable", "members_are_pairs", "count", "items", "size", "placed", "nbytes")

    def __init__(self, kind: str, value: Any = None, height: int = 0, hashable: bool = False, nbytes: int = 0):
        self.kind, self.value, self.height, self.hashable, self.nbytes = kind, value, height, hashable, nbytes
        self.members_hashable, self.count, self.items, self.size = True, 0, [], 1
        self.placed = False  # put inside a container: its size and height are counted there, so it may not grow
        self.members_are_pairs = True  # every item a 2-item list or tuple whose first item is `hashable`: what OrderedDict(pairs) takes

    def describe(self) -> str:
        if self.kind in ("obj", "global"):
            return ".".join(self.value)
        return f"a {self.kind}"


MAX_KEY_TUPLE = 16  # items of a tuple used as a dict key or set member
_KEY_ATOM = _Tag("atom", hashable=True)  # strings, bytes, None, booleans (small ints get their own, with their value)
_NUMBER = _Tag("number")  # ints that may be large, floats: never a key
_HASHING_GLOBALS = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"), ("__builtin__", "frozenset")}
_FIXED_ARGS = {"uint1": "<B", "uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q", "float8": ">d"}
_COUNTED_ARGS = {
    "long1": "<B", "string1": "<B", "bytes1": "<B", "unicodestring1": "<B",
    "long4": "<i", "string4": "<i", "bytes4": "<I", "unicodestring4": "<I",
    "bytes8": "<Q", "unicodestring8": "<Q", "bytearray8": "<Q",
}  # fmt: skip
_LINE_ARGS = {"decimalnl_short", "decimalnl_long", "floatnl", "stringnl", "stringnl_noescape", "unicodestringnl"}
_LITERAL_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_PY2_STRINGS = {"SHORT_BINSTRING", "BINSTRING"}  # Python 2's str, as its pickles (and torch files it wrote) hold 'storage' and keys
_SMALL_INTS = {"BININT", "BININT1", "BININT2"}
_DATA = {"STRING", "UNICODE", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}  # strings and bytes given by value (not names): hashable, and counted in `nbytes`
_ATOMS = {"NONE", "NEWTRUE", "NEWFALSE"}
_NUMBERS = {"INT", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "BYTEARRAY8"}  # BYTEARRAY8: not hashable at all
# calls that copy the data they are given: a real file gives each its own data, and a storage's bytes
# may pass through both (protocol 2: _load_from_bytes(_codecs.encode(text))), so together they copy
# at most twice what the pickle holds; a file that hands one string to them again and again (7
# bytes a call) would make a copy of it each time, a memory bomb, or decode it each time, a CPU one
_COPYING = {("_codecs", "encode"), ("torch.storage", "_load_from_bytes"), ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
_FILLED_FROM_DATA = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}  # BUILD gives their data (a str copied when made bytes)
MAX_COPIED = 2  # the bytes `_COPYING` calls may take in all, as a multiple of the pickle's size
_EMPTY = {"EMPTY_LIST": "list", "EMPTY_TUPLE": "tuple", "EMPTY_DICT": "dict", "EMPTY_SET": "set"}
_FROM_MARK = {"LIST": "list", "TUPLE": "tuple", "DICT": "dict", "FROZENSET": "frozenset"}
_SMALL_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


class _Scanner:
    """Walks one pickle's opcodes, checking them against an allow-list; builds nothing."""

    def __init__(self, f: BinaryIO, start: int, end: int, source: str, allow: AllowList):
        self.f, self.pos, self.end, self.source, self.allow = f, start, end, source, allow
        self.storages: list[Optional[StorageId]] = []  # each persistent id, None where it is not a plain storage id
        self.stack: list[_Tag] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Tag] = {}
        self.ops = 0
        self.span = end - start
        self.data_len = 0  # the length of the last string or bytes argument read
        self.copied = 0  # bytes given to `_COPYING` calls so far

    # -- reading
    def _truncated(self) -> CheckpointError:
        return _corrupt(self.source, f"the file is truncated or corrupt (the pickle breaks off at byte {self.pos})")

    def _limit(self, what: str) -> CheckpointError:
        return _corrupt(self.source, f"{what} at byte {self.pos}; no network file needs that")

    def _read(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise self._truncated()
        data = self.f.read(n)
        if len(data) != n:
            raise self._truncated()
        self.pos += n
        return data

    def _skip(self, n: int) -> None:
        if n > self.end - self.pos:
            raise _corrupt(self.source, f"a length field at byte {self.pos} points {n} bytes ahead, past the end of the file")
        self.f.seek(n, io.SEEK_CUR)
        self.pos += n

    def _line(self) -> bytes:
        data = self.f.readline(min(MAX_LINE, self.end - self.pos) + 1)
        if not data.endswith(b"\n"):
            raise self._limit("an over-long text argument") if len(data) > MAX_LINE else self._truncated()
        self.pos += len(data)
        return data[:-1]

    def _arg(self, op) -> Any:
        """The opcode's argument: an int for numbers and lengths, text for names, None if skipped."""
        if op.arg is None:
            return None
        kind = op.arg.name
        if kind in _FIXED_ARGS:
            fmt = _FIXED_ARGS[kind]
            return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
        if kind in _COUNTED_ARGS:
            fmt = _COUNTED_ARGS[kind]
            n = struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
            if n < 0:
                raise _corrupt(self.source, f"a negative length at byte {self.pos}")
            self.data_len = n
            if kind == "long4" and n > MAX_INT_BYTES:
                raise self._limit(f"an integer of {n} bytes")
            if kind in ("long1", "long4"):
                return int.from_bytes(self._read(n), "little", signed=True)
            if op.name in _LITERAL_STRINGS and n <= 1024:
                try:
                    return self._read(n).decode("utf-8")
                except UnicodeDecodeError:
                    raise _corrupt(self.source, f"a string that is not UTF-8 at byte {self.pos}") from None
            if op.name in _PY2_STRINGS and n <= 1024:
                return self._read(n).decode("latin-1")
            self._skip(n)
            return None
        if kind == "stringnl_noescape_pair":
            try:
                return self._line().decode("utf-8"), self._line().decode("utf-8")
            except UnicodeDecodeError:
                raise _corrupt(self.source, f"a global name that is not UTF-8 at byte {self.pos}") from None
        if kind in _LINE_ARGS:
            line = self._line()
            self.data_len = len(line)
            if kind in ("decimalnl_short", "decimalnl_long"):
                if len(line) > MAX_INT_BYTES:
                    raise self._limit(f"an integer of {len(line)} digits")
                try:
                    return int(line.strip().rstrip(b"L"))
                except ValueError:
                    if op.name in ("GET", "PUT"):
                        raise _corrupt(self.source, f"a bad memo index at byte {self.pos}") from None
            return None
        raise _corrupt(self.source, f"unsupported opcode {op.name}")

    # -- the stack
    def _push(self, tag: _Tag) -> None:
        if len(self.stack) >= MAX_STACK:
            raise self._limit(f"more than {MAX_STACK} items on the stack")
        if tag.height > MAX_NESTING:
            raise self._limit(f"data nested more than {MAX_NESTING} levels deep")
        self.stack.append(tag)

    def _pop(self, n: int = 1) -> list[_Tag]:
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) - fence < n:
            raise _corrupt(self.source, f"the pickle's stack underflows at byte {self.pos}")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return items

    def _top(self) -> _Tag:
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) <= fence:
            raise _corrupt(self.source, f"the pickle's stack underflows at byte {self.pos}")
        return self.stack[-1]

    def _pop_mark(self) -> list[_Tag]:
        if not self.marks:
            raise _corrupt(self.source, f"a missing MARK at byte {self.pos}")
        k = self.marks.pop()
        items = self.stack[k:]
        del self.stack[k:]
        return items

    def _grow(self, container: _Tag, items: list[_Tag]) -> None:
        if items:
            if container.placed:  # pickle fills a container before it places it, unless the data refers to itself
                raise self._limit("a container filled after it was put inside another (data that refers to itself)")
            for t in items:
                t.placed = True
            container.height = max(container.height, 1 + max(t.height for t in items))
            if container.height > MAX_NESTING:
                raise self._limit(f"data nested more than {MAX_NESTING} levels deep")
            container.members_hashable = container.members_hashable and all(t.hashable for t in items)
            container.members_are_pairs = container.members_are_pairs and all(t.kind in ("list", "tuple") and t.count == 2 and t.items[0].hashable for t in items)
            if container.kind == "tuple" and container.count == 0:
                container.hashable = container.members_hashable and container.height == 1 and len(items) <= MAX_KEY_TUPLE
            if container.kind in ("tuple", "list") and len(container.items) < 6:  # a REDUCE's arguments, a persistent id, a pair
                container.items += items[: 6 - len(container.items)]
            container.count += len(items)
            container.size += sum(t.size for t in items)
            if container.size > MAX_EXPANDED:
                raise self._limit(f"data that refers to its own parts so often that walking it visits more than {MAX_EXPANDED:,} items")

    def _check_hashable(self, container: _Tag, what: str) -> None:
        if not container.members_hashable:
            raise self._limit(f"{what} that is not a string, a small int or a short tuple of them")

    def _check_global(self, module: str, name: str) -> _Tag:
        if (module, name) not in self.allow.globals:
            raise refusal(self.source, f"{module}.{name}")
        return _Tag("global", (module, name))

    def _memo_index(self, idx: int) -> int:
        # The pickler numbers memo entries 0, 1, 2, ...; a far larger index only grows the
        # unpickler's memo table (a memory bomb).
        if idx > self.ops:
            raise self._limit(f"memo index {idx}")
        return idx

    # -- the walk
    def run(self) -> int:
        """Scan to STOP; return the offset just after it."""
        code2op = pickletools.code2op
        while True:
            at = self.pos
            byte = self.f.read(1) if at < self.end else b""
            if not byte:
                raise self._truncated()
            self.pos += 1
            self.ops += 1
            if self.ops > MAX_OPS:
                raise self._limit(f"more than {MAX_OPS} opcodes")
            op = code2op.get(byte.decode("latin-1"))
            if op is None:
                raise _corrupt(self.source, f"not a pickle, or a corrupt one (unknown opcode 0x{byte[0]:02x} at byte {at})")
            arg = self._arg(op)
            if self._step(op.name, arg):
                return self.pos

    def _step(self, name: str, arg: Any) -> bool:
        if name in _LITERAL_STRINGS or name in _PY2_STRINGS:
            self._push(_Tag("str", arg, hashable=True, nbytes=self.data_len))
        elif name in _SMALL_INTS:
            self._push(_Tag("atom", arg, hashable=True))
        elif name in _DATA:
            self._push(_Tag("atom", hashable=True, nbytes=self.data_len))
        elif name in _ATOMS:
            self._push(_KEY_ATOM)
        elif name == "BYTEARRAY8":
            self._push(_Tag("number", nbytes=self.data_len))
        elif name in _NUMBERS:
            small_int = name in ("INT", "LONG", "LONG1", "LONG4") and isinstance(arg, int) and abs(arg) < 2**61
            self._push(_Tag("atom", arg, hashable=True) if small_int else _NUMBER)
        elif name in _EMPTY:
            self._push(_Tag(_EMPTY[name]))
        elif name in _FROM_MARK:
            items = self._pop_mark()
            tag = _Tag(_FROM_MARK[name])
            self._grow(tag, items)
            if name == "FROZENSET":
                self._check_hashable(tag, "a frozenset member")
            elif name == "DICT" and not all(k.hashable for k in items[0::2]):  # protocols 0-1 build dicts this way
                raise self._limit("a dict key that is not a string, a small int or a short tuple of them")
            self._push(tag)
        elif name in _SMALL_TUPLES:
            tag = _Tag("tuple")
            self._grow(tag, self._pop(_SMALL_TUPLES[name]))
            self._push(tag)
        elif name == "MARK":
            if len(self.marks) >= MAX_NESTING:
                raise self._limit(f"more than {MAX_NESTING} nested MARKs")
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and self.marks[-1] == len(self.stack):
                self.marks.pop()
            else:
                self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            self._push(self._top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[self._memo_index(arg)] = self._top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise _corrupt(self.source, f"a reference to a missing memo entry at byte {self.pos}")
            self._push(self.memo[arg])
        elif name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"):
            self._fill(name)
        elif name == "GLOBAL":
            self._push(self._check_global(*arg))
        elif name == "STACK_GLOBAL":
            module, qualname = self._pop(2)
            if module.kind != "str" or qualname.kind != "str" or module.value is None or qualname.value is None:
                raise refusal(self.source, "a global whose name is computed, not written in the file")
            self._push(self._check_global(module.value, qualname.value))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            self._call(name)
        elif name == "BUILD":
            (state,) = self._pop()
            target = self._top()
            if target.kind != "obj" or target.value not in self.allow.buildable:
                raise refusal(self.source, f"BUILD/__setstate__ on {target.describe()}")
            if target.value in _FILLED_FROM_DATA and state.kind == "tuple" and 0 < state.count <= len(state.items):
                self._copies(state.items[state.count - 1], "a numpy array's state")  # (version,) shape, dtype, fortran, data
            self._grow(target, [state])
        elif name == "INST":
            raise refusal(self.source, f"{arg[0]}.{arg[1]}")
        elif name == "OBJ":
            items = self._pop_mark()
            what = items[0].describe() if items else "an OBJ opcode"
            raise refusal(self.source, what)
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise refusal(self.source, f"copyreg extension code {arg}")
        elif name in ("PERSID", "BINPERSID"):
            if not self.allow.persistent_ids:
                raise _corrupt(self.source, "the pickle uses persistent ids, which network pickles do not")
            pid = self._pop()[0] if name == "BINPERSID" else None
            self.storages.append(_storage_id(pid))
            self._push(_Tag("obj", ("persistent", "id")))
        elif name == "PROTO":
            if arg > HIGHEST_PROTOCOL:
                raise _corrupt(self.source, f"pickle protocol {arg} is newer than this Python reads")
        elif name == "FRAME":
            if arg > self.end - self.pos:
                raise self._truncated()
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise _corrupt(self.source, "the pickle refers to out-of-band buffers it does not contain")
        elif name == "STOP":
            if len(self.stack) != 1 or self.marks:
                raise _corrupt(
                    self.source, f"a malformed pickle (it ends at byte {self.pos} with {len(self.stack)} items on the stack)"
                )
            return True
        else:  # every opcode of protocols 0-5 is handled above
            raise _corrupt(self.source, f"unsupported opcode {name}")
        return False

    def _call(self, name: str) -> None:
        """REDUCE, NEWOBJ, NEWOBJ_EX: a call of an allowed global, which only dict-like and set-like
        globals may give arguments that Python would hash."""
        items = self._pop({"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}[name])
        func = items[0]
        if func.kind != "global":
            what = f"what {func.describe()} returned" if func.kind == "obj" else func.describe()
            raise refusal(self.source, f"{name} of {what}, not of a named global")
        args, rest_empty = items[1], all(t.count == 0 for t in items[2:])
        pairs = args.items[0] if args.kind == "tuple" and args.count == 1 and name == "REDUCE" else None
        if func.value in self.allow.dict_like and not (args.kind == "tuple" and args.count == 0 and rest_empty) and not (pairs is not None and pairs.kind in ("list", "tuple") and pairs.members_are_pairs):
            # Python 3 builds these empty, then SETITEMS; Python 2 from a list of [key, value] pairs, whose keys must be safe to hash
            raise self._limit(f"{'.'.join(func.value)} built from arguments other than [key, value] pairs")
        if func.value in _HASHING_GLOBALS:  # set(iterable) hashes the iterable's items
            args = items[1]
            inner = args.items[0] if args.kind == "tuple" and args.count == 1 else None
            if not (args.kind == "tuple" and args.count == 0) and not (inner is not None and inner.kind in ("list", "tuple")):
                raise self._limit(f"{'.'.join(func.value)} of {args.describe()}")
            if inner is not None:
                self._check_hashable(inner, "a set member")
        tag = _Tag("obj", func.value)
        if func.value in _COPYING:
            tag.nbytes = self._copies(items[1].items[0] if items[1].kind == "tuple" and items[1].items else None, ".".join(func.value))
        self._grow(tag, items[1:])
        self._push(tag)

    def _copies(self, data: Optional[_Tag], what: str) -> int:
        """Count the bytes of `data` (a tag) that `what` would copy; returns them."""
        n = data.nbytes if data is not None else 0
        self.copied += n
        if self.copied > MAX_COPIED * self.span:
            raise self._limit(f"data given to {what} again and again (each would copy it: {self.copied:,} bytes from a pickle of {self.span:,})")
        return n

    def _fill(self, name: str) -> None:
        items = self._pop_mark() if name in ("APPENDS", "SETITEMS", "ADDITEMS") else self._pop(1 if name == "APPEND" else 2)
        target = self._top()
        if name.startswith("APPEND"):
            ok = target.kind == "list"
        elif name.startswith("SETITEM"):
            ok = target.kind == "dict" or (target.kind == "obj" and target.value in self.allow.dict_like)
        else:
            ok = target.kind == "set"
        if not ok:
            raise refusal(self.source, f"{name} on {target.describe()}")
        keys = items[0::2] if name.startswith("SETITEM") else items if name == "ADDITEMS" else []
        if not all(k.hashable for k in keys):
            raise self._limit(f"a {'dict key' if name.startswith('SETITEM') else 'set member'} that is not a string, a small int or a short tuple of them")
        self._grow(target, items)


def scan(f: BinaryIO, start: int, end: int, source: str, allow: AllowList) -> int:
    """Check the pickle starting at `start` against `allow`; return the offset just after its STOP."""
    return scan_storages(f, start, end, source, allow)[0]


@dataclass(frozen=True)
class StorageId:
    """A torch file's persistent id of a storage: `('storage', torch.FloatStorage, key, location, numel)`
    in a zip file; a legacy file adds a view, None or `(view_key, offset, size)` of the storage."""

    storage_type: tuple[str, str]  # the global, e.g. ("torch", "FloatStorage")
    key: str  # a zip's entry data/<key>; in a legacy file, the key of a storage after the pickles
    numel: int
    view: Optional[tuple[int, int]] = None  # (offset, size) of a legacy storage view


def _int_value(tag: _Tag) -> Optional[int]:
    return tag.value if tag.kind == "atom" and _is_int(tag.value) and tag.value >= 0 else None


def _storage_id(pid: Optional[_Tag]) -> Optional[StorageId]:
    items = pid.items if pid is not None and pid.kind == "tuple" and pid.count in (5, 6) else []
    if len(items) not in (5, 6) or items[0].value != "storage" or items[1].kind != "global" or items[2].kind != "str" or not isinstance(items[2].value, str):
        return None
    numel, view = _int_value(items[4]), None
    if len(items) == 6 and items[5] is not _KEY_ATOM:  # None (or the like, which torch refuses itself), else a view
        parts = items[5].items if items[5].kind == "tuple" and items[5].count == 3 else []
        view = (_int_value(parts[1]), _int_value(parts[2])) if len(parts) == 3 else (None, None)
        if None in view:
            return None
    return None if numel is None else StorageId(items[1].value, items[2].value, numel, view)


def scan_storages(f: BinaryIO, start: int, end: int, source: str, allow: AllowList) -> tuple[int, list[Optional[StorageId]]]:
    """`scan`, also returning the pickle's persistent ids as `StorageId`s (None where one is not a storage's)."""
    f.seek(start)
    scanner = _Scanner(f, start, end, source, allow)
    return scanner.run(), scanner.storages


def load_plain(f: BinaryIO, start: int, end: int, source: str) -> tuple[Any, int]:
    """Scan and unpickle a pickle of plain data (no globals) at `start`; returns it and the offset after it."""
    return _load_one(f, start, end, source, PLAIN_DATA)


# ----------------------------------------------------------------------------------------------
# Pass 2: the restricted unpickler


class SafeUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves globals through an allow-list and nothing else.

    Use it only on data `scan` has passed: the scan is what rules out INST/OBJ, BUILD tricks and
    memory bombs; this class is the second lock on the globals.
    """

    def __init__(self, file: BinaryIO, *, source: str, allow: AllowList, persistent_load: Optional[Callable] = None):
        super().__init__(file, fix_imports=False)
        self.source, self.allow, self._persistent_load = source, allow, persistent_load

    def find_class(self, module: str, name: str) -> Any:
        target = self.allow.globals.get((module, name))
        if target is None:
            raise refusal(self.source, f"{module}.{name}")
        if target in _NEEDS_SOURCE:
            return functools.partial(target, source=self.source)
        return target

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None or not self.allow.persistent_ids:
            raise _corrupt(self.source, "the pickle uses persistent ids, which network pickles do not")
        return self._persistent_load(pid)


def _load_one(f: BinaryIO, start: int, end: int, source: str, allow: AllowList, persistent_load=None) -> tuple[Any, int]:
    """Scan, then unpickle, the pickle at `start`; return the object and the offset after it."""
    stop = scan(f, start, end, source, allow)
    f.seek(start)
    try:
        obj = SafeUnpickler(f, source=source, allow=allow, persistent_load=persistent_load).load()
    except StyleliftError:
        raise
    except _Malformed as e:
        raise _corrupt(source, str(e)) from None
    except _Trick as e:
        raise refusal(source, str(e)) from None
    except RecursionError:
        raise _corrupt(source, "data nested too deeply") from None
    except Exception as e:  # a malformed pickle can raise nearly anything; report it as one line
        raise _corrupt(source, f"a malformed pickle ({type(e).__name__}: {first_line(e)})") from None
    return obj, stop


def load(path: Path, allow: AllowList = NETWORK_PICKLES) -> Any:
    """Read the first pickle of `path` without running anything from it.

    Raises FileNotFoundError, UnsafeCheckpointError (the file names a global outside `allow`, or
    plays a trick with the pickle machinery) or CheckpointError (truncated, corrupt, not a pickle).
    """
    path = Path(path)
    source = path.name
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as e:
        raise _corrupt(source, e.strerror or str(e)) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _corrupt(source, "the file is empty")
        obj, _ = _load_one(f, 0, size, source, allow)
    return obj


def loads(data: bytes, source: str = "<bytes>", allow: AllowList = NETWORK_PICKLES) -> Any:
    """`load` for a pickle held in memory."""
    if not data:
        raise _corrupt(source, "no data")
    obj, _ = _load_one(io.BytesIO(data), 0, len(data), source, allow)
    return obj


class TensorBudget:
    """Caps the bytes a reader copies out of storages, relative to the file's size.

    A tensor view cannot be larger than its storage, but many views of one large storage could
    each be copied; the budget stops that.
    """

    def __init__(self, limit_bytes: int, source: str):
        self.left, self.source = limit_bytes, source

    def materialize(self, record: TensorRecord) -> torch.Tensor:
        self.left -= record.storage.nbytes
        if self.left < 0:
            raise _corrupt(self.source, "its tensors share storage more than any network file does (refusing to copy it all)")
        return record.materialize()
