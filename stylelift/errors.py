"""Errors a user can cause. The CLI prints their message as one line and exits with code 1."""

import errno
import logging
import math
import numbers
import sys


class StyleliftError(Exception):
    """Base class of every expected, user-facing error."""


class CheckpointError(StyleliftError, ValueError):
    """A network file that cannot be read: unknown format, corrupt, truncated, or inconsistent."""


class UnsupportedNetworkError(CheckpointError):
    """A whole, readable network file of a kind or version stylelift does not read (StyleGAN3, a
    newer format version): reading it again gives the same answer, so a downloaded one is kept."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that names a global outside the allow-list, i.e. it asks to run code."""


class InputError(StyleliftError, ValueError):
    """A bad argument or input file (wrong latent shape, unreadable image, ...)."""


class MissingFileError(StyleliftError, FileNotFoundError):
    """A file the call names does not exist (a photo, a latent file, a direction, a model file)."""


class VideoError(StyleliftError, RuntimeError):
    """ffmpeg failed to write a video (a full disk, an ffmpeg that cannot run or lacks H.264)."""


def shortened(text: str, most: int = 24) -> str:
    """`text` for a message, cut to `most` characters with '...' where it was longer."""
    return text if len(text) <= most else text[:most] + "..."


def printable(text: object, limit: int = 500) -> str:
    """One terminal-safe line: control characters (newlines, ANSI escapes from a file's strings) shown escaped."""
    text = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def first_line(e: BaseException) -> str:
    """An exception's message as one short line (its type's name when it has none), for messages
    that wrap errors raised by torch, zipfile, numpy, ..."""
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def describe(value) -> str:
    """A value's type and shape for a message: 'Tensor torch.float32 [2, 8]', '1.5', 'str'."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor or an array
        return f"{type(value).__name__} {value.dtype} {list(value.shape)}"
    return repr(value)[:30] if value is None or isinstance(value, (int, float)) else type(value).__name__


def is_whole(value) -> bool:
    """An int (numpy's too), not a bool, a float or a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite int or float (not a bool, a string or a container)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float (10**400)
        return False


def is_out_of_memory(e: BaseException) -> bool:
    """Host memory (MemoryError, or torch's CPU allocator failing, a plain RuntimeError) or GPU memory
    (torch's error, a RuntimeError too): the user asked for too much at once, which is not a bug."""
    torch = sys.modules.get("torch")  # not imported yet: the error cannot be torch's
    # torch.cuda.OutOfMemoryError: torch.OutOfMemoryError exists only from torch 2.5
    if isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.cuda.OutOfMemoryError)):
        return True
    return type(e) is RuntimeError and "DefaultCPUAllocator: can't allocate memory" in str(e)


def error_message(e: BaseException) -> str:
    """What the CLI prints for an expected error: its message, or for an operating-system error
    without one of ours the file it is about and what went wrong in words (no "[Errno 17]")."""
    if not isinstance(e, OSError) or isinstance(e, StyleliftError):
        return str(e)
    if e.filename is None:  # stylelift's own message (an OSError made with a message alone), or a bare "No space left on device"
        return e.strerror if e.errno is not None and e.strerror else str(e)
    name = str(e.filename)  # atomic_path names the file asked for, not its temporary one
    if e.errno == errno.EEXIST:
        return f"{name} is a file, so no folder can be made there"
    if e.errno == errno.ENOTDIR:
        return f"{name}: part of that path is a file, not a folder"
    if e.errno == errno.EISDIR:
        return f"{name} is a folder, not a file"
    return f"{name}: {e.strerror or e}"


def per_item_error(e: Exception, name: str) -> str:
    """The error line for one photo of many that failed, so that the others still run: the message
    of an expected error, or for an unexpected one (a library tripping over an odd file, or a bug)
    its type and first line, with its traceback logged for `-v`."""
    if isinstance(e, (StyleliftError, OSError)):
        return error_message(e)
    if is_out_of_memory(e):
        return f"{name}: out of memory"
    logging.getLogger("stylelift").info("traceback of the error on %s:", name, exc_info=e)
    return f"{name}: unexpected {type(e).__name__}: {first_line(e)} (a stylelift bug? please report it with this file; -v prints the traceback)"
