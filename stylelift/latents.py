"""The latent file: `.npz` with `w [N, num_ws, w_dim]` (what NVIDIA's generate.py --projected-w
reads), optional noise maps `noise_<k>`, and `meta` (a JSON string)."""

from __future__ import annotations

import io
import json
import lzma
import numbers
import os
import re
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import InputError, MissingFileError, first_line, shortened
from .fileio import as_path, atomic_path, looks_like_zip, parse_json, to_json


@dataclass
class LatentFile:
    """A latent file's content (`save_latents` / `load_latents`): w as NVIDIA's projector writes it
    (`generate.py --projected-w` reads it), noise maps by layer, and a meta dict (network id,
    options, the photo's alignment) that `check_made_for` reads."""

    w: np.ndarray  # [N, num_ws, w_dim] float32
    noises: dict[int, np.ndarray] = field(default_factory=dict)  # noise layer index -> map
    meta: dict = field(default_factory=dict)

    def check_made_for(self, G, *, name: str = "latent file") -> None:
        """Refuse a file whose recorded network (its meta's network_id) or whose shape is not G's."""
        from .models.checkpoint import network_id

        if (made_for := made_for_another(self.meta, network_id(G))) is not None:  # before the shape: which network is the more useful news
            source = self.meta.get("network")
            hint = f", {source!s:.200}: pass --network {source!s:.200}" if isinstance(source, str) and source else ""
            raise InputError(f"{name} was made for network {made_for}{hint} (this one is {network_id(G)})")
        self.check_fits(G.num_ws, G.w_dim, name=name)

    def check_fits(self, num_ws: int, w_dim: int, *, name: str = "latent file") -> None:
        if self.w.ndim != 3 or self.w.shape[1:] != (num_ws, w_dim):
            raise InputError(
                f"{name} holds w of shape {list(self.w.shape)}, but this network needs [N, {num_ws}, {w_dim}]"
            )


def made_for_another(meta: dict, this_id: str) -> Optional[str]:
    """The network id a file's meta (a latent file's, a direction's sidecar) records, shortened for
    a message, when it is not `this_id`; None when it records none. A recorded id that is empty, 0
    or false is another network's too: no network has it."""
    if "network_id" not in meta or meta["network_id"] is None or meta["network_id"] == this_id:
        return None
    made_for = meta["network_id"]
    return shortened(made_for, 80) if isinstance(made_for, str) and made_for.strip() else json.dumps(made_for)[:80]


def _host_array(x, what: str) -> np.ndarray:
    """float32 numpy array of real numbers from an array or a tensor on any device (GPU tensors have
    no __array__)."""
    if hasattr(x, "detach"):  # a torch tensor (this module does not import torch)
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x  # bfloat16 has no numpy type
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise InputError(f"{what} must hold real numbers, got {x.dtype}")  # complex would lose its imaginary part
    return x.astype(np.float32)


def _check_noise_shape(shape: tuple, key: str, name: str) -> None:
    """One square map: [r, r], [1, r, r] or [1, 1, r, r], r at most MAX_NOISE_SIDE."""
    side = shape[-1] if shape else 0
    if len(shape) < 2 or shape[-2] != side or not 1 <= side <= MAX_NOISE_SIDE or int(np.prod(shape, dtype=object)) != side * side:
        raise InputError(f"{name}: '{key}' is {list(shape)}, not one square noise map of at most {MAX_NOISE_SIDE}x{MAX_NOISE_SIDE}")


def save_latents(path: str | os.PathLike, latents: LatentFile) -> None:
    """Write atomically: the file appears complete or not at all."""
    path = as_path(path, "the latent file")
    if not isinstance(latents, LatentFile):
        raise InputError(f"save_latents takes a LatentFile(w=..., noises=..., meta=...), got {type(latents).__name__}")
    arrays = {"w": _host_array(latents.w, "w")}
    if arrays["w"].ndim == 2:  # one code [num_ws, w_dim], as load_latents also reads it
        arrays["w"] = arrays["w"][None]
    if arrays["w"].ndim != 3 or 0 in arrays["w"].shape or not np.isfinite(arrays["w"]).all():
        raise InputError(f"w must be finite values [N, num_ws, w_dim], got shape {list(arrays['w'].shape)}")  # what load_latents reads back
    if not isinstance(latents.meta, dict):
        raise InputError(f"meta must be a dict (it is written as a JSON object), got {type(latents.meta).__name__}")
    noises = {} if latents.noises is None else latents.noises
    if not isinstance(noises, dict):
        raise InputError(f"noises must be a dict of noise layer index -> map, got {type(noises).__name__}")
    for k, v in noises.items():  # (what load_latents takes: at most MAX_NOISE_MAPS, numbered below it)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k < MAX_NOISE_MAPS:
            raise InputError(f"noise maps are keyed by layer index (a whole number from 0 to {MAX_NOISE_MAPS - 1}), got {k!r:.20}")
        arrays[f"noise_{k}"] = _host_array(v, f"noise map {k}")
        shape = arrays[f"noise_{k}"].shape
        if len(shape) == 4 and shape[0] > 1:  # a batch projection's maps: one set per latent
            raise InputError(f"noise map {k} is {list(shape)}: {shape[0]} maps, one per latent, where a latent file holds one set; "
                             "save one file per latent (w[i:i+1] with each map's [i:i+1])")
        _check_noise_shape(shape, f"noise_{k}", "noise map")  # what load_latents reads back
        arrays[f"noise_{k}"] = arrays[f"noise_{k}"].reshape(1, shape[-1], shape[-1])  # stored [1, r, r], as the README says
        if not np.isfinite(arrays[f"noise_{k}"]).all():
            raise InputError(f"noise map {k} holds NaN or infinite values")
    arrays["meta"] = np.array(to_json(latents.meta))  # numpy and torch numbers as numbers, NaN as null
    if len(arrays["meta"].item()) > MAX_META_CHARS:  # what load_latents reads back
        raise InputError(f"meta is {len(arrays['meta'].item()):,} characters as JSON, more than a latent file's record holds ({MAX_META_CHARS:,})")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


DEFLATE_MAX_RATIO = 1032  # deflate never expands data more than this
INFLATE_LIMIT = (64, 1 << 28)  # compressed arrays may inflate more than 64x only up to 256 MB in all (zero noise maps: 1000x)
MAX_NOISE_SIDE = 4096  # noise maps are one map per layer, r x r (r at most 1024 in NVIDIA's networks)
MAX_NOISE_MAPS = 64  # noise maps in a file, numbered below this (a 1024 px StyleGAN2 has 17)
MAX_META_CHARS = 1 << 20  # a meta record (options, the photo's alignment) is a few thousand characters


def _check_claimed_size(data, key: str, name: str, names: set[str], inflating: list[int]) -> tuple[int, ...]:
    """Refuse an array whose header claims more bytes than its archive entry holds or could
    inflate to (a damaged or hostile file), before numpy allocates what the header asks for.
    `names`: the archive's entry names."""
    if key in names and f"{key}.npy" in names:  # np.load lists both as `key` and reads the entry named exactly `key`: one would be checked, the other read
        raise InputError(f"{name}: two arrays are named '{key}' ('{key}' and '{key}.npy'); keep one")
    info = data.zip.getinfo(key if key in names else f"{key}.npy")  # as np.load picks it
    with data.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise InputError(f"{name}: '{key}' holds Python objects, not numbers (stylelift never unpickles them)")
    count = int(np.prod(shape, dtype=object))
    claimed = count * dtype.itemsize
    if key == "meta" and (chars := claimed // (4 if dtype.kind == "U" else 1)) > MAX_META_CHARS:  # parsed as JSON: 20 million {} in a 466 KB file took 2.5 GB
        raise InputError(f"{name}: its 'meta' is {chars:,} characters, where a latent file's record is a few thousand (at most {MAX_META_CHARS:,}); save the file without it")
    holds = info.file_size if info.compress_type == zipfile.ZIP_STORED else min(info.file_size, info.compress_size * DEFLATE_MAX_RATIO)
    if claimed > holds:
        raise InputError(f"{name}: '{key}' claims {claimed:,} bytes of data but holds {holds:,}; the file is damaged")
    ratio, most = INFLATE_LIMIT
    read_as = count * max(dtype.itemsize, 4)  # the bytes it takes once read and made float32 (int8 grows 4x)
    if info.compress_type != zipfile.ZIP_STORED and read_as > info.compress_size * ratio:  # real latents compress 1.1x (W: 16x)
        inflating[0] += read_as  # `inflating`: the bytes of such arrays so far
        if inflating[0] > most:
            raise InputError(f"{name}: '{key}' inflates from {info.compress_size:,} bytes to {read_as:,}, more than any latent file does")
    return tuple(shape)


def load_latents(path: str | os.PathLike) -> LatentFile:
    """Read a latent file; never unpickles (allow_pickle=False). Bad files raise InputError."""
    path = as_path(path, "the latent file")
    if not path.exists():
        raise MissingFileError(f"no latent file {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a latent file (.npz)")
    if not path.is_file():  # a FIFO or a device would be read forever
        raise InputError(f"{path} is not a regular file, not a latent file (.npz)")
    open(path, "rb").close()  # no permission is an OSError saying so, not "not a readable .npz"
    if not looks_like_zip(path):
        raise InputError(f"{path.name} is not a readable .npz latent file: a latent file is an archive with a 'w' array (np.savez writes one)")
    inflating = [0]  # the bytes of arrays that inflate far more than real latents do
    try:
        with np.load(path, allow_pickle=False) as data:
            if "w" not in data.files:
                torch_file = any(k == "data.pkl" or k.endswith("/data.pkl") for k in data.files)  # a .pt is a zip too
                keys = ", ".join(data.files[:5]) + (f", ... ({len(data.files)} in all)" if len(data.files) > 5 else "")
                raise InputError(f"{path.name} is a torch file, not a latent .npz" if torch_file else f"{path.name} has no 'w' array (keys: {keys or 'none'})")
            noise_keys = [key for key in data.files if re.fullmatch(r"noise_[0-9]+", key)]
            if far := next((key for key in noise_keys if len(key) > 6 + 8 or int(key[6:]) >= MAX_NOISE_MAPS), None):  # (int() of 4,300 digits raises)
                raise InputError(f"{path.name}: '{shortened(far, 20)}' numbers a noise map beyond any network's (they have at most tens)")
            if len(noise_keys) > MAX_NOISE_MAPS:  # (noise_1 and noise_01 and noise_1.npy ...)
                raise InputError(f"{path.name} holds {len(noise_keys):,} noise maps, more than any network has (they have at most tens)")
            names = set(data.zip.namelist())
            read = [key for key in data.files if key in ("w", "meta")] + noise_keys
            shapes = {key: _check_claimed_size(data, key, path.name, names, inflating) for key in read}  # all, before any is read
            raw = data["w"]
            if raw.dtype.kind not in "fiu":  # numbers; not complex, dates or times (timedelta64 counts as an integer to numpy)
                raise InputError(f"{path.name}: 'w' holds {raw.dtype} values, not real numbers")
            with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
                w = raw.astype(np.float32)
            noises = {}
            for key in noise_keys:
                _check_noise_shape(shapes[key], key, path.name)
                if int(key[6:]) in noises:
                    raise InputError(f"{path.name}: two arrays name noise map {int(key[6:])} ('{key}' and another); keep one")
                noise = data[key]
                if noise.dtype.kind not in "fiu":
                    raise InputError(f"{path.name}: '{key}' holds {noise.dtype} values, not real numbers")
                with np.errstate(over="ignore"):  # as w's: refused below
                    noises[int(key[6:])] = noise.astype(np.float32)
            meta: dict = {}
            if "meta" in data.files:
                try:
                    meta = parse_json(str(data["meta"]))
                except json.JSONDecodeError:
                    meta = None
                if not isinstance(meta, dict):  # it names the network the latents belong to, so it is not passed over
                    raise InputError(f"{path.name}: its 'meta' is not the JSON object stylelift writes; repair it or save the file without it")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError) as e:
        # zlib and lzma: a damaged compressed entry; NotImplementedError: a compression zipfile lacks;
        # RuntimeError: an entry marked encrypted; SyntaxError and TokenError: numpy reading a damaged array header
        if isinstance(e, InputError):
            raise
        why = "a damaged array header" if isinstance(e, (SyntaxError, tokenize.TokenError)) or str(e).startswith("malformed node") else first_line(e)  # (ast's message names an object's address)
        raise InputError(f"{path.name} is not a readable .npz latent file ({why})") from None
    except MemoryError:
        raise InputError(f"{path.name}: its arrays are too large for this machine's memory") from None
    if w.ndim == 2:  # a single [num_ws, w_dim] code
        w = w[None]
    if w.ndim != 3 or 0 in w.shape:
        raise InputError(f"{path.name}: 'w' must be [N, num_ws, w_dim] with N >= 1, got shape {list(w.shape)}")
    if not np.isfinite(w).all():
        raise InputError(f"{path.name}: 'w' contains NaN or infinite values")
    for k, noise in sorted(noises.items()):
        if not np.isfinite(noise).all():
            raise InputError(f"{path.name}: 'noise_{k}' contains NaN or infinite values")
    return LatentFile(w=w, noises=noises, meta=meta)
