"""Edit directions in W: saved as InterFaceGAN boundaries (`.npy` [1, w_dim]) with a JSON sidecar,
applied to ws (`apply_direction`), and conditioned on one another (`condition`: remove the
component along another direction, InterFaceGAN's conditional edit).

Ways to get one: `boundary.fit_boundary` (a linear classifier on labelled w, InterFaceGAN), and
`discovery.sefa` / `discovery.pca_directions` (SeFa, GANSpace), without labels.
"""

from __future__ import annotations

import io
import json
import os
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, MissingFileError, describe, first_line, is_real, is_whole
from ..fileio import as_path, parse_json, special_file, to_json, written_together
from .layers import layer_indices


@dataclass
class Direction:
    vector: np.ndarray  # [1, w_dim], unit length
    meta: dict = field(default_factory=dict)  # network id, method, attribute, accuracy, ...

    @property
    def default_layers(self) -> Optional[str]:
        """The layers (`parse_layers` spec) the edit is meant for, when the sidecar names them
        (a spec such as "middle,fine" or "4-7", or a list of ws indices)."""
        layers = self.meta.get("layers")
        if layers is None or layers == [] or (isinstance(layers, str) and not layers.strip()):
            return None  # none named: every layer
        if isinstance(layers, str):
            return layers
        if isinstance(layers, list) and layers and all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
            return ",".join(str(v) for v in layers)
        raise InputError(f'the direction\'s layers are given as {layers!r:.40}; use a spec such as "4-7" or a list of indices')


MAX_W_DIM = 1 << 16  # w has 512 dimensions in NVIDIA's networks
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar (network id, method, accuracy, layers) is a few hundred bytes


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def check_count(name: str, value, lowest: int) -> None:
    if not is_whole(value) or value < lowest:
        raise InputError(f"{name} must be a whole number >= {lowest}, got {value!r:.20}")


def save_direction(path: str | os.PathLike, direction: Direction) -> None:
    """Write DIR.npy (the vector, made unit length) and DIR.json as a pair: both are written to
    temporary files first and renamed only when both are whole (what `load_direction` refuses is
    not written). Non-finite numbers in the meta are written as null (JSON has no NaN)."""
    path = as_path(path, "the direction file")
    if path.suffix.lower() == ".json":  # the vector and its sidecar would be one file
        raise InputError(f"{path.name}: name the direction file NAME.npy; its sidecar is NAME.json")
    vec = direction.vector.detach().float().cpu().numpy() if isinstance(direction.vector, Tensor) else direction.vector
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim < 1 or vec.size != vec.shape[-1] or not np.isfinite(vec).all() or not vec.any():  # [w_dim], [1, w_dim], [1, 1, w_dim] ...
        raise InputError(f"a direction is one finite, non-zero vector [1, w_dim], got {list(vec.shape)}")
    if not isinstance(direction.meta, dict):
        raise InputError(f"a direction's meta is a dict, got {type(direction.meta).__name__}")
    for target in (path, _sidecar(path)):
        if target.is_dir():
            raise InputError(f"{target} is a folder; name the direction file to write")
    vec = vec / np.abs(vec).max()  # scaled first, as load_direction does
    vec = (vec / np.linalg.norm(vec)).astype(np.float32).reshape(1, -1)
    meta = to_json(direction.meta, what="the direction's meta", indent=2) + "\n"
    data = io.BytesIO()
    np.save(data, vec)  # made in memory, then written by Python, which reports a short write (a file
    # size limit) that numpy's own writing to a file passed over: a truncated .npy
    with written_together([path, _sidecar(path)]) as (tmp, tmp_meta):  # renamed once both are written, with signals deferred
        tmp.write_bytes(data.getbuffer())  # (a full disk names no file: the first of the pair is named)
        tmp_meta.write_text(meta)


def load_direction(path: str | os.PathLike, *, w_dim: Optional[int] = None) -> Direction:
    """Read an InterFaceGAN-style boundary `.npy` ([1, w_dim] or [w_dim]) and its sidecar, if any."""
    path = as_path(path, "the direction file")
    if w_dim is not None and (not is_whole(w_dim) or w_dim < 1):
        raise InputError(f"w_dim must be a whole number >= 1 (G.w_dim), got {w_dim!r:.20}")
    if not path.exists():
        raise MissingFileError(f"no direction file {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a direction file (.npy)")
    if special_file(path):  # a named pipe would be waited on forever
        raise InputError(f"{path} is not a regular file, not a direction file (.npy)")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic == b"\x93NUMPY":  # refuse a header that claims more than the file holds before numpy allocates it
                f.seek(0)
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
                if dtype.hasobject:
                    raise InputError(f"{path.name} holds Python objects, not numbers (stylelift never unpickles them)")
                if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != 1) or not 1 <= shape[-1] <= MAX_W_DIM:  # before it is read (a sparse file claims gigabytes)
                    raise InputError(f"{path.name} must hold a float array [1, w_dim], got {dtype} {list(shape)}")
                if w_dim is not None and shape[-1] != w_dim:
                    raise InputError(f"{path.name} is a direction in {shape[-1]}-D, but this network's w has {w_dim} dimensions")
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > path.stat().st_size - f.tell():
                    raise InputError(f"{path.name} claims an array {list(shape)} ({claimed:,} bytes) but holds less; the file is damaged")
        vec = np.load(path, allow_pickle=False) if magic[:2] == b"PK" or magic == b"\x93NUMPY" else None  # numpy tries anything else as a pickle
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, tokenize.TokenError) as e:
        if isinstance(e, InputError) or (isinstance(e, OSError) and e.filename is not None):  # ours, or "X: Permission denied"
            raise
        why = "a damaged array header" if isinstance(e, (SyntaxError, tokenize.TokenError)) or str(e).startswith("malformed node") else first_line(e)  # (ast's message names an object's address)
        raise InputError(f"{path.name} is not a readable .npy direction ({why})") from None
    if vec is None:
        raise InputError(f"{path.name} is not a .npy file (a direction is one array [1, w_dim], as np.save writes it)")
    if not isinstance(vec, np.ndarray):  # an .npz archive
        vec.close()
        raise InputError(f"{path.name} is a zip archive (as .npz latent files and torch files are); a direction is one .npy array [1, w_dim]")
    if vec.ndim == 1:
        vec = vec[None]
    if vec.ndim != 2 or vec.shape[0] != 1 or vec.shape[1] == 0 or not np.issubdtype(vec.dtype, np.floating):
        raise InputError(f"{path.name} must hold a float array [1, w_dim], got {vec.dtype} {list(vec.shape)}")
    if w_dim is not None and vec.shape[1] != w_dim:
        raise InputError(f"{path.name} is a direction in {vec.shape[1]}-D, but this network's w has {w_dim} dimensions")
    with np.errstate(over="ignore"):  # a long double beyond float64: refused just below
        vec = vec.astype(np.float64)
    if not np.isfinite(vec).all():
        raise InputError(f"{path.name} holds NaN or infinite values")
    peak = float(np.abs(vec).max())
    if peak == 0:
        raise InputError(f"{path.name} is a zero vector: it points nowhere")
    vec = vec / peak  # only its direction counts: scaled first, values near float32's limits neither overflow nor vanish
    meta = {}
    sidecar = _sidecar(path)
    if special_file(sidecar) or sidecar.is_dir():
        raise InputError(f"{sidecar.name}, the sidecar of {path.name}, is not a regular file; move it away")
    if sidecar.exists():  # it names the network and the layers, so a damaged one is not passed over
        if (size := sidecar.stat().st_size) > MAX_SIDECAR_BYTES:
            raise InputError(f"{sidecar.name}, the sidecar of {path.name}, is {size:,} bytes, where a sidecar is a few hundred; repair or delete it")
        try:
            meta = parse_json(sidecar.read_text(encoding="utf-8-sig"))  # -sig: also with a byte-order mark
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{sidecar.name}, the sidecar of {path.name}, is not readable JSON ({first_line(e)}); repair or delete it") from None
        if not isinstance(meta, dict):
            raise InputError(f"{sidecar.name}, the sidecar of {path.name}, holds a JSON {type(meta).__name__}, not an object; repair or delete it")
    return Direction((vec / np.linalg.norm(vec)).astype(np.float32), meta)


def direction_vector(direction, w_dim: Optional[int] = None, *, what: str = "the direction") -> Tensor:
    """A direction as a float64 CPU vector [w_dim], checked: a `Direction`, or one vector ([w_dim],
    [1, w_dim]) as a tensor or array, finite and not zero, of `w_dim` numbers when given."""
    if isinstance(direction, Direction):
        direction = direction.vector
    if isinstance(direction, Tensor):
        d = direction.detach()
        if d.is_meta:
            raise InputError(f"{what} is on the meta device: it holds no numbers")
        d = d.cpu()
    else:
        d = torch.as_tensor(np.asarray(direction)) if isinstance(direction, (np.ndarray, list, tuple)) else None
    if d is None or not (d.is_floating_point() or d.dtype in (torch.int32, torch.int64)) or d.ndim < 1 or d.numel() != max(d.shape):  # [w_dim], [1, w_dim], [w_dim, 1]
        shape = list(d.shape) if d is not None else type(direction).__name__
        raise InputError(f"{what} must be one vector of real numbers [1, w_dim], got {shape} (a Direction, a tensor or an array)")
    d = d.double().reshape(-1)
    if w_dim is not None and d.numel() != w_dim:
        raise InputError(f"{what} has {d.numel()} dimensions, the ws have {w_dim}")
    if not torch.isfinite(d).all() or not d.any():
        raise InputError(f"{what} is {'not finite' if not torch.isfinite(d).all() else 'all zeros'}: it points nowhere")
    return d


def apply_direction(ws: Tensor, direction, strength, layers: Optional[Sequence[int]] = None) -> Tensor:
    """ws + strength * direction on `layers` (all when None). ws [N, num_ws, w_dim]; `direction`
    a `Direction` or a vector [1, w_dim]; `strength` a number, or one per sample ([N] or [N, 1, 1], or a list of N).

    A Direction's own layers (its sidecar's, `default_layers`) are not applied here: pass
    `parse_layers(d.default_layers, G.layer_resolutions)` for what `stylelift edit` does."""
    if not isinstance(ws, Tensor) or ws.ndim != 3 or not ws.is_floating_point():
        raise InputError(f"ws must be a float tensor [N, num_ws, w_dim], got {describe(ws)}")
    if not torch.isfinite(ws).all():
        raise InputError("ws hold NaN or infinite values")
    d = direction_vector(direction, ws.shape[-1]).to(ws.device, ws.dtype)  # checked
    if isinstance(direction, Tensor) and direction.requires_grad:  # the caller's own, so that gradients reach it
        d = direction.reshape(-1).to(ws)
    checked = _strength(strength, ws.shape[0])
    if isinstance(strength, Tensor) and strength.requires_grad:  # likewise
        strength = strength.to(ws).reshape(checked.shape)
    else:
        strength = checked.to(ws.device, ws.dtype)
    if layers is not None:
        layers = layer_indices(layers, ws.shape[1])
        if not layers:
            raise InputError("layers is empty: name the ws to edit, or None for all of them")
    out = ws.clone()
    idx = slice(None) if layers is None else torch.as_tensor(layers, dtype=torch.long, device=ws.device)
    out[:, idx] += strength * d
    if not torch.isfinite(out).all():
        raise InputError("the edited ws overflow float: ask for a strength nearer 0")
    return out


INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _strength(strength, n: int) -> Tensor:
    """A strength as a tensor that broadcasts over ws [N, num_ws, w_dim]: a real number, or N of them."""
    if is_real(strength):
        return torch.tensor(float(strength), dtype=torch.float64)
    given = strength
    if isinstance(strength, (list, tuple)) and strength and all(_one_number(s) for s in strength):
        strength = np.array([s.item() if isinstance(s, (Tensor, np.ndarray)) else s for s in strength], dtype=np.float64)  # one per sample, as a list
    if isinstance(strength, (Tensor, np.ndarray)) and not isinstance(strength, bool):
        t = torch.as_tensor(strength).detach().cpu()
        if (t.is_floating_point() or t.dtype in INT_DTYPES) and t.numel() in (1, n):
            if not torch.isfinite(t.double()).all():
                raise InputError(f"strength must be finite numbers, got {f'{given!r:.60}' if isinstance(given, (list, tuple)) else 'NaN or infinity in ' + describe(given)}")
            return t.double().reshape(-1, 1, 1) if t.numel() == n and t.ndim else t.double().reshape(())
    what = f"a list of {len(given)}" if isinstance(given, (list, tuple)) else describe(given)
    raise InputError(f"strength must be a finite number, or one per sample of the {n} ([N], [N, 1, 1] or a list of N numbers), got {what}")


def _one_number(value) -> bool:
    """A real number, or a tensor or array holding one (not a bool)."""
    if isinstance(value, np.ndarray):
        return value.size == 1 and value.dtype.kind in "iuf"
    if isinstance(value, Tensor):
        return value.numel() == 1 and (value.is_floating_point() or value.dtype in INT_DTYPES)
    return isinstance(value, float) or is_real(value)  # NaN is a number here (refused as not finite); 10**400 is not


PARALLEL = 0.01  # conditioning must leave at least this much of the unit direction (an angle of 0.6 degrees)


def condition(primary, other) -> np.ndarray:
    """primary with its component along `other` removed, renormalised (each a `Direction` or a
    vector [1, w_dim]; returns [1, w_dim]). Directions (nearly) parallel are refused: what is left
    of them is rounding, not a direction."""
    p = direction_vector(primary, what="the direction to condition")
    o = direction_vector(other, p.numel(), what="the direction conditioned on")
    p, o = p / p.norm(), o / o.norm()
    cos = float(p @ o)
    p = p - cos * o
    n = p.norm()
    if n < PARALLEL:
        raise InputError(f"the two directions are {'parallel' if n < 1e-8 else 'nearly parallel'} (cosine {cos:.6f}): nothing is left after conditioning but rounding")
    return (p / n).float().numpy()[None]
