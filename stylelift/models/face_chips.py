"""dlib's `extract_image_chip` in torch, so a face chip is differentiable in the image.

dlib cuts an aligned chip (`get_face_chip_details`: a rotated rectangle in the image and the chip's
rows x cols) like this (`dlib/image_transforms/interpolation.h`, `image_pyramid.h`):
1. crop the image to the rotated rectangle's bounding box grown by a margin, clipped to the image;
2. when the chip is much smaller than the rectangle, build an image pyramid of the crop: each level
   is a 5x5 binomial filter ([1 4 6 4 1] / 16 on each axis) sampled every second pixel, with no
   padding, so a level of an H x W image is (H - 3) // 2 x (W - 3) // 2; a point p of one level is
   at p / 2 - (1.25, 0.75) on the next. The level used is the deepest whose copy of the rectangle
   still has more pixels than the chip (the crop itself when even the first level has fewer);
3. map the chip's corners (0, 0), (cols - 1, 0), (0, rows - 1) to the rotated rectangle's corners
   at that level and sample it bilinearly (black outside).

`ChipPlan` is steps 1-3 worked out once for a face (it depends on the landmarks only); `cut_chip`
applies it to an image tensor. dlib's images are uint8 and every step truncates its result: with
`exact=True` so does `cut_chip` (it then equals dlib's chips), without it each step subtracts the
truncation's mean, half a grey level, and stays differentiable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])


@dataclass(frozen=True)
class ChipPlan:
    crop: tuple[int, int, int, int]  # left, top, right, bottom (inclusive) of the crop in the image
    levels: int  # pyramid levels applied to the crop (0: sample the crop itself)
    affine: tuple[float, ...]  # (a, b, c, d, e, f): chip (x, y) -> level point (a x + b y + c, d x + e y + f)
    rows: int
    cols: int


def _rotate(center: tuple[float, float], p: tuple[float, float], angle: float) -> tuple[float, float]:
    s, c = math.sin(angle), math.cos(angle)
    x, y = p[0] - center[0], p[1] - center[1]
    return (center[0] + c * x - s * y, center[1] + s * x + c * y)


def _area(l: float, t: float, r: float, b: float) -> float:
    return max(0.0, r - l + 1) * max(0.0, b - t + 1)  # dlib's drectangle: inclusive corners


def _down(l: float, t: float, r: float, b: float) -> tuple[float, float, float, float]:
    return (l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75)


def plan_chip(rect: tuple[float, float, float, float], angle: float, rows: int, cols: int, image_size: tuple[int, int]) -> ChipPlan:
    """The chip of dlib `chip_details` (rect = left, top, right, bottom) in an image of (height, width)."""
    height, width = image_size
    size = rows * cols
    depth, grow, r = 0, 2.0, _down(*rect)
    while _area(*r) > size:
        r = _down(*r)
        depth += 1
        grow = grow * 2 + 2
    l, t, rt, b = rect
    center = ((l + rt) / 2, (t + b) / 2)
    corners = [_rotate(center, p, angle) for p in ((l, t), (rt, t), (l, b), (rt, b))]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    box = [min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow]
    box = [max(box[0], 0), max(box[1], 0), min(box[2], width - 1), min(box[3], height - 1)]
    crop = tuple(int(math.floor(v + 0.5)) for v in box)
    r = (l - crop[0], t - crop[1], rt - crop[0], b - crop[1])
    levels = 0
    while _area(*_down(*r)) > size:
        r = _down(*r)
        levels += 1
    center = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
    p0, p1, p2 = (_rotate(center, p, angle) for p in ((r[0], r[1]), (r[2], r[1]), (r[0], r[3])))
    a, d = (p1[0] - p0[0]) / max(cols - 1, 1), (p1[1] - p0[1]) / max(cols - 1, 1)
    bb, e = (p2[0] - p0[0]) / max(rows - 1, 1), (p2[1] - p0[1]) / max(rows - 1, 1)
    return ChipPlan(crop, levels, (a, bb, p0[0], d, e, p0[1]), rows, cols)


def pyramid_down(img: Tensor, *, exact: bool = False) -> Tensor:
    """One level of dlib's pyramid_down<2>: [N, C, H, W] -> [N, C, (H - 3) // 2, (W - 3) // 2]."""
    k = _BINOMIAL.to(img)
    kernel = (k[:, None] * k[None, :] / 256).expand(img.shape[1], 1, 5, 5)
    out = F.conv2d(img, kernel, stride=2, groups=img.shape[1])
    return out.floor() if exact else out - 0.5


def cut_chip(img: Tensor, plan: ChipPlan, *, exact: bool = False) -> Tensor:
    """img [N, 3, H, W] (0..255 values) -> chips [N, 3, rows, cols] cut as dlib cuts them."""
    l, t, r, b = plan.crop
    x = img[:, :, t : b + 1, l : r + 1]
    for _ in range(plan.levels):
        x = pyramid_down(x, exact=exact)
    h, w = x.shape[-2:]
    a, bb, c, d, e, f = plan.affine
    ys, xs = torch.meshgrid(torch.arange(plan.rows, dtype=img.dtype, device=img.device), torch.arange(plan.cols, dtype=img.dtype, device=img.device), indexing="ij")
    px, py = a * xs + bb * ys + c, d * xs + e * ys + f
    # dlib samples only where all four neighbours are inside; grid_sample's zeros padding agrees there
    inside = (px >= 0) & (py >= 0) & (px < w - 1) & (py < h - 1)
    grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], dim=-1).expand(x.shape[0], -1, -1, -1)
    chip = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    chip = chip.floor() if exact else chip - 0.5
    return chip * inside
