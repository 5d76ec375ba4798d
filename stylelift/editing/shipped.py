"""Directions shipped with stylelift (for the bundled network), found by name."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import InputError, MissingFileError
from ..latents import made_for_another
from .directions import Direction, load_direction

SHIPPED = ("age", "gender")


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("stylelift") / "data" / "directions" / f"{name}.npy"))


def resolve_direction(spec: str | os.PathLike, G) -> Direction:
    """'age' / 'gender' -> the shipped direction (bundled network only); any other string, or a
    Path (even one named age), is a .npy path.

    A direction whose sidecar names another network is refused.
    """
    from ..models import network_id

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
        if spec in SHIPPED:
            spec = os.path.join(".", spec)  # the file, not the shipped direction
    if not isinstance(spec, str):
        raise InputError(f"a direction is named by a string (age, gender) or a .npy path, got {type(spec).__name__}")
    if not spec.strip():
        raise InputError(f"the direction's name is empty: name a shipped one ({', '.join(SHIPPED)}, bundled network) or a direction file (.npy)")
    if spec in SHIPPED:
        path = shipped_path(spec)
        if not path.exists():
            raise InputError(f"no shipped {spec!r} direction in this install; learn one with `stylelift directions learn --attribute {spec}`")
    else:
        path = Path(spec)
        if not path.exists():
            raise MissingFileError(f"no direction {spec!r}: name a shipped one ({', '.join(SHIPPED)}, bundled network) or a direction file (.npy)")
    d = load_direction(path)  # the network its sidecar names is checked first: that explains a w of another size
    if (made_for := made_for_another(d.meta, network_id(G))) is not None:
        hint = f" (the shipped {spec!r} direction is for {d.meta.get('network', made_for)})" if spec in SHIPPED else ""
        method = d.meta.get("method")
        remedy = f"make one for it with `stylelift directions {method}`" if method in ("sefa", "pca") else "learn one with `stylelift directions learn`"
        raise InputError(f"{path.name} was made for network {made_for}, not this one ({network_id(G)}){hint}; {remedy}")
    return d if d.vector.shape[1] == G.w_dim else load_direction(path, w_dim=G.w_dim)  # the latter: refused with its size
