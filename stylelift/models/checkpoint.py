"""One entry point for every network file: `load_generator(path_or_name)`.

Formats, told apart by their first bytes, never by the file name:
- stylelift's own: a `torch.save` zip holding `{"format": FORMAT_TAG, "config", "state_dict", "meta"}`,
  read with `torch.load(weights_only=True)`: plain data and tensors, no code;
- rosinality `.pt` (zip or legacy torch file): `stylelift.models.rosinality`;
- any other pickle: NVIDIA PyTorch or TensorFlow network pickles, read by a restricted
  unpickler (`stylelift.models.nvidia`) that refuses every global outside its allow-list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from ..devices import usable_device
from ..errors import CheckpointError, InputError, MissingFileError, UnsupportedNetworkError, describe, first_line
from ..fileio import file_stamp, special_file, to_json
from .base import MappedGenerator, check_generator, rng_untouched
from .download import is_url
from .raw import RawNetwork
from .reading import a_type, check_floating, check_shapes, show_value
from .stylegan import StyleGAN, StyleGANConfig
from .stylegan2 import Generator, StyleGAN2Config
from .torch_files import check_storage_extent, load_torch_file, read_zip_pickle, save_torch_file

log = logging.getLogger(__name__)

FORMAT_TAG = "stylelift-network"
FORMAT_VERSION = 1
_CONFIGS = {"stylegan2": StyleGAN2Config, "stylegan": StyleGANConfig}  # the format's "architecture" field: a generator's `family`
_GENERATORS = {StyleGAN2Config: Generator, StyleGANConfig: StyleGAN}  # what each config builds
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0

# Magic bytes of the legacy (pre-zip) torch.save format: PROTO 2, LONG1 of 10 bytes, the magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class NetworkNotFoundError(MissingFileError):
    """A network named by a file that does not exist or a name stylelift does not know, or the
    bundled network's wheel (random-face) not installed."""


# ----------------------------------------------------------------------------------------------
# Networks known by name.


def _random_network(family: str, resolution: int) -> Callable[[], RawNetwork]:
    """A randomly initialised StyleGAN2 or StyleGAN (fixed seed), NVIDIA's widths for its size:
    for demos, tests and benchmarks, not faces."""

    def build() -> RawNetwork:
        if family == "stylegan2":
            cfg = StyleGAN2Config(img_resolution=resolution, channel_base=min(32768, 512 * resolution // 2), mapping_layers=8)
        else:  # NVIDIA's StyleGAN: fmap_base 8192, at most 512 channels
            cfg = StyleGANConfig(img_resolution=resolution, channels=tuple(min(16384 // r, 512) for r in [2**i for i in range(2, resolution.bit_length())]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(resolution)
            G = _GENERATORS[type(cfg)](cfg)
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.data.fill_(0.1)
            state = G.state_dict()
        return RawNetwork(cfg, state, format="builtin", has_w_avg=False, info={"note": "random weights (no training)"})

    return build


BUNDLED_NETWORK = "mobile-ffhq"  # MobileStyleGAN FFHQ 1024 from the random-face wheel (stylelift.models.mobilestylegan)

NAMED_NETWORKS: dict[str, Callable[[], RawNetwork]] = {
    f"random-{family}-{r}": _random_network(family, r) for family in ("stylegan2", "stylegan") for r in (64, 256, 1024)
}


# ----------------------------------------------------------------------------------------------
# Reading


def sniff_format(path: Path) -> str:
    """'torch-zip', 'torch-legacy' or 'pickle', from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise CheckpointError(f"{path.name} is empty")
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head == _LEGACY_TORCH_MAGIC:
        return "torch-legacy"
    if head[:1] == b"\x80" or head[:1] in b"(}]":
        return "pickle"
    raise CheckpointError(f"{path.name} is not a network file stylelift knows (not a pickle or a torch file)")


def _is_stylelift_zip(path: Path) -> bool:
    return FORMAT_TAG.encode() in read_zip_pickle(path, path.name)


def read_stylelift(path: Path) -> RawNetwork:
    data = load_torch_file(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path.name} is not a stylelift network file")
    version, architecture = data.get("version"), data.get("architecture")
    if version != FORMAT_VERSION:  # an int: a whole file of another version (a zip's CRC rules out a damaged byte); else a damaged one
        raise (UnsupportedNetworkError if type(version) is int else CheckpointError)(f"{path.name} has stylelift format version {version!r:.20}; this stylelift reads {FORMAT_VERSION}")
    config_class = _CONFIGS.get(architecture) if isinstance(architecture, str) else None
    if config_class is None:
        raise (UnsupportedNetworkError if isinstance(architecture, str) else CheckpointError)(f"{path.name}: unknown architecture {show_value(architecture)}")
    if "config" not in data:
        raise CheckpointError(f"{path.name} has no config (a stylelift network file stores its config beside its weights)")
    try:
        cfg = config_class.from_dict(data["config"])
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"{path.name} has a bad config: {first_line(e)}") from None
    state = data.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path.name} has no valid state_dict")
    for k, v in state.items():
        check_storage_extent(path.name, k, v)
        check_floating(path.name, k, v)
    check_shapes(path.name, cfg, {k: tuple(v.shape) for k, v in state.items()})  # before anything is built from cfg
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path.name}: its meta is {a_type(meta)}, not a dict")
    return RawNetwork(cfg, state, format="stylelift", has_w_avg="mapping.w_avg" in state, info=dict(meta))


def read_network(path: Path) -> RawNetwork:
    """Read any supported file into a RawNetwork (no torch module yet)."""
    kind = sniff_format(path)
    if kind == "torch-zip" and _is_stylelift_zip(path):
        return read_stylelift(path)
    if kind in ("torch-zip", "torch-legacy"):
        from .rosinality import read_rosinality

        return read_rosinality(path)
    from .nvidia import read_nvidia_pickle

    return read_nvidia_pickle(path)


def build_generator(raw: RawNetwork, *, name: str) -> MappedGenerator:
    """Build the module, load its weights strictly, fill in w_avg if the file lacked it."""
    with rng_untouched():
        G = _GENERATORS[type(raw.config)](raw.config)
    state = dict(raw.state_dict)
    if not raw.has_w_avg:
        state["mapping.w_avg"] = torch.zeros([raw.config.w_dim])
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{name}: weights do not fit the network they describe ({first_line(e)})") from None
    G.eval().requires_grad_(False)
    for key, value in G.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{name}: {key} holds NaN or infinite values; the file is damaged")
    if not raw.has_w_avg:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
    G.source = name
    G.source_format = raw.format
    G.source_info = raw.info
    return G


@torch.no_grad()
def estimate_w_avg(G: MappedGenerator, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, batch: int = 1000) -> torch.Tensor:
    """Mean of the mapped w of `n` z drawn with a fixed seed (labels: uniform one-hot)."""
    from .sampling import sampled_w

    total = torch.zeros([G.w_dim], dtype=torch.float64)
    for w in sampled_w(G, n, seed, batch=batch):
        total += w.double().sum(0).cpu()
    return (total / n).float()


def load_generator(
    path_or_name: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu", download_progress: Optional[Callable[[int, Optional[int]], None]] = None
) -> MappedGenerator:
    """Load a generator from a file (any supported format), a known name or a URL (`URL#sha256=HEX`
    pins the file), frozen, in eval mode. `download_progress(done, total)` follows a download, if any.

    Raises NetworkNotFoundError for a missing file, CheckpointError (UnsafeCheckpointError for a
    pickle that asks to run code) for a file that cannot be read safely.
    """
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise InputError(f"load_generator takes a file, a URL or a known name, got {describe(path_or_name)}")
    device = usable_device(device)
    key = str(path_or_name)
    if not key.strip():
        raise NetworkNotFoundError(f"no network given (known names: {', '.join([BUNDLED_NETWORK] + sorted(NAMED_NETWORKS))}, or a file)")
    if key == BUNDLED_NETWORK:
        from .mobilestylegan_wheel import load_mobilestylegan

        G = load_mobilestylegan(device=device)
        # Named by its source files, so the id survives changes to how stylelift lays out the weights.
        source_id = _SOURCE_IDS.setdefault(_weights_hash(G), f"mobilestylegan-{G.source_info['source sha256'][:16]}")
        _IDS[G] = (_weights_key(G), source_id)  # hashed once: network_id(G) needs no second pass
        return G
    if key in NAMED_NETWORKS:
        G = build_generator(NAMED_NETWORKS[key](), name=key)
        G.source_format = "builtin"
        return G.to(device)
    if is_url(url := key.strip()):  # a URL pasted with a space or newline around it
        from .download import cached_download, cached_path, forget, shown, split_pin

        url, sha256 = split_pin(url)
        before = file_stamp(cached_path(url))
        path = cached_download(url, sha256=sha256, progress=download_progress)
        came = "cached copy" if before and file_stamp(path) == before else "downloaded"  # (a copy that failed its pin is downloaded again)
        name = path.name.split("-", 1)[-1]  # the URL's file name, without the cache's hash
        try:
            sniff_format(path)
        except CheckpointError as e:  # not a pickle or torch file at all (a login page saved as ffhq.pkl): do not keep it
            forget(url)
            raise CheckpointError(f"{shown(url)} did not give a network file ({str(e).replace(path.name, name)}); removed it from the cache") from None
        except OSError as e:  # the cached copy cannot be read (a bad sector, a dropped network mount)
            raise CheckpointError(f"{shown(url)}: cannot read its cached copy {path}: {e.strerror or e}") from None
        try:
            G = build_generator(read_network(path), name=name)
        except UnsupportedNetworkError as e:  # whole, and of a kind or version refused as it is: kept, not fetched again each try
            raise type(e)(f"{shown(url)} ({came}): {str(e).replace(path.name, name)}; kept in the cache as {path}") from None
        except CheckpointError as e:  # damaged on the server or on the way: the next try downloads it again
            forget(url)
            raise type(e)(f"{shown(url)} ({came}): {str(e).replace(path.name, name)}; removed it from the cache") from None
        return G.to(device)
    else:
        try:
            path = Path(key).expanduser()
        except RuntimeError:  # ~name of a user this machine does not have
            path = Path(key)
    if not path.exists():
        names = ", ".join([BUNDLED_NETWORK] + sorted(NAMED_NETWORKS))
        raise NetworkNotFoundError(f"no network file {key} (known names: {names})")
    if path.is_dir():
        raise CheckpointError(f"{key} is a folder, not a network file")
    if special_file(path):  # a named pipe would be waited on forever
        raise CheckpointError(f"{key} is not a regular file, not a network file")
    raw = read_network(path)
    return build_generator(raw, name=path.name).to(device)


# ----------------------------------------------------------------------------------------------
# Writing stylelift's own format


def check_savable(G: MappedGenerator) -> str:
    """The architecture name stylelift's format stores `G` under; an error for networks it does not hold."""
    architecture = getattr(G, "family", None)
    if architecture not in _CONFIGS:
        source = getattr(G, "source", type(G).__name__)
        raise CheckpointError(f"stylelift's network format holds StyleGAN2 and StyleGAN generators, and {source} is {a_type(G)}: no conversion is needed, every command loads it as it is (--network {source})")
    return architecture


def save_generator(G: MappedGenerator, path: Union[str, os.PathLike], *, meta: Optional[dict] = None) -> None:
    """Write `G` as config + weights (no code), atomically: a temporary file renamed into place."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"save_generator(G, path) takes the network first and the file second, got a {type(path).__name__} as the file")
    path = Path(path)
    check_generator(G, "save_generator(G, path)")
    architecture = check_savable(G)
    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    info = {"converted from": getattr(G, "source", None), "original format": getattr(G, "source_format", None)}
    info = {k: v for k, v in info.items() if v is not None}
    info.update(meta or {})
    data = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "architecture": architecture,
        "config": G.config.to_dict(),
        "state_dict": state,
        "meta": json.loads(to_json(info)),
    }
    save_torch_file(path, data)


_IDS: "weakref.WeakKeyDictionary[MappedGenerator, tuple[tuple, str]]" = weakref.WeakKeyDictionary()  # G -> (weights key, id)
_SOURCE_IDS: dict[str, str] = {}  # the weights' hash -> the id of a network named by its source files instead


def _weights_key(G: MappedGenerator) -> tuple:
    """Changes when a weight is replaced or changed in place (load_state_dict, an optimiser step, a
    move to another device); not when one is written through `.data`, which torch does not count."""
    return tuple((t.data_ptr(), t._version) for t in G.state_dict(keep_vars=True).values())


def _weights_hash(G: MappedGenerator) -> str:
    h = hashlib.sha256(json.dumps(G.config.to_dict(), sort_keys=True).encode())
    for k, v in sorted(G.state_dict().items()):
        h.update(k.encode())
        v = v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()  # a float64 copy is the same network
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()


def network_id(G: MappedGenerator) -> str:
    """A short fingerprint of the weights and config: the same network gives the same id in any
    format, on any device, in any copy (the bundled network's id names its source files, so that it
    survives changes to how stylelift lays out the weights). Kept for each network object until its
    weights change."""
    check_generator(G, "network_id(G)")
    key = _weights_key(G)
    cached = _IDS.get(G)
    if cached is None or cached[0] != key:
        digest = _weights_hash(G)
        cached = _IDS[G] = (key, _SOURCE_IDS.get(digest, f"{G.family}-{digest[:16]}"))
    return cached[1]


