"""The defensive branches of the checkpoint readers, each reached by a crafted file.

Every bad file must give one line of CheckpointError (UnsafeCheckpointError where it names code),
never a traceback, never a silent misreading, never a hang.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)

from stylelift.errors import CheckpointError
from stylelift.models import safe_pickle
from stylelift.models.nvidia import read_nvidia_pickle
from stylelift.models.rosinality import read_rosinality
from stylelift.models.torch_files import check_storage_extent, load_torch_file

# ----------------------------------------------------------------------------------------------
# Helpers


def one_line(e: pytest.ExceptionInfo, name: str) -> str:
    text = str(e.value)
    assert "\n" not in text and name in text, text
    return text


def corrupt(e: pytest.ExceptionInfo, name: str) -> str:
    """A plain CheckpointError (not a refusal as code) of one line naming the file."""
    assert type(e.value) is CheckpointError, repr(e.value)
    return one_line(e, name)


def nvidia_refusal(tmp_path: Path, obj, name: str = "net.pkl", protocol: int = 4) -> pytest.ExceptionInfo:
    path = pf.dump(obj, tmp_path / name, protocol=protocol)
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    return e


def nvidia_bytes_refusal(tmp_path: Path, data: bytes, name: str = "bad.pkl") -> pytest.ExceptionInfo:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    return e


def snapshot(**overrides) -> dict:
    return pf.nvidia_pytorch_snapshot(pf.random_generator(pf.tiny_config(**overrides)))


def module(snap: dict, name: str = "") -> pf.Persistent:
    """A module of the snapshot's G_ema by its dotted name ('' for G_ema)."""
    m = snap["G_ema"]
    for part in filter(None, name.split(".")):
        m = m.state["_modules"][part]
    return m


def tf_networks(version: int = 4, **overrides) -> tuple:
    return pf.nvidia_tf_networks(pf.random_generator(pf.tiny_config(**overrides)), version=version)


def gs_kwargs(nets: tuple) -> dict:
    return nets[2]._state["static_kwargs"]


def edit_variables(nets: tuple, component: str, change) -> None:
    """Replace Gs's `component` ('mapping', 'synthesis' or '' for Gs) variables by change(dict)."""
    net = nets[2] if not component else nets[2]._state["components"][component]
    variables = dict(net._state["variables"])
    change(variables)
    net._state["variables"] = list(variables.items())


# Opcodes for hand-made pickles (protocol 2).
def op_int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def op_dtype(spec: str = "<f4") -> bytes:
    return pf.op_call(pf.op_global("numpy", "dtype"), pf.op_str(spec))


def op_empty_array(cls: bytes = pf.op_global("numpy", "ndarray")) -> bytes:
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: the empty array that BUILD then fills."""
    return pf.op_call(pf.op_global("numpy._core.multiarray", "_reconstruct"), cls, op_tuple(op_int(0)), pf.op_bytes(b"b"))


def op_array_state(shape: bytes = op_tuple(op_int(2)), dtype: bytes = op_dtype(), raw: bytes = pf.op_bytes(bytes(8))) -> bytes:
    return op_tuple(op_int(1), shape, dtype, b"\x89", raw)  # (version, shape, dtype, fortran=False, data)


def legacy_stream(pid, keys=("k",), numel: int = 2, data: bytes = bytes(8), little_endian: bool = True) -> bytes:
    """A legacy torch.save stream of one storage (what `torch.storage._load_from_bytes` is given),
    whose storage pickle has persistent id `pid`."""
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return pid if obj is marker else None

    main = io.BytesIO()
    Pickler(main, protocol=2).dump(marker)
    sys_info = dict(protocol_version=1001, little_endian=little_endian, type_sizes=dict(short=2, int=4, long=4))
    head = b"".join(pickle.dumps(x, protocol=2) for x in (safe_pickle.TORCH_LEGACY_MAGIC, 1001, sys_info))
    return head + main.getvalue() + pickle.dumps(list(keys), protocol=2) + struct.pack("<q", numel) + data


def storage_call(stream: bytes) -> bytes:
    """A pickle of `torch.storage._load_from_bytes(stream)`."""
    return pf.proto2(pf.op_call(pf.op_global("torch.storage", "_load_from_bytes"), pf.op_bytes(stream)))


def rosinality_file(tmp_path: Path, name: str = "good.pt", **save) -> Path:
    path = tmp_path / name
    torch.save(pf.rosinality_converted_checkpoint(pf.random_generator(pf.rosinality_config())), path, **save)
    return path


def rewrite_zip(src: Path, dst: Path, change) -> Path:
    """Copy a zip entry by entry, each stored, its bytes replaced by change(name, data) (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


# ----------------------------------------------------------------------------------------------
# torch_files: torch.save archives and legacy files


def test_path_through_a_file_is_one_line_error_not_a_traceback(tmp_path):
    (tmp_path / "file.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError) as e:
        load_torch_file(tmp_path / "file.pt" / "net.pt")  # NotADirectoryError, an OSError but not FileNotFoundError
    assert corrupt(e, "net.pt") == "cannot read net.pt: Not a directory"
    with pytest.raises(CheckpointError, match="^cannot read net.pt: Not a directory$"):
        read_rosinality(tmp_path / "file.pt" / "net.pt")


def test_torch_zip_entries_claiming_more_bytes_than_the_file_are_refused(tmp_path):
    good = rosinality_file(tmp_path)
    data = bytearray(good.read_bytes())
    # the central directory's uncompressed size of the first storage (the entries' local headers stay intact)
    name = next(n for n in zipfile.ZipFile(good).namelist() if n.endswith("/data/0")).encode()
    at = next(i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i) and data[i + 46 : i + 46 + len(name)] == name)
    data[at + 24 : at + 28] = struct.pack("<I", 0x7FFF_FFFF)
    bad = tmp_path / "huge.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        read_rosinality(bad)
    assert corrupt(e, "huge.pt") == "cannot read huge.pt: its entries claim to be larger than the file"


def test_torch_zip_missing_storage_entry_is_one_line_error(tmp_path):
    bad = rewrite_zip(rosinality_file(tmp_path), tmp_path / "nostorage.pt", lambda n, b: None if n.endswith("/data/3") else b)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(bad)
    text = corrupt(e, "nostorage.pt")
    assert text == "cannot read nostorage.pt: the data of storage '3' is missing (a damaged file?)"


def test_torch_zip_storage_entry_shorter_than_its_tensor_is_refused(tmp_path):
    """A memory-mapped torch.load would read on past the short entry, into the entries after it."""
    good = rosinality_file(tmp_path)
    bad = rewrite_zip(good, tmp_path / "short.pt", lambda n, b: b[:4] if n.endswith("/data/0") else b)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(bad)
    assert re.fullmatch(r"cannot read short.pt: storage '0' holds 4 bytes where it needs [\d,]+ \(cut short\?\)", corrupt(e, "short.pt"))
    torch.save({"x": torch.ones(3), "n": torch.arange(2)}, tmp_path / "ok.pt")  # whole entries of two storage types read
    assert torch.equal(load_torch_file(tmp_path / "ok.pt")["x"], torch.ones(3))


def test_torch_file_saved_with_pickle_protocol_4_gets_a_message_without_torch_advice(tmp_path):
    """torch.save(pickle_protocol=4) writes FRAME opcodes, which torch's weights-only unpickler
    refuses with advice to load it unsafely; stylelift says what is wrong instead."""
    path = rosinality_file(tmp_path, "proto4.pt", pickle_protocol=4)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(path)
    assert corrupt(e, "proto4.pt") == "cannot read proto4.pt: saved with pickle protocol 4, which torch's safe loader does not read; save it again with torch.save's default protocol"


def test_torch_file_holding_a_frozenset_is_not_said_to_run_code(tmp_path):
    path = tmp_path / "tags.pt"
    torch.save({"x": torch.zeros(2), "tags": frozenset({"a"})}, path)  # protocol 2: GLOBAL __builtin__ frozenset
    with pytest.raises(CheckpointError) as e:  # torch's weights-only loader refuses it
        load_torch_file(path)
    assert type(e.value) is CheckpointError and str(e.value) == "cannot read tags.pt: it holds a frozenset, which torch's safe loader does not read"


def test_torch_pickle_with_a_malformed_persistent_id_is_one_line_error(tmp_path):
    """A data.pkl whose storage reference is not torch's ('storage', type, key, location, numel) tuple."""
    good = rosinality_file(tmp_path)
    pid = op_tuple(pf.op_str("storage"))  # a 1-tuple: torch cannot unpack it
    bad = rewrite_zip(good, tmp_path / "pid.pt", lambda n, b: pf.proto2(pid + b"Q") if n.endswith("/data.pkl") else b)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(bad)
    assert corrupt(e, "pid.pt") == "cannot read pid.pt: its pickle refers to something other than a tensor storage, which torch.save never writes"


# ----------------------------------------------------------------------------------------------
# Legacy (pre-zip) torch files: five pickles, then each storage as an int64 element count and its
# elements. torch fills only the storages the fifth pickle lists, in its order.


LEGACY_STATE = {"a": torch.arange(6.0), "b": torch.full([6], 2.0), "c": torch.zeros(3)}  # a and b: storages of one size


def legacy_file(tmp_path: Path, name: str = "legacy.pt", **save) -> Path:
    path = tmp_path / name
    torch.save(LEGACY_STATE, path, _use_new_zipfile_serialization=False, **save)
    return path


def legacy_split(path: Path) -> tuple[bytes, list, list[bytes]]:
    """(the first four pickles, the storage keys, each storage's block: count and elements)."""
    from stylelift.models.torch_files import TORCH_SAVE_PICKLE

    data = path.read_bytes()
    f, pos = io.BytesIO(data), 0
    for allow in (safe_pickle.PLAIN_DATA,) * 3 + (TORCH_SAVE_PICKLE,):
        pos = safe_pickle.scan(f, pos, len(data), "x", allow)
    head, (keys, pos) = data[:pos], safe_pickle.load_plain(f, pos, len(data), "x")
    blocks = []
    for _ in keys:
        n = struct.unpack("<q", data[pos : pos + 8])[0]
        blocks.append(data[pos : pos + 8 + 4 * n])  # float32 storages
        pos += 8 + 4 * n
    assert pos == len(data)
    return head, keys, blocks


def legacy_join(path: Path, head: bytes, keys: list, blocks: list[bytes]) -> Path:
    path.write_bytes(head + pickle.dumps(keys, protocol=2) + b"".join(blocks))
    return path


def test_an_intact_legacy_file_reads_and_trailing_bytes_are_ignored_as_torch_does(tmp_path):
    head, keys, blocks = legacy_split(legacy_file(tmp_path))
    for path in (legacy_file(tmp_path), legacy_join(tmp_path / "tail.pt", head, keys, blocks + [b"extra"])):
        state = load_torch_file(path)
        assert all(torch.equal(state[k], v) for k, v in LEGACY_STATE.items()), path.name


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda keys, blocks: (keys[:-1], blocks[:-1]), "its list of stored tensors does not match the tensors it holds"),  # an unlisted storage: torch leaves it uninitialised
        (lambda keys, blocks: (keys[:-1] + keys[:1], blocks[:-1] + blocks[:1]), "its list of stored tensors does not match"),  # one twice, one missing
        (lambda keys, blocks: ([], []), "its list of stored tensors does not match"),
        (lambda keys, blocks: (keys[::-1], blocks[::-1]), "not in the order torch.save writes them"),  # same-size storages would trade data
        (lambda keys, blocks: (keys, [struct.pack("<q", 7) + blocks[0][8:]] + blocks[1:]), "holds 7 elements where its tensors say"),
        (lambda keys, blocks: (keys, [struct.pack("<q", 2**62) + blocks[0][8:]] + blocks[1:]), "holds 4611686018427387904 elements"),
        (lambda keys, blocks: (keys, blocks[:-1] + [blocks[-1][:10]]), "the file is cut short (in the data of storage"),
        (lambda keys, blocks: (keys, blocks[:-1] + [blocks[-1][:4]]), "the file is cut short (the data of storage"),
    ],
)
def test_a_damaged_legacy_file_is_one_line_and_never_read_into_wrong_or_uninitialised_weights(tmp_path, damage, said):
    head, keys, blocks = legacy_split(legacy_file(tmp_path))
    assert sorted({struct.unpack("<q", b[:8])[0] for b in blocks}) == [3, 6] and keys == sorted(keys)
    path = legacy_join(tmp_path / "bad.pt", head, *damage(keys, blocks))
    with pytest.raises(CheckpointError) as e:
        load_torch_file(path)
    assert said in corrupt(e, "bad.pt")


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2 did: str as SHORT_BINSTRING, an OrderedDict as (OrderedDict, ([[key, value], ...],))."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin-1")
        self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data if len(data) < 256 else pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str

    def reducer_override(self, obj):
        if type(obj) is OrderedDict:
            return OrderedDict, ([[k, v] for k, v in obj.items()],)
        return NotImplemented


def test_a_legacy_file_python_2_wrote_reads_as_torch_reads_it(tmp_path):
    import types

    module = types.ModuleType("python2_pickle")
    module.Pickler, module.dump = Python2Pickler, lambda obj, f, protocol=2: Python2Pickler(f, protocol).dump(obj)
    state = OrderedDict([("features.0.weight", torch.randn(2, 3)), ("n", torch.arange(3))])
    path = tmp_path / "py2.pt"
    torch.save(state, path, pickle_module=module, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert pickle.SHORT_BINSTRING + b"\x07storage" in data and b"X\x07\x00\x00\x00storage" not in data  # Python 2's str, not unicode
    loaded = load_torch_file(path)
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())


class _Storage:
    """A storage in a hand-written legacy pickle: its persistent id is written as given."""

    def __init__(self, *pid):
        self.pid = ("storage", *pid)


class _Tensor:
    def __init__(self, storage: _Storage, size: tuple, stride: tuple):
        self.args = (storage, 0, size, stride, False, OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


def old_legacy_file(path: Path, tensors: dict, data: dict[str, torch.Tensor]) -> Path:
    """A legacy file as torch <= 0.3 wrote it: 6-tuple storage ids, whose last item may be a view
    (view_key, offset, size) of the storage; `data` holds each stored storage's elements."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.pid if isinstance(obj, _Storage) else None

    f = io.BytesIO()
    for x in (safe_pickle.TORCH_LEGACY_MAGIC, safe_pickle.TORCH_LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(x, f, protocol=2)
    Pickler(f, protocol=2).dump(tensors)
    pickle.dump(sorted(data), f, protocol=2)
    for key in sorted(data):
        f.write(struct.pack("<q", data[key].numel()) + data[key].numpy().tobytes())
    path.write_bytes(f.getvalue())
    return path


def test_storage_views_of_old_legacy_files_read_and_are_bounded(tmp_path):
    data = {"10": torch.arange(10.0)}
    whole, tail = _Storage(torch.FloatStorage, "10", "cpu", 10, None), _Storage(torch.FloatStorage, "10", "cpu", 10, ("11", 4, 6))
    state = load_torch_file(old_legacy_file(tmp_path / "views.pt", {"whole": _Tensor(whole, (10,), (1,)), "tail": _Tensor(tail, (2, 3), (3, 1))}, data))
    assert torch.equal(state["whole"], torch.arange(10.0)) and torch.equal(state["tail"], torch.arange(4.0, 10.0).reshape(2, 3))  # as torch reads it
    cases = {
        "past.pt": ({"t": _Tensor(_Storage(torch.FloatStorage, "10", "cpu", 10, ("11", 6, 6)), (6,), (1,))}, "a view of storage '10' reaches past its end"),
        "twice.pt": ({"a": _Tensor(whole, (10,), (1,)), "b": _Tensor(_Storage(torch.FloatStorage, "10", "cpu", 12, None), (10,), (1,))}, "storage '10' is declared twice, with different types or sizes"),
        "dtype.pt": ({"t": _Tensor(_Storage(torch.float32, "10", "cpu", 10, None), (10,), (1,))}, "a storage of type torch.float32"),
    }
    for name, (tensors, said) in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_torch_file(old_legacy_file(tmp_path / name, tensors, data))
        assert said in corrupt(e, name), name


def test_a_zip_data_pickle_with_more_after_it_is_refused(tmp_path):
    bad = rewrite_zip(rosinality_file(tmp_path), tmp_path / "two.pt", lambda n, b: b + pickle.dumps(1, protocol=2) if n.endswith("/data.pkl") else b)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(bad)
    assert corrupt(e, "two.pt") == "cannot read two.pt: its data.pkl is not one pickle as torch.save writes it"


def test_legacy_files_of_another_byte_order_or_pickle_protocol_are_refused_by_name(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_torch_file(legacy_file(tmp_path, "p4.pt", pickle_protocol=4))
    assert corrupt(e, "p4.pt") == "cannot read p4.pt: saved with pickle protocol 4, which torch's safe loader does not read; save it again with torch.save's default protocol"
    head, keys, blocks = legacy_split(legacy_file(tmp_path))
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    assert info in head  # what torch.save writes on this machine
    path = legacy_join(tmp_path / "be.pt", head.replace(info, info.replace(b"\x88", b"\x89")), keys, blocks)  # NEWTRUE -> NEWFALSE
    with pytest.raises(CheckpointError) as e:
        load_torch_file(path)
    assert corrupt(e, "be.pt") == "cannot read be.pt: saved on a big-endian machine (not supported)"


def test_a_legacy_tensor_larger_than_its_storage_is_one_line(tmp_path):
    path = tmp_path / "view.pt"
    torch.save({"t": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    size = b"K\x03\x85"  # the tensor's size, (3,): BININT1 3, TUPLE1
    assert data.count(size) == 1
    path.write_bytes(data.replace(size, b"K\x05\x85"))  # a [5] tensor over a 3-element storage
    with pytest.raises(CheckpointError) as e:
        load_torch_file(path)
    assert corrupt(e, "view.pt") == "cannot read view.pt: a tensor reaches past its storage (a damaged file?)"


def test_empty_tensor_needs_no_storage_extent_check():
    check_storage_extent("x.pt", "w", torch.zeros(1).expand(0, 4))  # zero strides, but nothing to read
    with pytest.raises(CheckpointError, match="tensor w is not a plain array over its own data"):
        check_storage_extent("x.pt", "w", torch.zeros(1).expand(2, 4))
    base = torch.zeros(64)
    check_storage_extent("x.pt", "w", base[8:].reshape(8, 7)[:, ::2].t())  # a strided view inside its storage: fine
    with pytest.raises(CheckpointError, match=r"tensor w is not a plain array over its own data \(shape \[32, 32\], strides \[1, 1\]\)"):
        check_storage_extent("x.pt", "w", base.as_strided((32, 32), (1, 1)))  # 1,024 elements over 64: each read many times


def test_views_of_one_storage_under_many_names_cannot_make_a_giant_network(tmp_path):
    base = torch.randn(256, 256)  # 256 kB of data
    torch.save({f"w{i}": base[i % 2 :] for i in range(40)}, tmp_path / "views.pt")  # 40 names over it: 10 MB of tensors
    with pytest.raises(CheckpointError) as e:
        load_torch_file(tmp_path / "views.pt")
    assert re.fullmatch(r"cannot read views.pt: its tensors add up to [\d,]+ bytes from a file of [\d,]+; they share their data more than any network file does", corrupt(e, "views.pt"))
    torch.save({"w": base, "tied": base}, tmp_path / "tied.pt")  # one tensor under two names (tied weights): read
    assert load_torch_file(tmp_path / "tied.pt")["tied"] is not None
    torch.save({f"w{i}": base for i in range(40)}, tmp_path / "same.pt")  # one tensor under 40 names: refused too
    with pytest.raises(CheckpointError, match="they share their data more than any network file does"):
        load_torch_file(tmp_path / "same.pt")


# ----------------------------------------------------------------------------------------------
# safe_pickle: the recording functions that stand in for the allowed globals


NUMPY_CASES = {
    "array_restored_twice": (op_empty_array() + op_array_state() + b"b" + op_array_state() + b"b", "a numpy array was restored twice"),
    "array_state_not_a_tuple": (op_empty_array() + pf.op_str("state") + b"b", "bad numpy array state"),
    "array_without_dtype": (op_empty_array() + op_array_state(dtype=pf.op_str("<f4")) + b"b", "a numpy array without a dtype"),
    "array_of_objects": (op_empty_array() + op_array_state(raw=b"]") + b"b", "a numpy array whose data is not raw bytes (object arrays are not read)"),
    "array_reconstruct_of_other_class": (op_empty_array(cls=b"N"), "numpy _reconstruct of something other than an ndarray"),
    "dtype_with_subarray": (
        op_dtype() + op_tuple(op_int(3), pf.op_str("<"), op_tuple(op_dtype(), op_tuple(op_int(2))), b"N", b"N", op_int(-1), op_int(-1), op_int(0)) + b"b",
        "unsupported numpy dtype state (only plain numeric dtypes are read)",
    ),
    "dtype_byte_order": (
        op_dtype() + op_tuple(op_int(3), pf.op_str("?"), b"N", b"N", b"N", op_int(-1), op_int(-1), op_int(0)) + b"b",
        "bad numpy byte order '?'",
    ),
    "dtype_object": (op_dtype("O"), "unsupported numpy dtype 'O'"),
    "dtype_of_a_marker": (pf.op_call(pf.op_global("numpy", "dtype"), pf.op_global("numpy", "ndarray")), "unsupported numpy dtype '<numpy.ndarray>'"),
    "scalar_of_wrong_size": (pf.op_call(pf.op_global("numpy._core.multiarray", "scalar"), op_dtype(), pf.op_bytes(b"\0")), "a malformed numpy scalar"),
    "codecs_encode_utf8": (pf.op_call(pf.op_global("_codecs", "encode"), pf.op_str("x"), pf.op_str("utf-8")), "unexpected use of _codecs.encode"),
}  # fmt: skip


@pytest.mark.parametrize("case", NUMPY_CASES)
def test_malformed_numpy_data_in_a_network_pickle_is_one_line_error(tmp_path, case):
    body, said = NUMPY_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(body))
    assert corrupt(e, "bad.pkl") == f"cannot read bad.pkl: {said}"


def test_numpy_dtype_states_of_plain_dtypes_are_read():
    """'|' (no byte order: bytes) and '=' are accepted as they are; only '<' and '>' change the dtype."""
    state = op_tuple(op_int(3), pf.op_str("|"), b"N", b"N", b"N", op_int(-1), op_int(-1), op_int(0))
    body = op_empty_array() + op_array_state(dtype=op_dtype("u1") + state + b"b", raw=pf.op_bytes(b"\x01\x02")) + b"b"
    record = safe_pickle.loads(pf.proto2(body))
    assert record.array.dtype == np.uint8 and record.array.tolist() == [1, 2]


def test_python2_numpy_array_data_as_latin1_text_is_read():
    text = np.array([1.5, -2.0], "<f4").tobytes().decode("latin-1")
    body = op_empty_array() + op_array_state(raw=pf.op_str(text)) + b"b"
    record = safe_pickle.loads(pf.proto2(body))
    assert record.array.tolist() == [1.5, -2.0]


def test_protocol_5_numpy_arrays_with_data_in_band_are_read():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = safe_pickle.loads(pickle.dumps(values, protocol=5))  # numpy._core.numeric._frombuffer
    assert isinstance(record, safe_pickle.ArrayRecord) and np.array_equal(record.array, values)


TF_STATE_CASES = {
    "network_restored_twice": (b"}b}b", "a TensorFlow network was restored twice"),
    "network_state_not_a_dict": (b"]b", "a TensorFlow network without a state dict"),
}


@pytest.mark.parametrize("case", TF_STATE_CASES)
def test_malformed_tensorflow_network_state_is_one_line_error(tmp_path, case):
    build, said = TF_STATE_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(pf.op_call(pf.op_global("dnnlib.tflib.network", "Network")) + build))
    assert corrupt(e, "bad.pkl") == f"cannot read bad.pkl: {said}"


PERSISTENT_CASES = {
    "meta_not_a_dict": ("meta", "a persistent object without its meta dict"),
    "meta_of_a_function": ({"type": "function"}, "unsupported persistent object type 'function'"),
    "meta_class_name_not_text": ({"type": "class", "class_name": 5, "state": {}}, "a persistent object with a malformed meta dict"),
    "meta_state_not_a_dict": ({"type": "class", "class_name": "Generator", "state": [1]}, "a persistent object with a malformed meta dict"),
}


@pytest.mark.parametrize("case", PERSISTENT_CASES)
def test_malformed_persistent_object_is_one_line_error(tmp_path, case):
    meta, said = PERSISTENT_CASES[case]
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, meta)})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: {said}"


@pytest.mark.parametrize(
    "value, shown",
    [
        (torch.ones(2), "TensorRecord([2], torch.float32)"),
        (np.zeros(3, np.float32), "ArrayRecord((3,))"),
        (pf.Persistent("Mystery", {}, ""), "PersistentObject('Mystery')"),
        (pf.Network({"name": "G_mapping", "version": 4}), "TFNetwork('G_mapping', version=4)"),
    ],
    ids=["tensor", "array", "persistent", "tf-network"],
)
def test_records_in_an_error_message_are_named_briefly(tmp_path, value, shown):
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, {"type": value})})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: unsupported persistent object type {shown!r}"


def _typed_storage(t: torch.Tensor):
    return t._typed_storage()


TENSOR_CASES = {
    "negative_size": (lambda: (_typed_storage(torch.ones(2)), 0, (-1,), (1,)), "bad tensor shape"),
    "shape_not_a_tuple": (lambda: (_typed_storage(torch.ones(2)), 0, "ab", (1,)), "bad tensor shape"),
    "no_storage": (lambda: (None, 0, (1,), (1,)), "a tensor without a storage"),
    "strides_do_not_match_shape": (lambda: (_typed_storage(torch.ones(2)), 0, (2,), (1, 1)), "bad tensor layout"),
    "negative_offset": (lambda: (_typed_storage(torch.ones(2)), -1, (1,), (1,)), "bad tensor layout"),
}


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", TENSOR_CASES)
def test_malformed_tensor_is_one_line_error(tmp_path, case):
    make, said = TENSOR_CASES[case]
    tensor = pf.Reduce(torch._utils._rebuild_tensor_v2, *make(), False, OrderedDict())
    e = nvidia_refusal(tmp_path, {"G_ema": tensor})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: {said}"


def test_parameter_of_something_other_than_a_tensor_is_one_line_error(tmp_path):
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(torch._utils._rebuild_parameter, 5, False, OrderedDict())})
    assert corrupt(e, "net.pkl") == "cannot read net.pkl: a parameter without a tensor"


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_empty_tensor_is_rebuilt_without_reading_its_storage():
    record = safe_pickle.loads(pickle.dumps(torch.zeros(0, 3), protocol=4))
    out = record.materialize()
    assert out.shape == (0, 3) and out.dtype == torch.float32


STORAGE_CASES = {
    "persistent_id_not_a_storage": (legacy_stream(("storage", torch.FloatStorage)), "unsupported persistent id in tensor storage bytes"),
    "storage_type_as_text": (legacy_stream(("storage", "FloatStorage", "k", "cpu", 2, None)), "malformed storage id in tensor storage bytes"),
    "negative_numel": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", -1, None)), "unsupported storage view in tensor storage bytes"),
    "storage_view": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, ("v", 0, 1))), "unsupported storage view in tensor storage bytes"),
    "big_endian": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None), little_endian=False), "tensor storage saved on a big-endian machine"),
    "other_keys": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None), keys=("j",)), "tensor storage bytes that hold something other than one storage"),
    "cut_after_keys": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None))[:-12], "truncated tensor storage bytes"),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", STORAGE_CASES)
def test_malformed_tensor_storage_bytes_are_one_line_error(tmp_path, case):
    stream, said = STORAGE_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, storage_call(stream))
    assert corrupt(e, "bad.pkl").startswith(f"cannot read bad.pkl: {said}")


def test_tensor_storage_given_as_text_is_one_line_error(tmp_path):
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(pf.op_call(pf.op_global("torch.storage", "_load_from_bytes"), pf.op_str("abc"))))
    assert corrupt(e, "bad.pkl") == "cannot read bad.pkl: tensor storage that is not bytes"


def test_negative_length_field_is_one_line_error(tmp_path):
    e = nvidia_bytes_refusal(tmp_path, b"\x80\x02T\xff\xff\xff\xff.")  # BINSTRING of -1 bytes
    assert corrupt(e, "bad.pkl") == "cannot read bad.pkl: a negative length at byte 7"


def test_file_that_shrinks_while_being_scanned_is_one_line_error():
    """Only a file cut short during the read gets here: the scan's end is the size fstat reported."""
    with pytest.raises(CheckpointError) as e:
        safe_pickle.scan(io.BytesIO(b"\x80\x02J\x01\x00"), 0, 100, "cut.pkl", safe_pickle.PLAIN_DATA)
    assert corrupt(e, "cut.pkl").startswith("cannot read cut.pkl: the file is truncated or corrupt")


# ----------------------------------------------------------------------------------------------
# nvidia: PyTorch network pickles


def test_modules_nested_deeper_than_any_generator_are_refused(tmp_path):
    leaf = pf.Persistent("Leaf", {}, "")
    for i in range(17):
        leaf = pf.Persistent(f"M{i}", {"_modules": {"c": leaf}}, "")
    snap = snapshot()
    module(snap).state["_modules"]["deep"] = leaf
    e = nvidia_refusal(tmp_path, snap)
    assert corrupt(e, "net.pkl") == "net.pkl: modules nested deeper or more numerous than in any generator"


def test_module_held_twice_is_refused(tmp_path):
    snap = snapshot()
    module(snap).state["_modules"]["again"] = module(snap, "mapping")
    e = nvidia_refusal(tmp_path, snap)
    assert corrupt(e, "net.pkl").startswith("net.pkl: module ") and "is another module over again" in str(e.value)


@pytest.mark.parametrize(
    "where, key, value, said",
    [
        ("mapping", "_modules", [1], "net.pkl: module mapping has malformed submodules"),
        ("mapping", "_parameters", [1], "net.pkl: module mapping has malformed _parameters"),
        ("", "_buffers", "w", "net.pkl: module G_ema has malformed _buffers"),
    ],
)
def test_malformed_module_containers_are_refused(tmp_path, where, key, value, said):
    snap = snapshot()
    module(snap, where).state[key] = value
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == said


def test_submodule_that_is_not_a_module_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping").state["_modules"]["fc9"] = 7
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: submodule mapping.fc9 is not an NVIDIA persistent module (an int)"


def test_parameter_that_is_not_a_tensor_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping.fc0").state["_parameters"]["weight"] = 0.5
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: mapping.fc0.weight is not a tensor (a float)"


def test_empty_submodule_slots_are_skipped(tmp_path):
    snap = snapshot()
    module(snap).state["_modules"]["unused"] = None  # torch keeps None for a submodule set to None
    snap["training_set_kwargs"] = None
    raw = read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl"))
    assert raw.format == "nvidia-pytorch" and "training_set_kwargs" not in raw.info


def test_training_facts_keep_only_short_plain_values(tmp_path):
    snap = snapshot()
    snap["training_set_kwargs"] = pf.EasyDict(path="/data/x.zip", nested={"a": 1}, long="x" * 300, sizes=[1, 2])
    raw = read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl"))
    assert raw.info["training_set_kwargs"] == {"path": "/data/x.zip", "sizes": [1, 2]}


def test_missing_generator_attribute_is_refused(tmp_path):
    snap = snapshot()
    del module(snap).state["z_dim"]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: G_ema has no attribute 'z_dim'"


def test_missing_tensor_the_config_needs_is_refused(tmp_path):
    snap = snapshot()
    del module(snap, "mapping.fc0").state["_parameters"]["weight"]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: tensor mapping.fc0.weight is missing"


@pytest.mark.parametrize(
    "value, said",
    [("16", "z_dim is '16', not an integer >= 1"), ([16], "z_dim is a list, not an integer >= 1"), (0, "z_dim is 0, not an integer >= 1")],
)
def test_generator_setting_that_is_not_an_integer_is_refused(tmp_path, value, said):
    snap = snapshot()
    module(snap).state["z_dim"] = value
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == f"net.pkl: {said}"


def test_mapping_learning_rate_that_is_not_a_number_is_refused(tmp_path):
    snap = snapshot()
    for i in range(2):
        module(snap, f"mapping.fc{i}").state["bias_gain"] = float("nan")
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: mapping.fc0.bias_gain is nan, not a number"


def test_misnumbered_mapping_layers_are_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping").state["num_layers"] = 3
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: the mapping network's layers are missing or misnumbered"


def test_synthesis_blocks_that_do_not_match_the_resolution_are_refused(tmp_path):
    snap = snapshot()
    module(snap).state["img_resolution"] = 32
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: the synthesis blocks do not match img_resolution=32"


def test_activation_other_than_lrelu_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "synthesis.b8.conv1").state["activation"] = "relu"
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: activations ['lrelu', 'relu'] are not supported (only lrelu)"


def test_unhashable_setting_is_one_line_error(tmp_path):
    snap = snapshot()
    module(snap, "synthesis.b8.conv1").state["activation"] = ["lrelu"]
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text == "net.pkl: unexpected network layout (TypeError: unhashable type: 'list')"


def test_unexpected_extra_weight_is_reported(tmp_path):
    snap = snapshot()
    module(snap, "mapping.fc0").state["_parameters"]["scale"] = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text == "net.pkl: the weights do not fit a StyleGAN2 generator: unexpected mapping.fc0.scale"


def test_resample_filter_from_the_settings_is_checked(tmp_path):
    snap = snapshot()
    module(snap).state["_init_kwargs"]["synthesis_kwargs"]["resample_filter"] = [1, "3", 3, 1]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: a resample_filter tap is '3', not an integer >= 0"


def test_resample_filter_from_the_settings_is_used(tmp_path):
    snap = snapshot(resample_filter=(1, 2, 1))
    module(snap).state["_init_kwargs"]["synthesis_kwargs"]["resample_filter"] = [1, 2, 1]
    for block in ("b4", "b8", "b16"):  # no stored kernel: the settings alone say
        del module(snap, f"synthesis.{block}").state["_buffers"]["resample_filter"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.resample_filter == (1, 2, 1)


def test_missing_resample_filter_means_nvidias_default(tmp_path):
    snap = snapshot()
    del module(snap, "synthesis.b4").state["_buffers"]["resample_filter"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.resample_filter == (1, 3, 3, 1)


def test_fp16_layers_are_counted_when_the_settings_do_not_say(tmp_path):
    snap = snapshot(num_fp16_res=2)
    del module(snap).state["_init_kwargs"]["synthesis_kwargs"]["num_fp16_res"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.num_fp16_res == 2


def test_conv_clamp_that_is_not_a_number_is_refused(tmp_path):
    snap = snapshot(conv_clamp=256)
    for name in ("b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb"):
        module(snap, f"synthesis.{name}").state["conv_clamp"] = "big"
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: conv_clamp is 'big', not a number"


def test_unknown_architecture_is_refused(tmp_path):
    snap = snapshot()
    for block in ("b4", "b8", "b16"):
        module(snap, f"synthesis.{block}").state["architecture"] = "wavelet"
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text.startswith("net.pkl: unsupported generator settings (architecture must be one of") and "'wavelet'" in text


# ----------------------------------------------------------------------------------------------
# nvidia: TensorFlow network pickles


@pytest.mark.parametrize(
    "change, said",
    [
        (dict(version=6), "TensorFlow network version 6 is not supported (4 and 5 are)"),
        (dict(static_kwargs=None), "the TensorFlow network Gs has no static_kwargs or components"),
        (dict(components=[]), "the TensorFlow network Gs has no static_kwargs or components"),
    ],
    ids=["version", "no-kwargs", "components-list"],
)
def test_malformed_tensorflow_gs_is_refused(tmp_path, change, said):
    nets = tf_networks()
    nets[2]._state.update(change)
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"


@pytest.mark.parametrize(
    "setting, said",
    [
        (dict(mapping_func="G_mapping_v2"), "TensorFlow mapping network 'G_mapping_v2' is not supported"),
        (dict(normalize_latents=False), "networks without latent normalisation are not supported"),
        (dict(nonlinearity="relu"), "activations ['lrelu', 'relu'] are not supported (only lrelu)"),
        (dict(label_size=3), "a conditional network (label_size=3) without a label embedding"),
        (dict(latent_size=11), "latent_size does not match the mapping network's weights"),
        (dict(resolution=24), "resolution 24 is not a power of two"),
        (dict(resolution=32), "the synthesis variables do not match resolution=32"),
        (dict(use_noise=False), "use_noise=False does not match the network's variables"),
        (dict(resample_kernel="1331"), "bad resample_kernel '1331'"),
        (dict(resample_kernel=[]), "bad resample_kernel a list"),
        (dict(conv_clamp="big"), "conv_clamp is 'big', not a number"),
        (dict(mapping_lrmul=0.0), "unsupported generator settings (mapping_lr_multiplier must be a number above 0"),
        (dict(label_size=-1), "label_size is -1, not an integer >= 0"),
    ],
    ids=lambda x: "-".join(map(str, x)) if isinstance(x, dict) else None,
)
def test_tensorflow_settings_that_do_not_fit_are_refused(tmp_path, setting, said):
    nets = tf_networks()
    gs_kwargs(nets).update(setting)
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith(f"net.pkl: {said}"), text


@pytest.mark.parametrize(
    "component, change, said",
    [
        ("mapping", lambda v: [v.pop(k) for k in list(v) if k.startswith("Dense")], "the TensorFlow mapping network has no Dense layers"),
        ("synthesis", lambda v: v.pop("4x4/Const/const"), "TensorFlow variable synthesis/4x4/Const/const is missing"),
        ("synthesis", lambda v: v.update({"4x4/Const/const": np.zeros([1, 7, 4, 4], np.float32)}), "a constant input of 7 channels feeding 12"),
        ("synthesis", lambda v: v.update(lod=np.float32(0)), "a progressive-growing StyleGAN2 network (configs A-D) is not supported"),
        ("synthesis", lambda v: v.update({"4x4/Conv/bias": "zeros"}), "TensorFlow variable synthesis/4x4/Conv/bias is not an array"),
        ("synthesis", lambda v: v.update({"4x4/ToRGB/bias": v["4x4/Conv/bias"]}), "TensorFlow variables "),  # one array, pickled once, under two names
    ],
    ids=["no-dense", "no-const", "const-width", "lod", "text-variable", "shared-array"],
)
def test_tensorflow_variables_that_do_not_fit_are_refused(tmp_path, component, change, said):
    nets = tf_networks()
    edit_variables(nets, component, change)
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith(f"net.pkl: {said}"), text


@pytest.mark.parametrize(
    "variables, said",
    [
        ({"a": 1}, "malformed variables in TensorFlow network mapping/"),
        ([("Dense0/weight", np.zeros([2, 2], np.float32), "extra")], "malformed variable in TensorFlow network mapping/"),
        ([(0, np.zeros([2, 2], np.float32))], "malformed variable in TensorFlow network mapping/"),
    ],
    ids=["dict", "triple", "unnamed"],
)
def test_malformed_tensorflow_variable_lists_are_refused(tmp_path, variables, said):
    nets = tf_networks()
    nets[2]._state["components"]["mapping"]._state["variables"] = variables
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"


def test_tensorflow_array_never_filled_is_not_an_array(tmp_path):
    nets = tf_networks()  # an ArrayRecord stays empty when `_reconstruct` is not followed by its BUILD
    nets[2]._state["variables"].append(("lod2", pf.Reduce(pf._legacy_reconstruct, np.ndarray, (0,), b"b")))
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text == "net.pkl: TensorFlow variable lod2 is not an array"


def test_tensorflow_components_nested_too_deep_are_refused(tmp_path):
    nets = tf_networks()
    inner = pf.tf_network("leaf", "f", {}, {})
    for i in range(5):
        inner = pf.tf_network(f"n{i}", "f", {}, {}, components={"c": inner})
    nets[2]._state["components"]["extra"] = inner
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text == "net.pkl: TensorFlow networks nested deeper than StyleGAN2's"


def test_tensorflow_component_held_twice_is_refused(tmp_path):
    nets = tf_networks()
    nets[2]._state["components"]["again"] = nets[2]._state["components"]["mapping"]
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith("net.pkl: TensorFlow network ") and text.endswith("is another component over again")


@pytest.mark.parametrize("key, value, said", [("extra", 5, "malformed component 'extra' of TensorFlow network Gs"), (7, None, "malformed component 7 of TensorFlow network Gs")])
def test_tensorflow_component_that_is_not_a_network_is_refused(tmp_path, key, value, said):
    nets = tf_networks()
    nets[2]._state["components"][key] = value if value is not None else nets[2]._state["components"]["mapping"]
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"


# ----------------------------------------------------------------------------------------------
# Exponentially large values: x = (x, x) 60 times over is 60 small tuples in a pickle and 2**60
# leaves to hash or print. The readers look settings up in sets and print them in messages, so the
# scan refuses such a value before anything is built.


def _shared_tuple(leaf, depth: int = 60):
    x = leaf
    for _ in range(depth):
        x = (x, x)
    return x


@pytest.mark.parametrize("setting", ["synthesis_func", "mapping_func", "architecture"])
def test_shared_tuple_setting_is_refused_before_anything_walks_it(tmp_path, setting):
    nets = tf_networks()
    gs_kwargs(nets)[setting] = _shared_tuple(np.zeros(1, np.float32))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        read_nvidia_pickle(pf.dump(nets, tmp_path / "net.pkl", protocol=3))
    assert time.perf_counter() - start < 5


def test_shared_tuple_persistent_type_is_refused_before_anything_walks_it(tmp_path):
    meta = {"type": _shared_tuple(np.zeros(1, np.float32))}
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        read_nvidia_pickle(pf.dump({"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, meta)}, tmp_path / "net.pkl"))


def test_a_value_shared_within_the_limit_is_read():
    """Sharing itself is fine (real files refer to one string or tensor many times); the limit is
    on the items a walk would visit: 2**20 here, 2**26 over it."""
    value = safe_pickle.loads(pickle.dumps(_shared_tuple("x", depth=20), protocol=2), allow=safe_pickle.PLAIN_DATA)
    assert value == _shared_tuple("x", depth=20)
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        safe_pickle.loads(pickle.dumps(_shared_tuple("x", depth=26), protocol=2), allow=safe_pickle.PLAIN_DATA)
