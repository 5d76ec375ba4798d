"""Which ws a named style range means on a given network: coarse / middle / fine, or indices.

StyleGAN paper: coarse = 4x4-8x8, middle = 16x16-32x32, fine = 64x64 and up. The ranges are
derived from each network's own layer resolutions (`G.layer_resolutions`), never hard-coded.
"""

from __future__ import annotations

import numbers
import re
from typing import Optional, Union

from ..errors import InputError, shortened

RANGES = {"coarse": (0, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def style_ranges(layer_resolutions: list[int]) -> dict[str, list[int]]:
    return {
        name: [i for i, r in enumerate(layer_resolutions) if lo <= r <= hi]
        for name, (lo, hi) in RANGES.items()
    }


def layer_indices(layers, num_ws: int) -> list[int]:
    """A sequence of ws indices, checked: whole numbers in 0..num_ws-1 (names go through `parse_layers`)."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise InputError(f"layers must be a list of ws indices, got {layers!r} (parse_layers turns 'coarse' or '0-3' into one)")
    out = layers.tolist() if hasattr(layers, "tolist") else [i.item() if hasattr(i, "item") else i for i in layers]  # tensors, arrays
    whole = all(not isinstance(i, bool) and isinstance(i, numbers.Real) and float(i).is_integer() for i in out)  # 3 or 3.0, not 3.5
    if not whole or not all(0 <= i < num_ws for i in out):
        raise InputError(f"layers {out} are not all whole numbers in 0-{num_ws - 1} (these ws have {num_ws})")
    return [int(i) for i in out]


def layer_spec_items(spec: str) -> list[Union[str, tuple[int, int]]]:
    """The items of a layer spec as read without a network: names (coarse, middle, fine, all) and
    index ranges (lo, hi); an InputError for one that no network would take."""
    items: list[Union[str, tuple[int, int]]] = []
    for part in re.split(r"[,|+]", spec):
        part = part.strip().lower()
        if not part:
            raise InputError(f"layers {spec!r} has an empty item; use coarse, middle, fine, all or indices such as 0-3,8")
        if part in RANGES or part == "all":
            items.append(part)
            continue
        m = re.fullmatch(r"0*([0-9]{1,9})(?:-0*([0-9]{1,9}))?", part)  # 0003 is 3; no network has a billion ws (int() of 5,000 digits raised)
        if not m and re.fullmatch(r"[0-9]+(-[0-9]+)?", part):
            raise InputError(f"layer index {shortened(part, 20)} is beyond the ws of any network (they have tens)")
        if not m:
            raise InputError(f"unknown layer name {part[:40]!r}; use coarse, middle, fine, all or indices such as 0-3,8")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InputError(f"layer range {part!r} runs backwards; write it low to high ({hi}-{lo})")
        items.append((lo, hi))
    return items


def parse_layers(spec: Optional[str], layer_resolutions: list[int]) -> list[int]:
    """'coarse', 'middle,fine', '0-3,8' (or a mix), 'all' -> sorted ws indices, checked against num_ws.
    None is all of them (as `apply_direction`'s layers=None; a direction without layers of its own
    has `default_layers` None); a list of indices is checked and sorted."""
    num_ws = len(layer_resolutions)
    if spec is None:
        return list(range(num_ws))
    if not isinstance(spec, str):
        return sorted(set(layer_indices(spec, num_ws)))
    ranges = dict(style_ranges(layer_resolutions), all=list(range(num_ws)))
    out: set[int] = set()
    for part in layer_spec_items(spec):
        if isinstance(part, str):
            out.update(ranges[part])
            continue
        lo, hi = part
        if hi >= num_ws:
            raise InputError(f"layer range {lo}-{hi} is outside 0-{num_ws - 1} for this network ({num_ws} ws)" if hi > lo else f"layer {lo} is outside 0-{num_ws - 1} for this network ({num_ws} ws)")
        out.update(range(lo, hi + 1))
    if not out:
        raise InputError(f"no layers selected by {spec!r}")
    return sorted(out)
