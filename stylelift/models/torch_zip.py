"""Checks on `torch.save` files before `torch.load` sees them.

torch.save writes a zip whose entries are all stored, not compressed: `data.pkl` (the pickle),
one entry per tensor storage, and a few small records. A zip that compresses or encrypts an
entry was not written by torch.save; it could inflate to far more than its size (a zip bomb), and
torch's memory-mapped loading would read a compressed storage's bytes as if they were its values.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from torch import Tensor

from ..errors import CheckpointError


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
