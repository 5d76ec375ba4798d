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
    """json.loads for text from a file: a document nested too deeply for the parser (RecursionError)
    is a ValueError, like any other damage, not a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:20], 0) from None


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers pick the right format);
    on success rename it onto `path`, on any error (or Ctrl-C) remove it and leave `path` as it was.
    An OSError about the temporary file names `path` instead: the file the user asked for."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    if name_length(tmp.name) > name_max(path.parent):  # a long name the file system takes, made too long by the temporary name's additions
        tmp = path.with_name(f".stylelift.tmp-{os.getpid()}{path.suffix[:16]}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        about_tmp = e.filename is not None and Path(os.fsdecode(e.filename)).absolute() == tmp.absolute()  # writers may name it either way
        if about_tmp or (e.filename is None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)):  # a full disk names no file: say which one
            raise type(e)(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this: its first error is the one to tell
            tmp.unlink(missing_ok=True)


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
        raise type(e)(e.errno, e.strerror, str(existing)) from None


def name_max(folder: Path) -> int:
    """The longest file name `folder`'s file system takes (255 where it does not say)."""
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), Path("."))
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # (Windows has no pathconf)
        limit = -1
    return limit if limit > 0 else 255  # -1: no fixed limit


def name_length(name: str) -> int:
    """A file name's length as file systems count it: bytes on Linux, characters on macOS and Windows."""
    return len(os.fsencode(name)) if sys.platform.startswith("linux") else len(name)


def check_name_lengths(paths: list[Path]) -> None:
    """Refuse, before any of them is written, a set of outputs one of whose names the file system
    would not take (255 bytes on most): a set cut off at its longest name is half a set."""
    for path in paths:
        if name_length(path.name) > (limit := name_max(path.parent)):
            shown = path.name if len(path.name) <= 40 else f"{path.name[:40]}..."
            raise InputError(f"its output {shown} would have a name longer than the file system takes ({limit}); rename the photo")


@contextlib.contextmanager
def written_together() -> Iterator[list[Path]]:
    """For a set of files written one by one: append each path once it is written. If the set fails
    part-way (a full disk), those written are removed again, leaving no half set, and the error goes on."""
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
