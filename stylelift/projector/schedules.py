"""Pure schedule and regulariser functions of the projector (Karras et al. 2020, Appendix D; stylegan2-ada-pytorch `projector.py`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def lr_at(step: int, steps: int, *, lr: float = 0.1, rampup: float = 0.05, rampdown: float = 0.25, rampup_min_steps: int = 0) -> float:
    """Learning rate: linear ramp-up over the first `rampup` of the run (but over at least
    `rampup_min_steps` steps, or half a shorter run), cosine ramp-down over the last `rampdown`."""
    t = step / steps
    if rampup > 0:  # 0: no ramp-up at all, floor or not
        rampup = max(rampup, min(0.5, rampup_min_steps / steps))
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return lr * ramp


def w_noise_scale_at(step: int, steps: int, *, w_std: float, initial: float = 0.05, ramp: float = 0.75) -> float:
    """Std of the noise added to w each step: decays quadratically to 0 at `ramp` of the run."""
    t = step / steps
    return w_std * initial * max(0.0, 1.0 - t / ramp) ** 2


def noise_regularization(noises: list[Tensor]) -> Tensor:
    """Per-sample sum of squared autocorrelations (shift 1, both axes) over a 2x pyramid of each map.

    noises: maps [N, 1, h, w]. Returns [N]. Pushes the optimised noise to stay white, so it cannot
    smuggle image content. Each map is pooled down to 8 px (NVIDIA's rule: a map stops once its
    height is 8 or less). All maps that share a size at some pyramid level are stacked and done in
    one go: 9 levels at 1024 px instead of NVIDIA's 73 map-levels (ATen ops, forward and backward:
    2,141 -> 293), and kernel launches are what a batch-1 projection step on a GPU waits for.
    """
    levels: dict[tuple[int, int], list[Tensor]] = {}
    for noise in noises:
        levels.setdefault(tuple(noise.shape[2:]), []).append(noise)
    total = 0.0
    while levels:
        size = max(levels)  # tallest first: every map that pools down to a later size is already in
        stack = torch.cat(levels.pop(size), dim=1)  # [N, maps, h, w]
        for dim in (3, 2):
            total = total + ((stack * torch.roll(stack, shifts=1, dims=dim)).mean(dim=[2, 3]) ** 2).sum(dim=1)
        if size[0] > 8:
            pooled = F.avg_pool2d(stack, kernel_size=2)
            levels.setdefault(tuple(pooled.shape[2:]), []).append(pooled)
    return total


@torch.no_grad()
def normalize_noises_(noises: list[Tensor]) -> None:
    """In place: each sample's map to zero mean and unit variance."""
    for noise in noises:
        noise -= noise.mean(dim=[1, 2, 3], keepdim=True)
        noise *= noise.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
