"""Images at the edges: model tensors (float RGB NCHW in [-1, 1]) <-> uint8 HWC arrays and files."""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import InputError, MissingFileError, VideoError, describe, first_line, is_real, is_whole
from .fileio import FULL_ERRNOS, as_path, atomic_path, special_file


def to_uint8(img: Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C], rounding as NVIDIA's generate.py does."""
    if not isinstance(img, Tensor) or img.ndim != 4 or not 1 <= img.shape[1] <= 4 or not img.is_floating_point():
        got = f"{img.dtype} {tuple(img.shape)}" if isinstance(img, Tensor) else type(img).__name__
        raise InputError(f"expected a float image batch [N, C, H, W] (C from 1 to 4) in [-1, 1], as networks give it; got {got}")
    x = (img.detach().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.cpu().numpy()


def to_tensor(images: Image.Image | np.ndarray) -> Tensor:
    """A PIL image (of any mode: made RGB as `load_photo` makes it, 16-bit scaled, alpha over white),
    or uint8 [H, W, 3] / [N, H, W, 3] arrays -> float [N, 3, H, W] in [-1, 1] (the inverse of
    `to_uint8` up to rounding): what `project` takes as its target."""
    array = np.array(to_rgb(images) if isinstance(images, Image.Image) else images)  # a copy torch may own
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise InputError(f"expected an RGB image or uint8 [N, H, W, 3] arrays, got {array.dtype} {list(array.shape)}")
    batch = torch.from_numpy(array if array.ndim == 4 else array[None])
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1


def check_image(array, channels: tuple[int, ...] = (1, 3, 4), what: str = "an image") -> None:
    """An image for a file: a uint8 HWC array with one of `channels` (a float array would be cast to
    black, a 4-channel one written as scrambled RGB)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in channels:
        got = f"{array.dtype} {list(array.shape)}" if isinstance(array, np.ndarray) else describe(array)
        raise InputError(f"{what} is a uint8 [H, W, C] array, C {' or '.join(map(str, channels))} (to_uint8 makes them of a network's output), got {got}")


def to_pil(array: np.ndarray) -> Image.Image:
    """uint8 HWC (C = 1, 3 or 4) -> PIL image (L, RGB, RGBA)."""
    check_image(array)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]])


def save_image(array: np.ndarray, path: str | os.PathLike, *, icc_profile: Optional[bytes] = None, text: Optional[dict[str, str]] = None) -> None:
    """Write a uint8 HWC image atomically (temporary file, then rename); the format follows the suffix.
    `icc_profile`: the colour profile of the photo the pixels come from (`photo_profile`), if any;
    `text`: PNG text chunks (key: value), which other formats leave out."""
    suffix = as_path(path, "the image file").suffix.lower()
    if Image.registered_extensions().get(suffix) not in Image.SAVE:  # Pillow would name the temporary file's suffix
        raise InputError(f"{Path(path).name}: name an image file by its format, e.g. .png or .jpg (Pillow writes no {suffix or 'file without a suffix'})")
    options = {"icc_profile": icc_profile} if icc_profile else {}
    if text and suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    image = to_pil(array)
    if image.mode == "RGBA" and Path(path).suffix.lower() in NO_ALPHA:  # (Pillow: "cannot write mode RGBA as JPEG")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, **options)


NO_ALPHA = {".jpg", ".jpeg", ".jpe", ".jfif", ".bmp"}  # formats Pillow writes without transparency: composited on white, as photos are read


MAX_PROFILE_BYTES = 1_000_000  # Pillow reads no larger PNG iCCP chunk (its MAX_TEXT_CHUNK); RGB profiles are a few kB


def photo_profile(image: Image.Image) -> Optional[bytes]:
    """The RGB colour profile a photo was read with (`load_photo` keeps it in `info`), else None.

    stylelift works on the photo's pixel values as they are; what is written from a photo (aligned
    crops, the face pasted back) carries its profile, so a colour-managed viewer shows those images
    as it shows the photo (a wide-gamut phone photo would otherwise look washed out beside it)."""
    icc = image.info.get("icc_profile")
    if not isinstance(icc, bytes) or len(icc) > MAX_PROFILE_BYTES:
        return None
    return icc if icc[16:20] == b"RGB " else None  # the header's colour space: not a CMYK or grey profile


def make_grid(images: Sequence[np.ndarray], cols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile equally sized uint8 HWC images (a list, or an array [N, H, W, C] as `to_uint8` gives) into
    one (row-major), `cols` wide (default: near-square), `pad` pixels apart."""
    images = list(images)
    if not images:
        raise InputError("no images to tile")
    for im in images:
        check_image(im, what="each image to tile")
    shapes = {np.shape(im) for im in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise InputError(f"images to tile must be HWC arrays of one size, got shapes {sorted(shapes)[:3]}")
    if (cols is not None and (not is_whole(cols) or cols < 1)) or not is_whole(pad) or pad < 0:
        raise InputError(f"cols must be a whole number >= 1 (or None) and pad one >= 0, got {cols!r:.20} and {pad!r:.20}")
    h, w, c = images[0].shape
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.zeros([rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c], dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = im
    return grid


def check_photo_path(path: str | os.PathLike) -> Path:
    """A photo's path, refused before anything is read when it names nothing, a folder or a
    special file (a named pipe would be waited on forever)."""
    path = as_path(path, "the photo")
    if not path.exists():
        raise MissingFileError(f"no such photo: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a photo")
    if special_file(path):
        raise InputError(f"{path} is not a regular file, not a photo")
    return path


def load_photo(path: str | os.PathLike) -> Image.Image:
    """Read a photo as 8-bit RGB: EXIF rotation applied, alpha composited on white, grayscale and
    16-bit images converted. Anything that is not a readable image raises InputError."""
    from PIL import ImageOps

    path = check_photo_path(path)
    kind = _file_kind(path)
    if kind == "heif":  # iPhone photos, under any name: Pillow reads them through a plugin
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            raise InputError(f"{path.name} is a HEIC photo; reading it needs the pillow-heif package (pip install pillow-heif), or save it as JPEG") from None
        register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # 90-180 MP: a big photo, read (and shrunk later); more is refused below
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # "Corrupt EXIF data": the pixels read fine
            with Image.open(path, formats=photo_formats()) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
    except MemoryError:
        raise
    except Image.UnidentifiedImageError:
        if kind == "eps":
            raise InputError(f"{path.name} is PostScript (EPS), which Pillow reads by running Ghostscript: not read here; save it as PNG or JPEG") from None
        raise InputError(f"{path.name} is not an image (in no format Pillow reads)") from None
    except OSError as e:
        if e.errno is not None:  # the file, not its content: said as for any other file ("X: Permission denied")
            raise type(e)(e.errno, e.strerror, str(path)) from None
        raise InputError(f"{path.name} is not a readable image ({first_line(e) or type(e).__name__})") from None  # "image file is truncated"
    except Exception as e:  # Pillow's decoders raise many types on damaged files (AVIF: RuntimeError, QOI: IndexError, DDS: NotImplementedError)
        raise InputError(f"{path.name} is not a readable image ({type(e).__name__}{': ' + first_line(e) if str(e).strip() else ''})") from None
    profile = photo_profile(im)
    im = to_rgb(im)
    im.info.pop("icc_profile", None)
    if profile:
        im.info["icc_profile"] = profile
    return im


RUNS_A_PROGRAM = {"EPS"}  # formats Pillow reads by running another program (Ghostscript): not from a file of unknown origin


def photo_formats() -> list[str]:
    """The formats a photo is read in: all Pillow reads (with the plugins registered now), but those
    that run a program."""
    Image.init()
    return [f for f in Image.OPEN if f not in RUNS_A_PROGRAM]


def _file_kind(path: Path) -> str:
    """'heif' for an ISO media file of a HEIF brand (what a .heic name promises), 'eps' for PostScript
    (text or DOS binary EPS), else 'other'."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return "other"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
        return "heif"
    return "eps" if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")) else "other"


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (16-bit and float images are scaled, alpha goes over white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(a)  # a float image's NaN and -inf pixels are black, +inf ones white (not a warning from the cast below)
        brightest = a[finite].max(initial=0.0)
        if im.mode.startswith("I;16"):
            top = 65535.0  # 16-bit, however dark
        else:  # "I" holds 16-bit PNGs in some Pillow versions and 8-bit values in others: judge by range
            top = 65535.0 if im.mode != "F" and brightest > 255 else 255.0
        if im.mode == "F" and brightest <= 1.0:
            top = 1.0
        a[~finite] = np.where(a[~finite] > 0, top, 0)
        im = Image.fromarray(np.uint8(np.clip(np.rint(a / top * 255), 0, 255)), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


GIF_MAX_FPS = 50  # GIF delays are whole hundredths of a second; browsers slow anything under 2 to 10


def _gif_timing(frames: list, fps: float) -> tuple[list, list[int]]:
    """Frames and per-frame delays in ms (multiples of 10) for a GIF at `fps`, at most GIF_MAX_FPS:
    every frame is kept (each may be a key or a strength of its own), so a faster video plays
    slower; delays are rounded cumulatively, so the whole plays in the right time."""
    fps = min(fps, GIF_MAX_FPS)
    ends = [math.floor((i + 1) * 100 / fps + 0.5) for i in range(len(frames))]  # centiseconds
    return frames, [10 * (b - a) for a, b in zip([0] + ends[:-1], ends)]


def stopped_how(code: int) -> str:
    """A subprocess's exit status in words: a negative one is the signal that killed it."""
    import signal

    if code >= 0:
        return f"it stopped with exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"it was killed by signal {-code}"
    why = {"SIGXFSZ": " (the file size limit, ulimit -f)", "SIGKILL": " (out of memory?)", "SIGSEGV": " (it crashed)"}.get(name, "")
    return f"it was killed by {name}{why}"


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 30) -> None:
    """Write frames (uint8 HWC, same size) as mp4 (H.264 via imageio-ffmpeg) or gif, atomically.

    An mp4's frames may come from an iterator and are written as they come, so a long video
    never has to fit in memory; a GIF's are gathered first (its frame timing needs them all).
    """
    path = as_path(path, "the video file")
    if not (is_real(fps) and fps > 0):
        raise InputError(f"fps must be a number of frames per second above 0, got {fps!r:.20}")
    if path.suffix.lower() == ".gif" and fps < 100 / 65535:
        raise InputError(f"fps {fps:g}: a GIF frame lasts at most 655.35 s (fps {100 / 65535:.7f} or more)")
    if path.suffix.lower() not in (".gif", *H264_SUFFIXES):
        raise InputError(f"a video is written as .mp4 (or .m4v, .mov, .mkv) or .gif, not {path.suffix or 'a name without a suffix'}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise InputError(f"no frames to write to {path.name}")
    check_image(first, what="a video frame")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            frames, durations = _gif_timing([first, *frames], fps)
            images = [to_pil(rgb_frame(frame)) for frame in frames]  # grey and RGBA frames as in an mp4 (a GIF's transparency is 1 bit)
            with open(tmp, "wb") as f:  # opened here, so a folder that cannot be written is an OSError about this file
                images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
        else:
            _write_mp4(tmp, first, frames, fps, name=path.name)


H264_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")  # containers ffmpeg puts H.264 in


def rgb_frame(frame: np.ndarray) -> np.ndarray:
    """A video frame's RGB: grey repeated, transparency composited on white (as photos are read)."""
    check_image(frame, what="a video frame")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    if frame.shape[2] == 4:
        alpha = frame[..., 3:].astype(np.float32) / 255
        return np.rint(frame[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return frame


def find_ffmpeg(what: str = "mp4 videos") -> str:
    """The ffmpeg that writes mp4s (imageio-ffmpeg's own, else the system's); VideoError when there is
    none that can run, so that a command can say so before its work rather than after it."""
    import shutil

    try:
        from imageio_ffmpeg import get_ffmpeg_exe
    except ImportError:
        raise VideoError(f"no ffmpeg to write {what}: pip install imageio-ffmpeg") from None
    try:
        exe = get_ffmpeg_exe()
    except RuntimeError as e:  # imageio-ffmpeg found none
        raise VideoError(f"no ffmpeg to write {what} ({first_line(e)})") from None
    if shutil.which(exe) is None:  # missing, or not executable
        raise VideoError(f"cannot run ffmpeg ({exe}) to write {what}")
    return exe


def _write_mp4(tmp: Path, first: np.ndarray, rest: Iterable[np.ndarray], fps: float, *, name: str) -> None:
    """H.264 by imageio-ffmpeg's ffmpeg, fed raw RGB frames through a pipe. ffmpeg's exit code is
    checked and its last message line reported (imageio's writer ignores the one, and its error
    is a screenful with ffmpeg's command line in it)."""
    import subprocess
    import tempfile

    h, w = first.shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))  # H.264 in yuv420p wants even sizes
    size = f"{w + w % 2}x{h + h % 2}"
    cmd = ["-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", size, "-r", str(fps), "-i", "-",
           "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10",
           f"file:{Path(tmp).absolute()}"]  # (ffmpeg takes "a:b.mp4" for protocol "a"; absolute(), not abspath(), keeps "link/..")
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg never blocks on a full stderr
        try:
            proc = subprocess.Popen([find_ffmpeg(name), *cmd], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        except OSError as e:
            raise VideoError(f"cannot run ffmpeg to write {name}: {first_line(e)}") from None
        try:
            for frame in itertools.chain([first], rest):  # a BrokenPipeError from making a frame (its progress line on a closed stderr) is not ffmpeg's
                frame = rgb_frame(frame)
                if frame.shape[:2] != first.shape[:2]:
                    raise InputError(f"video frames differ in size: {frame.shape[1]}x{frame.shape[0]} after {w}x{h}")
                try:
                    proc.stdin.write(np.ascontiguousarray(np.pad(frame, pad, mode="edge") if h % 2 or w % 2 else frame, dtype=np.uint8).data)
                except BrokenPipeError:  # ffmpeg stopped reading: its exit code and message say why
                    break
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            code = proc.wait()
        finally:
            if proc.poll() is None:  # an error of ours, or Ctrl-C: the half-written video goes too
                proc.kill()
                proc.wait()
        if code != 0:
            log.seek(0)
            text = log.read().decode(errors="replace")
            if (failed := next((e for e in FFMPEG_WRITE_ERRNOS if os.strerror(e) in text), None)) is not None:  # a full disk: said as every other writer says it
                raise OSError(failed, os.strerror(failed), str(tmp))  # (atomic_path names the file asked for)
            said = [line for line in text.splitlines() if line.strip()]
            raise VideoError(f"ffmpeg could not write {name}: " + (said[-1].strip()[:300] if said else stopped_how(code)))


# what ffmpeg's log says (in the system's words) when the file system refused its writes; its last
# line is another ("Nothing was written into output file ...")
FFMPEG_WRITE_ERRNOS = sorted(FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EIO})
