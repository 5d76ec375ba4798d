"""Reading `torch.save` files a user hands in: checked before `torch.load(weights_only=True)` sees them.

`torch.load(weights_only=True)` runs no code, but its unpickler still builds whatever containers
the pickle describes, hashes their keys and allocates the storages it declares. So first:
- a zip-format file (torch >= 1.6) must look like torch.save's: every entry stored, not compressed
  or encrypted (a compressed entry could inflate far beyond the file, a zip bomb, and a
  memory-mapped load would read its compressed bytes as the values), the entries together no
  larger than the file, one `data.pkl`;
- its pickle (or the five pickles of a legacy file) is scanned by `safe_pickle.scan` against an
  allow-list, which also refuses the keys and set members whose hashing could hang.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, StyleliftError, first_line
from . import safe_pickle
from .safe_pickle import AllowList

# What torch.save writes for tensors and plain containers.
TORCH_SAVE_PICKLE = AllowList(
    globals={
        **{("torch", name): None for name in safe_pickle.TORCH_STORAGE_TYPES},
        ("torch._utils", "_rebuild_tensor"): None,  # torch <= 0.3 files (torchvision's older weights)
        ("torch._utils", "_rebuild_tensor_v2"): None,
        ("torch._utils", "_rebuild_parameter"): None,
        ("torch._utils", "_rebuild_parameter_with_state"): None,
        ("torch", "UntypedStorage"): None,
        ("torch._utils", "_rebuild_tensor_v3"): None,
        **{("torch", str(dtype).removeprefix("torch.")): None for dtype in safe_pickle.TORCH_STORAGE_TYPES.values()},
        ("torch", "Size"): None,
        ("torch", "device"): None,
        ("collections", "OrderedDict"): None,
        ("builtins", "set"): None,
        ("builtins", "frozenset"): None,
        ("__builtin__", "set"): None,  # protocol 2 (torch.save's) keeps Python 2's module names
        ("__builtin__", "frozenset"): None,
        ("_codecs", "encode"): None,
    },
    # Module.state_dict() returns an OrderedDict carrying `_metadata` (BUILD with that attribute).
    buildable=frozenset({("collections", "OrderedDict")}),
    dict_like=frozenset({("collections", "OrderedDict")}),
    persistent_ids=True,
)


def load_torch_file(path: Path, *, allow: AllowList = TORCH_SAVE_PICKLE, safe_globals: tuple = ()) -> Any:
    """Check, scan and `torch.load(weights_only=True)` a file; every failure is one CheckpointError
    line (FileNotFoundError when it is missing). `safe_globals`: classes torch.load may also build,
    each of which `allow` must name."""
    path = Path(path)
    source = path.name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"cannot read {source}: {e.strerror or e}") from None
    if size == 0:
        raise CheckpointError(f"cannot read {source}: the file is empty")
    try:
        is_zip = zipfile.is_zipfile(path)
        if is_zip:
            data = read_zip_pickle(path, source)
            if data[:1] == b"\x80" and data[1:2] > b"\x03":  # torch.save(..., pickle_protocol=4)
                raise CheckpointError(f"cannot read {source}: saved with pickle protocol {data[1]}, which torch's safe loader does not read; save it again with torch.save's default protocol")
            check_storage_entries(path, source, safe_pickle.scan_storages(data, source, allow))
        else:  # legacy: magic number, protocol version, system info, the data, the storage keys
            with open(path, "rb") as f:
                head = f.read(4)
                if head.startswith(b"PK"):
                    raise CheckpointError(f"cannot read {source}: a damaged zip archive (cut short?)")
                if head[:1] != b"\x80":  # torch.save's pickles (protocol 2 and later) begin with a protocol byte
                    raise CheckpointError(f"cannot read {source}: not a torch file stylelift reads (neither a zip archive nor a pickle of protocol 2 or later)")
                f.seek(0)
                pos = 0
                for part in (safe_pickle.PLAIN_DATA, safe_pickle.PLAIN_DATA, safe_pickle.PLAIN_DATA, allow, safe_pickle.PLAIN_DATA):
                    pos = safe_pickle.scan(f, pos, size, source, part)
    except StyleliftError:
        raise
    except OSError as e:
        raise CheckpointError(f"cannot read {source}: {e.strerror or e}") from None
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on the file's pickle protocol and the like: not for our users
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        module, _, name = found.group(1).rpartition(".") if found else ("", "", "")
        if found and (module or "builtins", name) in allow.globals:  # data, not code, but torch does not rebuild it
            raise CheckpointError(f"cannot read {source}: it holds a {name}, which torch's safe loader does not read") from None
        if found:
            raise safe_pickle.refusal(source, found.group(1)) from None
        why = re.search(r"WeightsUnpickler error: (.*)", str(e))  # not torch's first line, which advises weights_only=False
        raise CheckpointError(f"cannot read {source}: torch's safe loader refused it ({why.group(1)[:200] if why else type(e).__name__})") from None
    except Exception as e:  # torch raises many types on corrupt input; report them as one line
        raise CheckpointError(f"cannot read {source}: not a readable torch file ({type(e).__name__}: {first_line(e)})") from None


def check_storage_entries(path: Path, source: str, storages: list) -> None:
    """Every storage the pickle names has its entry data/<key>, holding at least the bytes it declares:
    a memory-mapped torch.load reads a short entry on into the entries after it, silently."""
    with zipfile.ZipFile(path) as zf:
        sizes = {name.partition("/data/")[2]: info.file_size for info in zf.infolist() if "/data/" in (name := info.filename)}
    for storage in storages:
        if storage is None:
            raise CheckpointError(f"cannot read {source}: its pickle refers to something other than a tensor storage, which torch.save never writes")
        kind = storage.storage_type[1]
        itemsize = 1 if kind == "UntypedStorage" else safe_pickle.TORCH_STORAGE_TYPES[kind].itemsize if kind in safe_pickle.TORCH_STORAGE_TYPES else None
        if itemsize is None:
            raise CheckpointError(f"cannot read {source}: a storage of type {'.'.join(storage.storage_type)[:60]}")
        if storage.key not in sizes:
            raise CheckpointError(f"cannot read {source}: the data of storage {storage.key[:40]!r} is missing (a damaged file?)")
        if sizes[storage.key] < storage.numel * itemsize:
            raise CheckpointError(f"cannot read {source}: storage {storage.key[:40]!r} holds {sizes[storage.key]:,} bytes where it needs {storage.numel * itemsize:,} (cut short?)")


def read_zip_pickle(path: Path, source: str) -> bytes:
    """The bytes of the zip's `data.pkl`, after checking every entry as above."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            odd = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED or i.flag_bits & 0x1]
            if odd:
                raise CheckpointError(f"cannot read {source}: its entry {odd[0][:60]!r} is compressed or encrypted, which torch.save never does")
            if sum(i.file_size for i in infos) > size:
                raise CheckpointError(f"cannot read {source}: its entries claim to be larger than the file")
            names = [i.filename for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
            if len(names) != 1:
                raise CheckpointError(f"cannot read {source}: a zip file, but not one torch.save wrote")
            return zf.read(names[0])
    except CheckpointError:
        raise
    except Exception as e:  # zipfile raises many types on damaged archives (BadZipFile, EOFError, ValueError, ...)
        lines = str(e).strip().splitlines()
        raise CheckpointError(f"cannot read {source}: a damaged zip file ({type(e).__name__}: {lines[0][:120] if lines else ''})") from None


def check_storage_extent(source: str, name: str, tensor: Tensor) -> None:
    """Refuse a tensor that reaches past its storage or repeats it with zero strides (a 4-byte
    storage viewed as 40,000 x 40,000), before anything copies it."""
    if tensor.numel() == 0:
        return
    extent = tensor.storage_offset() + 1 + sum((n - 1) * abs(s) for n, s in zip(tensor.shape, tensor.stride()))
    dense = all(s != 0 for n, s in zip(tensor.shape, tensor.stride()) if n > 1)
    if not dense or extent * tensor.element_size() > tensor.untyped_storage().nbytes():
        raise CheckpointError(f"{source}: tensor {name[:80]} is not a plain array over its own data (shape {list(tensor.shape)}, strides {list(tensor.stride())})")
