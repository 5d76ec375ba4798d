"""Download network files once and keep them in the user cache (for users who have a network).

Files go to `$STYLELIFT_CACHE` (default `~/.cache/stylelift`) under `downloads/`, named by a hash
of the URL plus the URL's file name. A download is written to a temporary file and renamed only
when complete, so an interrupted download never leaves a file that looks finished.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from ..errors import StyleliftError

log = logging.getLogger(__name__)


class DownloadError(StyleliftError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("STYLELIFT_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "stylelift"
    return path


def cached_download(
    url: str,
    *,
    timeout: float = 60.0,
    sha256: Optional[str] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> Path:
    """Return the local path of `url`, downloading it into the cache first if needed.

    `sha256`, when given, is checked before the file is kept. `progress(done, total)` is called as
    bytes arrive.
    """
    name = os.path.basename(url.split("?", 1)[0]) or "download"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir() / "downloads" / f"{key}-{name}"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    log.info("downloading %s -> %s", url, dest)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise DownloadError(f"download of {url} stopped after {done} of {total} bytes")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def clear_cache() -> None:
    shutil.rmtree(cache_dir() / "downloads", ignore_errors=True)
