"""The defensive branches of the torch file readers (torch.save archives and legacy files), each
reached by a crafted file.

Every bad file must give one line of CheckpointError (UnsafeCheckpointError where it names code),
never a traceback, never a silent misreading, never a hang.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)
from reader_helpers import corrupt, op_tuple, rewrite_zip, rosinality_file

from stylelift.errors import CheckpointError
from stylelift.models import safe_pickle
from stylelift.models.rosinality import read_rosinality
from stylelift.models.torch_files import check_storage_extent, load_torch_file

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


def test_a_zip_with_two_entries_of_one_name_is_refused(tmp_path):
    """torch reads the first of two data/0 entries, the size and CRC checks saw the last: a short
    copy before the real one loaded zip header bytes as weights."""
    torch.save({"x": torch.arange(64.0)}, tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as zin, zipfile.ZipFile(tmp_path / "twice.pt", "w") as zout, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                zout.writestr(info.filename, zin.read(info)[:4])
            zout.writestr(info.filename, zin.read(info))
    with pytest.raises(CheckpointError) as e:
        load_torch_file(tmp_path / "twice.pt")
    assert re.fullmatch(r"cannot read twice.pt: it holds two entries named '\w+/data/0', which torch.save never writes", corrupt(e, "twice.pt"))


def test_a_zip_that_changes_between_its_checks_is_one_line(tmp_path, monkeypatch):
    from stylelift.models import torch_files

    torch.save({"x": torch.arange(64.0)}, tmp_path / "net.pt")
    read = torch_files.read_zip_pickle

    def then_cut_short(path, source):  # a copy still being written: whole when first read, not when read again
        data = read(path, source)
        path.write_bytes(path.read_bytes()[:100])
        return data

    monkeypatch.setattr(torch_files, "read_zip_pickle", then_cut_short)
    with pytest.raises(CheckpointError) as e:  # was zipfile's BadZipFile, a traceback
        load_torch_file(tmp_path / "net.pt")
    assert corrupt(e, "net.pt").startswith("cannot read net.pt: a damaged zip file (") and "still being written?" in str(e.value)


def test_a_tensor_entry_with_damaged_bytes_is_refused_not_read_as_other_weights(tmp_path):
    """A memory-mapped torch.load never checks an entry's CRC-32: zeroed bytes in the middle of a
    file loaded as other weights, without a word."""
    torch.save({"x": torch.arange(4096.0)}, tmp_path / "ok.pt")
    data = bytearray((tmp_path / "ok.pt").read_bytes())
    start = data.index(struct.pack("<4f", 1000.0, 1001.0, 1002.0, 1003.0))
    for name, fill in (("zeroed.pt", 0), ("filled.pt", 0x7F)):
        damaged = bytearray(data)
        damaged[start : start + 64] = bytes([fill]) * 64
        (tmp_path / name).write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError) as e:
            load_torch_file(tmp_path / name)
        assert re.fullmatch(rf"cannot read {name}: its entry '\w+/data/0' is damaged \(Bad CRC-32 for file '\w+/data/0'\)", corrupt(e, name))
    assert torch.equal(load_torch_file(tmp_path / "ok.pt")["x"], torch.arange(4096.0))


def test_a_file_saved_without_crcs_is_told_so_not_called_damaged(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"x": torch.ones(3)}, tmp_path / "nocrc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    with pytest.raises(CheckpointError) as e:
        load_torch_file(tmp_path / "nocrc.pt")
    assert corrupt(e, "nocrc.pt") == "cannot read nocrc.pt: it was saved without CRC-32s (torch.serialization.set_crc32_options(False)), which stylelift checks each tensor by; save it again with them"


def test_a_zip_whose_end_record_says_it_spans_disks_is_damaged_not_a_traceback(tmp_path):
    """zipfile.is_zipfile itself raised BadZipFile for it: a traceback from `encoder run --encoder`."""
    from stylelift import InputError, load_latents

    torch.save({"x": torch.ones(3)}, tmp_path / "ok.pt")
    np_file = tmp_path / "l.npz"
    np.savez(np_file, w=np.zeros([1, 2, 3], np.float32))
    for path in (tmp_path / "ok.pt", np_file):
        data = bytearray(path.read_bytes())
        end = data.rindex(b"PK\x05\x06")
        data[end - 20 : end] = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 2)  # a zip64 locator: 2 disks
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"^cannot read ok.pt: a damaged zip file \(BadZipFile: zipfiles that span multiple disks"):
        load_torch_file(tmp_path / "ok.pt")
    with pytest.raises(InputError, match=r"^l.npz is not a readable .npz latent file \(zipfiles that span multiple disks"):
        load_latents(np_file)


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


def test_only_a_real_protocol_4_or_5_head_is_called_unsupported_rather_than_damaged():
    """A downloaded file refused as unsupported is kept in the cache, so a damaged protocol byte must not pass for one."""
    from stylelift.errors import UnsupportedNetworkError
    from stylelift.models.torch_files import check_protocol

    for head in (b"\x80\x04\x95", b"\x80\x05\x95"):  # PROTO 4/5, then the FRAME pickle always writes there
        with pytest.raises(UnsupportedNetworkError, match="saved with pickle protocol"):
            check_protocol("x.pt", head)
    for head in (b"\x80\x04\x8a", b"\x80\x07\x95", b"\x80\xff\x8a"):  # a protocol 2 head with its second byte damaged
        with pytest.raises(CheckpointError) as e:
            check_protocol("x.pt", head)
        assert not isinstance(e.value, UnsupportedNetworkError)
    check_protocol("x.pt", b"\x80\x02\x8a")  # protocol 2: read on
