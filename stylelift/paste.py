"""Pasting an edited aligned face back into the photo it was cut from: the face's square warped
back (`align.sampled_quad` says where the crop sampled the photo), shrunk with a filter first when
the face is smaller in the photo, and blended with a soft mask: the face and forehead
(`face_outline`, from the 68 landmarks) or the whole square."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .align import AlignedFace, face_landmarks, sampled_quad, with_landmarks
from .errors import InputError, is_real
from .images import photo_profile


def paste_back(edited: Image.Image, face: AlignedFace, original: Image.Image, *, region: str = "face", feather: float = 0.06) -> Image.Image:
    """Warp an edited aligned face back into the original photo with a soft-edged mask.

    `region` "face" pastes the face and forehead (`face_outline`, from the landmarks; found again
    in the photo when the face has none recorded), "square" the whole crop square, background
    and all. Pixels outside the crop square are returned untouched. `feather` is the width of the
    square's soft edge as a fraction of its side. Into a black-and-white photo (`_black_and_white`,
    under the face's square too) the face goes in grey too.
    """
    if not isinstance(edited, Image.Image) or not isinstance(original, Image.Image) or not isinstance(face, AlignedFace):
        raise InputError(f"paste_back(edited, face, original) takes the edited face (a PIL image), the AlignedFace and the original photo (a PIL image), got {type(edited).__name__}, {type(face).__name__}, {type(original).__name__}")
    if not is_real(feather):
        raise InputError(f"feather is a fraction of the square's side, 0 to 0.5, got {feather!r:.20}")
    if original.size != face.source_size:
        raise InputError(f"the original photo is {original.width}x{original.height}, but the face was aligned in a {face.source_size[0]}x{face.source_size[1]} photo")
    if edited.width != edited.height or edited.width < 1:
        raise InputError(f"the edited face must be a square image like the aligned crop, got {edited.width}x{edited.height}")
    if not 0 <= feather <= 0.5:  # (NaN fails this too)
        raise InputError(f"feather is a fraction of the square's side, 0 to 0.5, got {feather}")
    if region not in PASTE_REGIONS:
        raise InputError(f"region is one of {', '.join(PASTE_REGIONS)}, got {region!r:.20}")
    original = original.convert("RGB")
    size = edited.size[0]
    # Affine map: original pixel centre (x, y) -> aligned pixel coordinates (u, v).
    crop_size = face.image.size[0] if face.image is not None else (face.size or size)  # what the crop was cut at
    with np.errstate(all="ignore"):  # a damaged record's square may not map at all: refused below
        q = sampled_quad(np.asarray(face.quad, dtype=np.float64), crop_size, face.source_size)
        origin, ex, ey = q[0], (q[3] - q[0]) / size, (q[1] - q[0]) / size
        axes = np.stack([ex, ey], axis=1)
        inv = np.linalg.inv(axes) if np.isfinite(axes).all() and abs(np.linalg.det(axes)) > 0 else np.full([2, 2], np.nan)  # [[dx/du, dx/dv], [dy/du, dy/dv]]^-1
    # PIL AFFINE samples input at (a x + b y + c, d x + e y + f) for output pixel (x, y) (centre at +0.5).
    offset = -inv @ origin
    data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    if not np.isfinite(q).all() or not np.isfinite(inv).all():
        raise InputError("the face's alignment record is damaged: its square does not map into the photo")
    edited = edited.convert("RGB")
    pixels = np.asarray(original)
    # Only the square's bounding box changes: warp into that region (the same samples, shifted: a
    # pixel may differ by a level in float rounding), not into a photo-sized image (2 GB of float32
    # at 48 MP for a small face).
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in q.min(axis=0))
    x1, y1 = (min(limit, int(np.ceil(v)) + 2) for v, limit in zip(q.max(axis=0), original.size))
    result = pixels.copy()
    overlaps = x0 < x1 and y0 < y1  # else the square lies outside the photo, which stays as it is
    if overlaps and _black_and_white(pixels) and _black_and_white(pixels[y0:y1, x0:x1]):  # a colour face in a grey scene stays in colour
        edited = edited.convert("L").convert("RGB")
    outline = None
    if region == "face" and overlaps:  # where the landmarks fall in the edited crop, as fractions of its side
        outline = edit_outline(edited, (with_landmarks(face, original).landmarks + 0.5 - origin) @ inv.T / size)
    # A face smaller in the photo than the crop is shrunk first, with a filter: the affine warp does
    # not filter, and shrinking 6x turned the generator's fine texture into a grid of dots (stripes
    # of 4 px in the crop, pasted 10x smaller, kept a standard deviation of 47 levels; now 0.1-0.3).
    # The warp then only places it, at about 1:1 (the unedited crop pasted back differs from the
    # photo by 2.4 levels on average, against 1.1 when sampled straight from the crop).
    side = int(np.ceil(size * max(np.hypot(*ex), np.hypot(*ey))))
    if 1 <= side < size:
        edited = edited.resize((side, side), Image.Resampling.LANCZOS)
        data = tuple(v * side / size for v in data)
        size = side
    mask = _feather_mask(size, feather)
    if outline is not None:
        mask = np.uint8(np.rint(mask * (_outline_mask(outline, size) / 255.0)))
        if not mask.any():  # landmarks in a line, or outside the square: the photo would come back as it was
            raise InputError("the face's landmarks do not outline a face inside its square; paste the whole square (region 'square')")
    feathered = Image.fromarray(mask)
    a, b, c, d, e, f = data
    for top in range(y0, y1 if overlaps else y0, PASTE_STRIP_ROWS):  # a strip at a time: a close-up face in a 48 MP photo is most of it
        bottom = min(top + PASTE_STRIP_ROWS, y1)
        shifted = (a, b, a * x0 + b * top + c, d, e, d * x0 + e * top + f)
        strip = (x1 - x0, bottom - top)
        warped = edited.transform(strip, Image.Transform.AFFINE, shifted, Image.Resampling.BICUBIC)  # sharper than bilinear near 1:1
        m = np.asarray(feathered.transform(strip, Image.Transform.AFFINE, shifted, Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255.0
        out = pixels[top:bottom, x0:x1].astype(np.float32) * (1 - m) + np.asarray(warped, dtype=np.float32) * m
        inside = m[..., 0] > 0
        result[top:bottom, x0:x1][inside] = np.clip(np.rint(out[inside]), 0, 255).astype(np.uint8)
    pasted = Image.fromarray(result, "RGB")
    if profile := photo_profile(original):  # the photo's colour space, as load_photo kept it
        pasted.info["icc_profile"] = profile
    return pasted


PASTE_STRIP_ROWS = 512  # paste_back blends this many rows at a time (float32 copies of a strip, not of the photo)
PASTE_REGIONS = ("face", "square")
# The face region: the jaw line and the brows, with the brows lifted by FOREHEAD times their distance
# from the chin (the forehead, short of the hairline, which sits about half a face-third above the
# brows: a seam through the hair shows more than one across the skin), the outline grown by
# FACE_MARGIN about its middle, and a soft edge FACE_RAMP of the square's side wide centred on it.
# The region covers the edited face too (`edit_outline`): an edit that widens the jaw keeps it.
FOREHEAD = 0.3
FACE_MARGIN = 1.06
FACE_RAMP = 0.05


def edit_outline(edited: Image.Image, photo_points: np.ndarray) -> np.ndarray:
    """The region to paste [K, 2], as fractions of the crop's side: the face outline of the photo's
    landmarks `photo_points` [68, 2] (in the crop, as fractions) and that of the edited face's own,
    found in the edited crop near them, together."""
    side = edited.width
    lo, hi = photo_points.min(axis=0) * side, photo_points.max(axis=0) * side
    box = tuple(int(round(v)) for v in (*lo, *hi))
    edited_points = (face_landmarks(edited, box) + 0.5) / side
    return _convex_hull(np.concatenate([face_outline(photo_points), face_outline(edited_points)]))


def face_outline(points: np.ndarray) -> np.ndarray:
    """The face region's convex outline [K, 2] from 68 landmarks [68, 2] (photo or crop coordinates)."""
    points = np.asarray(points, dtype=np.float64)
    jaw, brows = points[:17], points[17:27]
    up = brows.mean(axis=0) - points[8]  # from the chin to the middle of the brows
    region = np.concatenate([jaw, brows, brows + up * FOREHEAD])
    middle = region.mean(axis=0)  # (not the hull's corners': a corner more or less would move it)
    return middle + (_convex_hull(region) - middle) * FACE_MARGIN


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull's corners [K, 2], in order."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return np.array(pts).reshape(-1, 2)

    def chain(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and _cross(np.subtract(out[-1], out[-2]), np.subtract(p, out[-2])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(chain(pts) + chain(pts[::-1]))


def _cross(a, b) -> float:
    """The z of the cross product of two 2-D vectors: > 0 when b turns left of a (y up)."""
    return float(a[0] * b[1] - a[1] * b[0])


def _outline_mask(outline: np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size] mask: 255 inside the convex `outline` (fractions of the side, in order),
    0 outside, a smooth ramp FACE_RAMP wide across its edge. From the distance to the edges' lines
    (a drawn polygon, blurred, moved by a whole row of pixels when a corner moved by 1/1000 px)."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    corners = np.asarray(outline, dtype=np.float64)
    turn = np.sign(_cross(corners[1] - corners[0], corners[2] - corners[1])) if len(corners) >= 3 else 0.0  # which way the corners go round
    inside = np.full([size, size], np.inf if turn else -np.inf, dtype=np.float32)  # distance inside, from the nearest edge's line
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        length = np.hypot(*(b - a))
        if length == 0:
            continue
        nx, ny = np.float32(-(b - a)[1] * turn / length), np.float32((b - a)[0] * turn / length)  # the normal pointing in
        inside = np.minimum(inside, (centres[None, :] - np.float32(a[0])) * nx + (centres[:, None] - np.float32(a[1])) * ny)
    return np.uint8(np.rint(_smoothstep(np.clip(inside / FACE_RAMP + 0.5, 0.0, 1.0)) * 255))


def _black_and_white(pixels: np.ndarray) -> bool:
    """A grey photo (uint8 [H, W, 3]): channels within 8 levels of each other (JPEG's colour noise)
    everywhere but a sprinkle (under 0.1% of pixels: a date stamp, a logo); every 4th pixel is read."""
    sample = pixels[::4, ::4].astype(np.int16)
    return float(np.mean(sample.max(axis=2) - sample.min(axis=2) > 8)) < 0.001


def _feather_mask(size: int, feather: float) -> np.ndarray:
    """uint8 mask: 255 in the middle, a smooth ramp to 0 over the outer `feather` of each side."""
    ramp = max(1.0, feather * size)
    t = (np.arange(size) + 0.5) / ramp
    edge = _smoothstep(np.clip(np.minimum(t, t[::-1]) - 0.5, 0.0, 1.0))  # 0 on the outermost half ramp, then up to 1
    return np.uint8(np.rint(np.outer(edge, edge) * 255))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 to 1 for x in [0, 1], with zero slope at both ends."""
    return x * x * (3 - 2 * x)
