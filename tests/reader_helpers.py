"""Helpers for the tests of the checkpoint readers' defensive branches: crafting damaged files and
checking that each gives one line of CheckpointError."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import pickle_fixtures as pf
import pytest
import torch

from stylelift.errors import CheckpointError, UnsafeCheckpointError
from stylelift.models import safe_pickle
from stylelift.models.nvidia import read_nvidia_pickle


def one_line(e: pytest.ExceptionInfo, name: str) -> str:
    text = str(e.value)
    assert "\n" not in text and name in text, text
    return text


def corrupt(e: pytest.ExceptionInfo, name: str) -> str:
    """A CheckpointError that is not a refusal as code, of one line naming the file."""
    assert isinstance(e.value, CheckpointError) and not isinstance(e.value, UnsafeCheckpointError), repr(e.value)
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


