"""Writing files so that they appear complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional

from .errors import InputError


def parse_json(text: str):
    """json.loads for text from a file: a document nested too deeply for the parser (RecursionError),
    or holding an integer too long for int(), is a JSONDecodeError, like any other damage, not a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:20], 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer of more than 4,300 digits, which int() refuses to read
        raise json.JSONDecodeError("a number too long to read", text[:20], 0) from None


def _one_number(value):
    """A numpy or torch number (or one-element array) as Python's; anything else as it is."""
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return value.item()
        except (ValueError, RuntimeError):  # more than one number: written as its str
            return value
    return value


def to_json(data, *, what: str = "meta", indent: Optional[int] = None) -> str:
    """JSON text of `data` (keys sorted), as readers elsewhere expect it: numpy and torch numbers and
    arrays as numbers and lists (not their str), NaN and infinities as null (JSON has neither),
    keys as strings (JSON's own rule; 1 and "1" in one dict are refused); anything else as its str."""
    def plain(value):
        if isinstance(value, dict):
            out, given = {}, {}
            for k, v in value.items():
                k = _one_number(k)
                key = k if isinstance(k, str) else json.dumps(k) if isinstance(k, (bool, int, float)) or k is None else str(k)
                if key in out:
                    other = given[key] if isinstance(k, str) else k
                    raise InputError(f"{what} has the key {key!r:.30} twice (as {type(other).__name__} and as a string)")
                out[key], given[key] = plain(v), k
            return out
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "tolist") and callable(value.tolist) and not isinstance(value, (str, bytes)):  # numpy and torch
            return plain(value.tolist())
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value if value is None or isinstance(value, (str, bool, int, float)) else str(value)

    try:
        return json.dumps(plain(data), indent=indent, sort_keys=True)
    except RecursionError:  # a dict or list that holds itself
        raise InputError(f"{what} holds itself (or is nested too deeply) to be written as JSON") from None


def as_path(path, what: str) -> Path:
    """A path argument of the library (`what`: 'the latent file'), refused in one line when it is not a
    str or a Path (None would fail deep in pathlib)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"{what} is named by a path (a str or a Path), got {type(path).__name__}")
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers pick the right format);
    on success rename it onto `path`, on any error (or Ctrl-C) remove it and leave `path` as it was.
    An OSError about the temporary file names `path` instead: the file the user asked for."""
    path = as_path(path, "the file to write")
    if path.is_dir():  # checked before anything is written; the rename would fail only after
        raise InputError(f"{path} is a folder; name the file to write")
    tmp = temporary_name(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise_about(e, {tmp: path})
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this: its first error is the one to tell
            tmp.unlink(missing_ok=True)


def temporary_name(path: Path, tag: str) -> Path:
    """A hidden name beside `path` with its suffix (writers pick the format by it), for this process."""
    tmp = path.with_name(f".{path.stem}.{tag}-{os.getpid()}{path.suffix}")
    if name_length(tmp.name) > name_max(path.parent):  # a long name the file system takes, made too long by the additions
        tmp = path.with_name(f".stylelift.{tag}-{os.getpid()}-{abs(hash(path.name)) % 10**8}{path.suffix[:16]}")
    return tmp


# a full disk, quota or file size limit: the errors of writes that name no file
FULL_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


def raise_about(e: OSError, names: dict[Path, Path]) -> None:
    """Raise `e`, naming the file the user asked for where it names one of its temporary `names`
    (or, a full disk naming no file, the first of them)."""
    named = Path(os.fsdecode(e.filename)).absolute() if e.filename is not None else None
    real = next((path for tmp, path in names.items() if tmp.absolute() == named), None)  # writers may name it either way
    if real is None and e.filename is None and e.errno in FULL_ERRNOS:  # a full disk names no file: say which one
        real = next(iter(names.values()))
    if real is not None:
        raise type(e)(e.errno, e.strerror, str(real)) from None
    raise e


def looks_like_zip(path: str | os.PathLike) -> bool:
    """`zipfile.is_zipfile`, which raises BadZipFile for some damaged end records (a zip64 one that
    says the archive spans several disks): those are zip files too, damaged, which reading says."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return True


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content (hex), read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_if_readable(path: str | os.PathLike) -> Optional[str]:
    """`file_sha256`, or None for a file that cannot be read (reported where it is read) or that is a
    special file (a named pipe would be waited on, a device read without end)."""
    if special_file(path):
        return None
    try:
        return file_sha256(path)
    except OSError:
        return None


def special_file(path: str | os.PathLike) -> bool:
    """Whether `path` exists but is neither a regular file nor a folder: a named pipe (FIFO), a
    device or a socket, which a reader would wait on forever, or read without end."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def file_id(path: str | os.PathLike) -> Optional[tuple[int, int]]:
    """The (device, inode) of an existing file: one file under any of its names, also where the
    file system ignores case (Face.PNG and Face.png are one file on macOS and Windows)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def file_stamp(path: str | os.PathLike) -> tuple:
    """(device, inode, size, mtime, ctime) of an existing file, () if none: a file rewritten in place,
    even to its size with its mtime set back (`touch -r`), gets another (its ctime cannot be set)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_in_the_way(folder: str | os.PathLike) -> Optional[Path]:
    """The file that stands where `folder` or one of its parents should be, if any."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def check_writable(folder: str | os.PathLike) -> None:
    """Before long work: a file can be made in `folder`, or, when it does not exist yet, in the
    nearest folder above it that does (where it will be made). Raises the OSError that writing
    would, naming that folder; creates nothing."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return  # a file in the way: `file_in_the_way` says so in words
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".stylelift-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        # a folder that exists but takes no files (/proc, /sys) answers "No such file or directory"
        why = "this folder takes no new files" if e.errno == errno.ENOENT and existing.is_dir() else e.strerror
        raise type(e)(e.errno, why, str(existing)) from None


def name_max(folder: Path) -> int:
    """The longest file name `folder`'s file system takes, at most 255 (FAT says 1530, in bytes of
    up to 6 per character, and takes 255 characters; -1 means no fixed limit)."""
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), Path("."))
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # (Windows has no pathconf)
        limit = -1
    return min(limit, 255) if limit > 0 else 255


def name_length(name: str) -> int:
    """A file name's length as its file system counts it: UTF-16 units on Windows and macOS, bytes elsewhere."""
    if sys.platform in ("win32", "darwin"):
        return len(name.encode("utf-16-le")) // 2
    return len(os.fsencode(name))


NAME_UNIT = "characters" if sys.platform in ("win32", "darwin") else "bytes"


def check_name_lengths(paths: list[Path]) -> None:
    """Refuse, before any of them is written, a set of outputs one of whose names the file system
    would not take (255 bytes on most): a set cut off at its longest name is half a set."""
    for path in paths:
        if name_length(path.name) > (limit := name_max(path.parent)):
            shown = path.name if len(path.name) <= 40 else f"{path.name[:40]}..."
            raise InputError(f"the output name {shown} is longer than the file system takes ({limit} {NAME_UNIT}); rename the photo")


def stopping_signals() -> list:
    """The signals that stop a run and that stylelift handles: SIGINT, SIGTERM and SIGHUP where the
    system has them (Windows has no SIGHUP), less those ignored (SIGHUP under nohup, SIGINT in a
    background job: they stay ignored) or handled outside Python (left alone)."""
    import signal

    found = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    return [sig for sig in found if signal.getsignal(sig) not in (signal.SIG_IGN, None)]


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is over (then act as they would have): for
    steps that must not stop half-way, such as renaming a written set into place. Only the main
    thread handles signals; elsewhere, and for a signal that is ignored, nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    replaced: dict = {}  # signal -> its handler, put back at the end
    try:
        for sig in stopping_signals():
            replaced[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for sig, handler in replaced.items():  # all put back before any is acted on
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def written_together(paths: list[Path], *, remove: tuple[Path, ...] = ()) -> Iterator[list[Path]]:
    """Temporary names for a set of files (`paths`, in order): the block writes each to its own, and
    only when all are written are the files in `remove` deleted and the set renamed onto `paths`,
    with signals deferred (a Ctrl-C there would leave half of each set). A set that fails part-way
    (a full disk) leaves the earlier set as it was; an OSError names the file asked for. Names the
    file system would not take are refused first, then the folders are made."""
    check_name_lengths(paths)
    for folder in {path.parent for path in paths}:
        folder.mkdir(parents=True, exist_ok=True)
    tmps = [temporary_name(path, "set") for path in paths]
    try:
        yield tmps
        with signals_deferred():
            for path in remove:
                path.unlink(missing_ok=True)
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)
    except OSError as e:
        raise_about(e, dict(zip(tmps, paths)))
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
