"""Style mixing and truncation on ws [N, num_ws, w_dim]."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..models.base import check_truncation_cutoff


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: Optional[int] = None) -> Tensor:
    """w' = w_avg + psi (w - w_avg) on the first `cutoff` ws (all when None)."""
    check_truncation_cutoff(ws.shape[1], cutoff)
    out = ws.clone()
    n = ws.shape[1] if cutoff is None else cutoff
    out[:, :n] = w_avg.to(ws).lerp(ws[:, :n], psi)
    return out


def mix_styles(row: Tensor, col: Tensor, layers: Sequence[int]) -> Tensor:
    """ws taking `layers` from `col` and every other layer from `row` (both [N, num_ws, w_dim])."""
    out = row.clone()
    idx = torch.as_tensor(list(layers), dtype=torch.long, device=row.device)
    out[:, idx] = col[:, idx]
    return out


def mixing_grid(rows: Tensor, cols: Tensor, layers: Sequence[int]) -> Tensor:
    """ws for every (row, col) cell, row-major: [R * C, num_ws, w_dim]."""
    r, c = rows.shape[0], cols.shape[0]
    row_ws = rows.repeat_interleave(c, dim=0)
    col_ws = cols.repeat(r, 1, 1)
    return mix_styles(row_ws, col_ws, layers)
