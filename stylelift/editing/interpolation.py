"""Paths through latent space: lerp in W/W+, slerp in Z, with easing and loops."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError, describe, is_whole

EASINGS = ("linear", "smooth")


def ease(t: Tensor, easing: str) -> Tensor:
    if easing == "linear":
        return t
    if easing == "smooth":
        return t * t * (3 - 2 * t)  # smoothstep: zero speed at each key
    raise InputError(f"easing must be one of {EASINGS}, got {easing!r}")


def _check_pair(a, b, what: str) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise InputError(f"{what} takes two tensors, got {type(a).__name__} and {type(b).__name__} (torch.as_tensor turns arrays into them)")
    if a.shape != b.shape:
        raise InputError(f"{what} needs two latents of one shape, got {list(a.shape)} and {list(b.shape)}")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise InputError(f"{what} needs float latents, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise InputError(f"{what} needs two latents on one device, got {a.device} and {b.device}")


def _times(t, dtype: torch.dtype, device: torch.device, ndim: int) -> Tensor:
    """t (one number, or [T]) as [T, 1, ...] to broadcast against a latent of `ndim` dims."""
    try:
        t = torch.as_tensor(t, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"t is a number or a list of numbers, got {describe(t)}") from None
    return t.reshape([-1] + [1] * ndim)


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """a, b [...]; t [T] (or one number) -> [T, ...]; exactly a at t = 0 and b at t = 1."""
    _check_pair(a, b, "lerp")
    dtype = torch.promote_types(a.dtype, b.dtype)  # float32 and float64 keys give float64, as a + (b - a) t does
    a, b = a.to(dtype), b.to(dtype)
    return torch.lerp(a, b, _times(t, dtype, a.device, a.ndim))  # a + (b - a) t, or b - (b - a)(1 - t) from t = 0.5 on, which ends on b


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation along the last dim, with the norm interpolated linearly.

    For equal norms the norm is kept (to float rounding: a few ulp in float32). The direction turns from a's towards b's in the plane
    they span, by the angle atan2(|b_perp|, b.a) (stable near 0 and near pi, unlike acos). Between
    opposite vectors every great circle is as short: the path takes the one through the axis least
    along `a`.
    """
    _check_pair(a, b, "slerp")
    dtype = torch.promote_types(a.dtype, b.dtype)  # as lerp: float32 and float64 keys give float64
    a, b = a.to(dtype), b.to(dtype)
    t = _times(t, dtype, a.device, a.ndim)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    if not (na > 0).all() or not (nb > 0).all():
        raise InputError("spherical interpolation needs non-zero, finite vectors (a zero one has no direction)")
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


def path_steps(num_keys: int, frames: int, *, loop: bool = False, easing: str = "linear") -> list[tuple[int, int, float]]:
    """Where each frame of a path through `num_keys` keys lies: (key a, key b, t), the frame being
    a + (b - a) * t, with t already eased; t is exactly 0 or 1 on a key's own frame.

    The frames are shared out between the segments as evenly as whole numbers allow. Without a
    loop the first frame is key 0 and the last the last key; a loop returns to key 0 and leaves out
    its repeated frame at the end.
    """
    if not is_whole(num_keys) or num_keys < 2:
        raise InputError("interpolation needs at least two keys")
    if not is_whole(frames) or frames < 2:
        raise InputError(f"interpolation needs a whole number of frames, at least two, got {frames!r:.20}")
    if frames < num_keys:
        raise InputError(f"{frames} frames cannot pass through {num_keys} keys: ask for at least {num_keys}")
    segments = num_keys if loop else num_keys - 1
    span = frames if loop else frames - 1  # frame steps along the whole path
    bounds = [math.floor(k * span / segments + 0.5) for k in range(segments + 1)]  # the frame of each key
    steps = []
    for i in range(frames):
        s = max(k for k in range(segments) if bounds[k] <= i and bounds[k + 1] > bounds[k]) if i < span else segments - 1
        t = ease(torch.tensor((i - bounds[s]) / max(bounds[s + 1] - bounds[s], 1), dtype=torch.float32), easing).item()
        steps.append((s, (s + 1) % num_keys, t))
    return steps


def between(a: Tensor, b: Tensor, t: float, *, spherical: bool = False) -> Tensor:
    """One frame of `path_steps`: a and b themselves at t = 0 and 1, else their lerp (or slerp)."""
    dtype = torch.promote_types(a.dtype, b.dtype)  # every frame in one dtype
    if t == 0:
        return a.to(dtype, copy=True)
    if t == 1:
        return b.to(dtype, copy=True)
    return (slerp if spherical else lerp)(a, b, torch.tensor([t], dtype=dtype, device=a.device))[0]


def interpolation_path(keys: Tensor, frames: int, *, loop: bool = False, easing: str = "linear", spherical: bool = False) -> Tensor:
    """keys [K, ...] -> [frames, ...] through every key in order (and back to the first with `loop`).

    Every key is a frame of its own, exactly; see `path_steps`.
    """
    if not isinstance(keys, Tensor) or not keys.is_floating_point() or keys.ndim < 2:
        raise InputError(f"keys must be a float tensor [K, ...] (z [K, z_dim] or ws [K, num_ws, w_dim]), got {describe(keys)}")
    if not torch.isfinite(keys).all():
        raise InputError("keys hold NaN or infinite values")
    return torch.stack([between(keys[a], keys[b], t, spherical=spherical) for a, b, t in path_steps(keys.shape[0], frames, loop=loop, easing=easing)])
