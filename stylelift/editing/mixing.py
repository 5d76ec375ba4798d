"""Style mixing and truncation on ws [N, num_ws, w_dim]."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import InputError, describe
from ..models.base import check_psi, check_truncation_cutoff
from .layers import layer_indices


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: Optional[int] = None) -> Tensor:
    """w' = w_avg + psi (w - w_avg) on the first `cutoff` ws (all when None)."""
    psi = check_psi(psi)
    if not isinstance(ws, Tensor) or ws.ndim != 3 or not ws.is_floating_point():
        raise InputError(f"ws must be a float tensor [N, num_ws, w_dim], got {describe(ws)}")
    if not isinstance(w_avg, Tensor) or w_avg.shape not in (ws.shape[2:], ws.shape[1:]):
        raise InputError(f"w_avg must be a tensor [w_dim] (G.w_avg) or one per layer [num_ws, w_dim], here {list(ws.shape[1:])}, got {describe(w_avg)}")
    check_truncation_cutoff(ws.shape[1], cutoff)
    out = ws.clone()
    n = ws.shape[1] if cutoff is None else int(cutoff)
    out[:, :n] = (w_avg if w_avg.ndim == 1 else w_avg[:n]).to(ws).lerp(ws[:, :n], psi)
    if not torch.isfinite(out).all() and torch.isfinite(ws).all():
        raise InputError(f"psi {psi:g} takes the ws beyond float32's range: ask for a psi nearer 0")
    return out


def mix_styles(row: Tensor, col: Tensor, layers: Sequence[int]) -> Tensor:
    """ws taking `layers` from `col` and every other layer from `row` (both [N, num_ws, w_dim])."""
    if not isinstance(row, Tensor) or not isinstance(col, Tensor) or row.ndim != 3 or col.ndim != 3 or row.shape[1:] != col.shape[1:] or col.shape[0] not in (1, row.shape[0]) or row.dtype != col.dtype:
        raise InputError(f"row and column ws must be alike [N, num_ws, w_dim] (or one column [1, ...]), got {list(row.shape)} {row.dtype} and {list(col.shape)} {col.dtype}")
    if row.device != col.device:
        raise InputError(f"row and column ws are on different devices ({row.device} and {col.device})")
    picked = layer_indices(layers, row.shape[1])
    if not picked:  # as apply_direction: a mix of nothing is a mistake, not the row itself
        raise InputError("layers is empty: name the ws to take from the column (parse_layers turns 'coarse' or '0-3' into them)")
    out = row.clone()
    idx = torch.as_tensor(picked, dtype=torch.long, device=row.device)
    out[:, idx] = col[:, idx]
    return out


def mixing_grid(rows: Tensor, cols: Tensor, layers: Sequence[int]) -> Tensor:
    """ws for every (row, col) cell, row-major: [R * C, num_ws, w_dim]."""
    if not isinstance(rows, Tensor) or not isinstance(cols, Tensor) or rows.ndim != 3 or cols.ndim != 3 or rows.shape[1:] != cols.shape[1:] or rows.dtype != cols.dtype:
        raise InputError(f"row and column ws must be alike [N, num_ws, w_dim] of one network, got {describe(rows)} and {describe(cols)}")
    r, c = rows.shape[0], cols.shape[0]
    row_ws = rows.repeat_interleave(c, dim=0)
    col_ws = cols.repeat(r, 1, 1)
    return mix_styles(row_ws, col_ws, layers)
