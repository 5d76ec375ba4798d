"""Paths through latent space: lerp in W/W+, slerp in Z, with easing and loops."""

from __future__ import annotations

import math

import torch
from torch import Tensor

EASINGS = ("linear", "smooth")


def ease(t: Tensor, easing: str) -> Tensor:
    if easing == "linear":
        return t
    if easing == "smooth":
        return t * t * (3 - 2 * t)  # smoothstep: zero speed at each key
    raise ValueError(f"easing must be one of {EASINGS}, got {easing!r}")


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """a, b [...]; t [T] -> [T, ...]."""
    t = t.reshape([-1] + [1] * a.ndim)
    return a + (b - a) * t


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation along the last dim, with the norm interpolated linearly.

    For equal norms the norm is kept exactly. The direction turns from a's towards b's in the plane
    they span, by the angle atan2(|b_perp|, b.a) (stable near 0 and near pi, unlike acos). Between
    opposite vectors every great circle is as short: the path takes the one through the axis least
    along `a`.
    """
    t = t.reshape([-1] + [1] * a.ndim)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    if not (na > 0).all() or not (nb > 0).all():
        raise ValueError("spherical interpolation needs non-zero vectors (a zero one has no direction)")
    ua, ub = a / na, b / nb
    dot = (ua * ub).sum(-1, keepdim=True)
    perp = ub - dot * ua  # b's direction without its part along a
    perp = perp - (perp * ua).sum(-1, keepdim=True) * ua  # again: near-opposite keys leave float32 rounding along a
    pn = perp.norm(dim=-1, keepdim=True)
    aligned = pn < 1e-6  # parallel (no turn, any perp will do) or opposite (a half turn through some axis)
    if aligned.any():
        axis = torch.nn.functional.one_hot(ua.abs().argmin(dim=-1), ua.shape[-1]).to(ua.dtype)
        axis = axis - (axis * ua).sum(-1, keepdim=True) * ua
        perp, pn = torch.where(aligned, axis, perp), torch.where(aligned, axis.norm(dim=-1, keepdim=True), pn)
    omega = torch.atan2(torch.where(aligned, torch.zeros_like(pn), pn), dot)
    direction = torch.cos(omega * t) * ua + torch.sin(omega * t) * (perp / pn)
    direction = direction / direction.norm(dim=-1, keepdim=True)  # unit to the last bit, so the norm is the interpolated one
    return direction * (na + (nb - na) * t)


def interpolation_path(keys: Tensor, frames: int, *, loop: bool = False, easing: str = "linear", spherical: bool = False) -> Tensor:
    """keys [K, ...] -> [frames, ...] through every key in order (and back to the first with `loop`).

    Every key is a frame of its own, exactly (given at least one frame per segment): the frames
    are shared out between the segments as evenly as whole numbers allow. Without a loop the first
    frame is keys[0] and the last keys[-1]; a loop leaves out the repeated first key at the end.
    """
    if keys.shape[0] < 2:
        raise ValueError("interpolation needs at least two keys")
    if frames < 2:
        raise ValueError("interpolation needs at least two frames")
    if loop:
        keys = torch.cat([keys, keys[:1]])
    segments = keys.shape[0] - 1
    span = frames if loop else frames - 1  # frame steps along the whole path
    bounds = [math.floor(k * span / segments + 0.5) for k in range(segments + 1)]  # the frame of each key
    out = []
    for i in range(frames):
        s = max(k for k in range(segments) if bounds[k] <= i and bounds[k + 1] > bounds[k]) if i < span else segments - 1
        t = ease(torch.tensor([(i - bounds[s]) / max(bounds[s + 1] - bounds[s], 1)], dtype=torch.float32, device=keys.device), easing)
        fn = slerp if spherical else lerp
        frame = fn(keys[s], keys[s + 1], t)[0]
        if t.item() == 0:
            frame = keys[s].clone()
        elif t.item() == 1:
            frame = keys[s + 1].clone()
        out.append(frame)
    return torch.stack(out)
