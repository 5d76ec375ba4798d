"""The bundled face generator: MobileStyleGAN FFHQ from the PyPI wheel `random-face`.

`load_mobilestylegan` finds the wheel's IR files through its file list (the wheel's code is never
imported), converts them once (`mobilestylegan_ir.py`) and caches the converted weights, keyed by
the sha256 of the source files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from ..errors import InputError, error_message
from .mobilestylegan import MobileStyleGAN, MobileStyleGANConfig
from .mobilestylegan_ir import import_mobilestylegan
from .torch_files import load_torch_file, save_torch_file

log = logging.getLogger(__name__)

WHEEL = "random-face"
WHEEL_VERSION = "2021.7.21.1"
PIP_COMMAND = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
SOURCE_NAME = "mobile-ffhq"
CACHE_FORMAT = "stylelift-mobilestylegan"
CACHE_VERSION = 1


def build_mobilestylegan(cfg: MobileStyleGANConfig, state: dict[str, Tensor]) -> MobileStyleGAN:
    """The module for `cfg` holding exactly `state` (strict), frozen, in eval mode.

    Built on the meta device and given the state's tensors, so no random initialisation is run
    and no weights are copied.
    """
    with torch.device("meta"):
        G = MobileStyleGAN(cfg)
    G.load_state_dict(state, strict=True, assign=True)
    return G.eval().requires_grad_(False)


def wheel_files() -> dict[str, Path]:
    """The IR files inside the installed `random-face` wheel, found through its file list (never imported)."""
    from .checkpoint import NetworkNotFoundError

    hint = f"MobileStyleGAN's weights come in the PyPI wheel {WHEEL}=={WHEEL_VERSION}; install it with: {PIP_COMMAND}"
    try:
        listed = importlib.metadata.files(WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        raise NetworkNotFoundError(f"{WHEEL} is not installed. {hint}") from None
    wanted = {f"{net}.{ext}": None for net in ("MappingNetwork", "SynthesisNetwork") for ext in ("xml", "bin")}
    for entry in listed:
        if entry.parent.name == "data" and entry.name in wanted:
            wanted[entry.name] = Path(entry.locate())
    missing = [name for name, path in wanted.items() if path is None or not path.is_file()]
    if missing:
        raise NetworkNotFoundError(f"the installed {WHEEL} lacks {', '.join(missing)}. {hint}")
    return wanted


def source_digest(files: dict[str, Path]) -> str:
    """sha256 over the names and contents of the source files: the cache key."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        with open(files[name], "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def convert_mobilestylegan(files: dict[str, Path]) -> MobileStyleGAN:
    """Build the module from the IR files and compute its w_avg (10,000 mapped z, fixed seed)."""
    from .checkpoint import estimate_w_avg

    cfg, state = import_mobilestylegan(files["MappingNetwork.xml"], files["SynthesisNetwork.xml"])
    state["mapping.w_avg"] = torch.zeros([cfg.w_dim])
    G = build_mobilestylegan(cfg, state)
    G.mapping.w_avg.copy_(estimate_w_avg(G))
    return G


STALE_TEMPORARY = 3600  # seconds after which a cache file's temporary is a killed run's (a write takes a second or two)


def cache_file(digest: str) -> Path:
    """Where the conversion of the source files with this digest is cached: named by its format's
    version too, so two stylelift versions sharing a cache keep a file each."""
    from .download import cache_dir

    return cache_dir() / "mobilestylegan" / f"{SOURCE_NAME}-{digest[:16]}-v{CACHE_VERSION}.pt"


def _save_cache(G: MobileStyleGAN, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in path.parent.glob(f".{SOURCE_NAME}-*.tmp-*.pt"):  # a run killed outright (the OOM killer) while writing left it
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > STALE_TEMPORARY:
                tmp.unlink()
    data = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "config": G.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()},
        "meta": meta,
    }
    save_torch_file(path, data)


def _load_cache(path: Path, digest: str) -> Optional[MobileStyleGAN]:
    """The cached network, or None when the file is missing, unreadable or for other sources."""
    if not path.is_file():
        return None
    try:
        data = load_torch_file(path)
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION or data["meta"]["source sha256"] != digest:
            return None
        G = build_mobilestylegan(MobileStyleGANConfig.from_dict(data["config"]), data["state_dict"])
    except Exception as e:  # a damaged cache file is rebuilt, not fatal
        log.warning("ignoring the unreadable cache file %s (%s)", path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    return G


def load_mobilestylegan(device: Union[str, torch.device] = "cpu") -> MobileStyleGAN:
    """MobileStyleGAN FFHQ 1024 from the installed `random-face` wheel, frozen, in eval mode.

    The first call converts the IR files (about a second) and writes the result to
    `cache_dir()/mobilestylegan/`, named by the sha256 of the source files; later calls load that.
    Raises NetworkNotFoundError (saying which pip command to run) when the wheel is missing.
    """
    files = wheel_files()
    digest = source_digest(files)
    try:
        path = cache_file(digest)
    except InputError as e:  # no home folder: this run converts, uncached
        log.warning("%s; converting the bundled network without caching it", e)
        path = None
    G = _load_cache(path, digest) if path is not None else None
    if G is None:
        log.info("converting MobileStyleGAN from %s (once; cached at %s)", files["SynthesisNetwork.xml"].parent, path)
        G = convert_mobilestylegan(files)
        meta = {"source sha256": digest, "source": f"{WHEEL}=={WHEEL_VERSION}", "files": sorted(files)}
        try:
            if path is not None:
                _save_cache(G, path, meta)
        except (OSError, InputError) as e:  # a read-only or full cache folder, a folder in the file's place: this run has its network; the next converts again
            log.warning("could not cache the converted network at %s (%s); it is converted again next time", path, error_message(e))
    G.eval().requires_grad_(False)
    G.source = SOURCE_NAME
    G.source_format = "openvino-ir"
    G.source_info = {
        "model": "MobileStyleGAN (Belousov 2021), FFHQ",
        "weights": f"PyPI wheel {WHEEL}=={WHEEL_VERSION} (OpenVINO IR v10), converted by stylelift",
        "licence": "non-commercial use (derived from StyleGAN2 and FFHQ)",
        "source sha256": digest,  # of the IR files together (source_digest)
        "converted weights": str(path) if path is not None else None,
    }
    return G.to(device)
