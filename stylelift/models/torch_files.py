"""Reading `torch.save` files a user hands in, checked before `torch.load(weights_only=True)` sees
them, and writing stylelift's own.

`torch.load(weights_only=True)` runs no code, but its unpickler still builds whatever containers
the pickle describes, hashes their keys and allocates the storages it declares. So first:
- a zip-format file (torch >= 1.6) must look like torch.save's: every entry stored, not compressed
  or encrypted (a compressed entry could inflate far beyond the file, a zip bomb, and a
  memory-mapped load would read its compressed bytes as the values), the entries together no
  larger than the file, one `data.pkl`, each tensor's entry whole (its CRC-32 checked: a
  memory-mapped torch.load never checks it, and a damaged entry would load as wrong weights);
- its pickle (or the five pickles of a legacy file) is scanned by `safe_pickle.scan` against an
  allow-list, which also refuses the keys and set members whose hashing could hang.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, UnsupportedNetworkError, StyleliftError, first_line
from ..fileio import atomic_path, looks_like_zip, special_file
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
    if special_file(path):  # a named pipe: it would be waited on forever (its size says 0)
        raise CheckpointError(f"{source} is not a regular file")
    if size == 0:
        raise CheckpointError(f"cannot read {source}: the file is empty")
    try:
        is_zip = looks_like_zip(path)
        if is_zip:
            data = read_zip_pickle(path, source)
            check_protocol(source, data[:3])
            stop, storages = safe_pickle.scan_storages(io.BytesIO(data), 0, len(data), source, allow)
            if stop != len(data) or any(s is not None and s.view is not None for s in storages):
                raise CheckpointError(f"cannot read {source}: its data.pkl is not one pickle as torch.save writes it")
            check_storage_entries(path, source, storages)
        else:  # legacy: magic number, protocol version, system info, the data, the storage keys, then each storage
            with open(path, "rb") as f:
                head = f.read(4)
                if head.startswith(b"PK"):
                    raise CheckpointError(f"cannot read {source}: a damaged zip archive (cut short?)")
                if head[:1] != b"\x80":  # torch.save's pickles (protocol 2 and later) begin with a protocol byte
                    raise CheckpointError(f"cannot read {source}: not a torch file stylelift reads (neither a zip archive nor a pickle of protocol 2 or later)")
                check_protocol(source, head[:3])
                check_legacy_file(f, size, source, allow)
    except StyleliftError:
        raise
    except OSError as e:
        raise CheckpointError(f"cannot read {source}: {e.strerror or e}") from None
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on the file's pickle protocol and the like: not for our users
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        module, _, name = found.group(1).rpartition(".") if found else ("", "", "")
        if found and (module or "builtins", name) in allow.globals:  # data, not code, but torch does not rebuild it
            raise CheckpointError(f"cannot read {source}: it holds a {name}, which torch's safe loader does not read") from None
        if found:
            raise safe_pickle.refusal(source, found.group(1)) from None
        why = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))  # not torch's first line, which advises weights_only=False
        raise CheckpointError(f"cannot read {source}: torch's safe loader refused it ({why.group(1)[:200] if why else type(e).__name__})") from None
    except Exception as e:  # torch raises many types on corrupt input; report them as one line
        if "wrong byte size" in str(e):  # a legacy file's tensor view larger than its storage; torch's message is unformatted
            raise CheckpointError(f"cannot read {source}: a tensor reaches past its storage (a damaged file?)") from None
        raise CheckpointError(f"cannot read {source}: not a readable torch file ({type(e).__name__}: {first_line(e)})") from None
    check_tensor_bytes(source, data, size)
    return data


def check_tensor_bytes(source: str, data: Any, file_size: int) -> None:
    """Refuse tensors that add up to more than twice the file (+1 MB): each tensor has its own data in
    a network file, or shares it with one other (tied weights); views of one storage, or one tensor,
    under many names would make a small file a giant network (each name becomes its own weights)."""
    total, seen, todo = 0, set(), [data]
    while todo:
        x = todo.pop()
        if isinstance(x, Tensor):
            total += x.numel() * x.element_size()  # every name it appears under
            continue
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
    if total > 2 * file_size + (1 << 20):
        raise CheckpointError(f"cannot read {source}: its tensors add up to {total:,} bytes from a file of {file_size:,}; they share their data more than any network file does")


def check_protocol(source: str, head: bytes) -> None:
    if head[1:2] > b"\x03":  # torch.save(..., pickle_protocol=4): FRAME opcodes, which torch's weights-only unpickler refuses
        whole = head[:1] == b"\x80" and head[1:2] in (b"\x04", b"\x05") and head[2:3] == b"\x95"  # a real one starts with its FRAME; else a damaged byte
        raise (UnsupportedNetworkError if whole else CheckpointError)(f"cannot read {source}: saved with pickle protocol {head[1]}, which torch's safe loader does not read; save it again with torch.save's default protocol")


def _itemsize(source: str, storage_type: tuple[str, str]) -> int:
    """Bytes per element of a storage type named in a persistent id, e.g. ("torch", "FloatStorage")."""
    kind = storage_type[1]
    if kind == "UntypedStorage":
        return 1
    if kind not in safe_pickle.TORCH_STORAGE_TYPES:
        raise CheckpointError(f"cannot read {source}: a storage of type {'.'.join(storage_type)[:60]}")
    return safe_pickle.TORCH_STORAGE_TYPES[kind].itemsize


def check_legacy_file(f, size: int, source: str, allow: AllowList) -> None:
    """A legacy torch.save file, before torch.load sees it: its pickles scanned, and every storage its
    tensors name listed once and stored whole after them, with the size they declare. torch fills only
    the storages the list names (an unlisted one keeps whatever memory it was given, and may be
    declared as large as anyone likes), puts each listed key's data where the key says, and reports
    a wrong size with an unformatted message."""
    magic, pos = safe_pickle.load_plain(f, 0, size, source)
    version, pos = safe_pickle.load_plain(f, pos, size, source)
    sys_info, pos = safe_pickle.load_plain(f, pos, size, source)
    if magic != safe_pickle.TORCH_LEGACY_MAGIC or version != safe_pickle.TORCH_LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise CheckpointError(f"cannot read {source}: not a torch file stylelift reads (a pickle, but not torch.save's header)")
    if sys_info.get("little_endian") is not True:
        raise CheckpointError(f"cannot read {source}: saved on a big-endian machine (not supported)")
    pos, storages = safe_pickle.scan_storages(f, pos, size, source, allow)
    keys, pos = safe_pickle.load_plain(f, pos, size, source)
    declared: dict[str, tuple] = {}
    for storage in storages:
        if storage is None:
            raise CheckpointError(f"cannot read {source}: its pickle refers to something other than a tensor storage, which torch.save never writes")
        if declared.setdefault(storage.key, (storage.storage_type, storage.numel)) != (storage.storage_type, storage.numel):
            raise CheckpointError(f"cannot read {source}: storage {storage.key[:40]!r} is declared twice, with different types or sizes")
        if storage.view is not None and storage.view[0] + storage.view[1] > storage.numel:
            raise CheckpointError(f"cannot read {source}: a view of storage {storage.key[:40]!r} reaches past its end")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys) or set(keys) != set(declared):
        raise CheckpointError(f"cannot read {source}: its list of stored tensors does not match the tensors it holds (a damaged file?)")
    if keys != sorted(keys):  # every torch.save sorts them; out of order, two storages of one size would trade data
        raise CheckpointError(f"cannot read {source}: its stored tensors are not in the order torch.save writes them (a damaged file?)")
    for key in keys:  # each: an int64 element count, then the elements
        f.seek(pos)
        header = f.read(8)
        kind, numel = declared[key]
        if len(header) < 8:
            raise CheckpointError(f"cannot read {source}: the file is cut short (the data of storage {key[:40]!r} is missing)")
        if int.from_bytes(header, "little", signed=True) != numel:
            raise CheckpointError(f"cannot read {source}: storage {key[:40]!r} says it holds {int.from_bytes(header, 'little', signed=True)} elements where its tensors say {numel} (a damaged file?)")
        pos += 8 + numel * _itemsize(source, kind)
        if pos > size:
            raise CheckpointError(f"cannot read {source}: the file is cut short (in the data of storage {key[:40]!r})")


def check_storage_entries(path: Path, source: str, storages: list) -> None:
    """Every storage the pickle names has its entry data/<key>, holding at least the bytes it declares
    (a memory-mapped torch.load reads a short entry on into the entries after it, silently), and
    every entry's bytes match its CRC-32 (about 0.1 s per 400 MB)."""
    try:
        zf = zipfile.ZipFile(path)  # again: the file may have changed since read_zip_pickle read it (a copy still being written)
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read {source}: a damaged zip file ({first_line(e)}; is it still being written?)") from None
    with zf:
        infos = zf.infolist()
        sizes = {name.partition("/data/")[2]: info.file_size for info in infos if "/data/" in (name := info.filename)}
        for info in infos:
            try:
                with zf.open(info) as entry:  # zipfile checks the CRC-32 once the entry is read to its end
                    while entry.read(1 << 24):
                        pass
            except (zipfile.BadZipFile, EOFError, ValueError) as e:
                raise CheckpointError(f"cannot read {source}: its entry {info.filename[:60]!r} is damaged ({first_line(e)})") from None
    for storage in storages:
        if storage is None:
            raise CheckpointError(f"cannot read {source}: its pickle refers to something other than a tensor storage, which torch.save never writes")
        itemsize = _itemsize(source, storage.storage_type)
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
            if any(i.filename == "w.npy" for i in infos):
                raise CheckpointError(f"cannot read {source}: a latent file (numpy's .npz of w), not a network")
            if twice := next((name for name, n in collections.Counter(i.filename for i in infos).items() if n > 1), None):  # torch reads the first, the checks below saw the last
                raise CheckpointError(f"cannot read {source}: it holds two entries named {twice[:60]!r}, which torch.save never writes")
            odd = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED or i.flag_bits & 0x1]
            if odd:
                raise CheckpointError(f"cannot read {source}: its entry {odd[0][:60]!r} is compressed or encrypted, which torch.save never does")
            if sum(i.file_size for i in infos) > size:
                raise CheckpointError(f"cannot read {source}: its entries claim to be larger than the file")
            if all(i.CRC == 0 for i in infos if i.file_size):  # what torch writes after set_crc32_options(False): nothing to check the bytes by
                raise CheckpointError(f"cannot read {source}: it was saved without CRC-32s (torch.serialization.set_crc32_options(False)), which stylelift checks each tensor by; save it again with them")
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
    """Refuse a tensor that reaches past its storage, repeats it with zero strides (a 4-byte storage
    viewed as 40,000 x 40,000) or overlaps itself (16,384 x 16,384 with strides 1, 1 over 32 kB),
    before anything copies it: a tensor may have no more elements than its storage holds."""
    if tensor.numel() == 0:
        return
    extent = tensor.storage_offset() + 1 + sum((n - 1) * abs(s) for n, s in zip(tensor.shape, tensor.stride()))
    dense = all(s != 0 for n, s in zip(tensor.shape, tensor.stride()) if n > 1)
    room = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    if not dense or extent * tensor.element_size() > tensor.untyped_storage().nbytes() or tensor.numel() * tensor.element_size() > room:
        raise CheckpointError(f"{source}: tensor {name[:80]} is not a plain array over its own data (shape {list(tensor.shape)}, strides {list(tensor.stride())})")


def save_torch_file(path: str | os.PathLike, data: Any) -> None:
    """`torch.save(data)` to `path`, whole or not at all. The bytes are made in memory first: torch's
    own writer reports a full disk as an unformatted RuntimeError ("unexpected pos ..."), where
    Python's write gives the OSError the CLI words as one line."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
