"""Download network files once and keep them in the user cache (for users who have a network).

Files go to `$STYLELIFT_CACHE` (default `$XDG_CACHE_HOME/stylelift`, else `~/.cache/stylelift`)
under `downloads/`, named by a hash of the URL plus the URL's file name. A download is written to
a temporary file of its own and renamed only when complete (and, when a sha256 is given, only
when it matches), so an interrupted download, or two at once, never leave a file that looks
finished. Messages name the URL without its query string, which may hold an access token.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError, StyleliftError
from ..fileio import file_sha256

log = logging.getLogger(__name__)

MAX_NAME = 100  # characters of the URL's file name kept in the cached file's name


class DownloadError(StyleliftError):
    pass


def cache_dir() -> Path:
    """$STYLELIFT_CACHE, else $XDG_CACHE_HOME/stylelift, else ~/.cache/stylelift."""
    root = os.environ.get("STYLELIFT_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        if root:
            return Path(root).expanduser()
        return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stylelift"
    except RuntimeError:  # ~name of no such user, or no home folder at all
        where = "STYLELIFT_CACHE" if root else "XDG_CACHE_HOME" if xdg else "~/.cache"
        raise InputError(f"no cache folder: {where} is in a home folder this machine cannot find; set STYLELIFT_CACHE to a folder") from None


def shown(url: str) -> str:
    """The URL for messages: no user:password, query string or fragment (tokens live there)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # malformed (an unclosed IPv6 bracket): cut at the first ? or # by hand
        url = re.split(r"[?#]", url, maxsplit=1)[0]
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        return scheme + sep + authority.rpartition("@")[2] + slash + path if sep else url
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def is_url(key: str) -> bool:
    return key.lower().startswith(("http://", "https://"))  # (HTTP://, as some tools write it)


def split_pin(url: str) -> tuple[str, Optional[str]]:
    """`URL#sha256=HEX` (pip's way of pinning a file) -> (URL, HEX); a URL without a pin -> (URL, None).

    The fragment never reaches the server, and the cached copy is the URL's, pinned or not: a pin is
    checked on it each time. A fragment that looks like another hash, or a misspelt one, is refused
    rather than ignored, so that a pin with a typo never lets an unchecked file through."""
    base, sep, fragment = url.partition("#")
    looks_like_a_pin = re.search(r"\b(sha\d*|md\d|blake\w*|hash|digest|checksum)\b", fragment, re.IGNORECASE) or re.search(r"[0-9a-fA-F]{32,}", fragment)
    if not sep or not looks_like_a_pin:
        return url, None  # no fragment, or another kind (a page anchor)
    pin = re.fullmatch(r"\s*sha256\s*=\s*([0-9a-fA-F]{64})\s*", fragment, re.IGNORECASE)
    if pin is None:
        raise DownloadError(f"{shown(url)}: a pin is #sha256= and the file's 64 hex digits, got #{fragment[:30]}{'...' * (len(fragment) > 30)}")
    return base, pin[1].lower()


def cached_path(url: str) -> Path:
    """Where `url` is (or would be) kept: a hash of the whole URL and a tame copy of its file name."""
    url = url.strip()  # as urllib reads it: a URL pasted with a newline after it is the same URL
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (reading it checks the port is a number)
    except ValueError as e:
        raise DownloadError(f"{shown(url)} is not a valid URL ({e})") from None
    if not parts.netloc:
        raise DownloadError(f"{shown(url)} is not a valid URL (no host)")
    if "@" in parts.netloc:  # urllib would take the password for a port, and quote it
        raise DownloadError(f"{shown(url)}: stylelift does not send a user name or password in a URL; download the file yourself and give its path")
    if re.search(r"[^\x21-\x7e]", url.partition("#")[0]):  # http.client's refusal would quote the query
        raise DownloadError(f"{shown(url)} is not a valid URL (it holds a space, a control character or a non-ASCII character; write them %-encoded, a space as %20)")
    name = os.path.basename(parts.path)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.unquote(name))[-MAX_NAME:].lstrip(".") or "download"
    sent = parts.scheme.lower() + url.partition("#")[0][len(parts.scheme):]  # a fragment is not sent, and HTTP:// is http://: one file
    key = hashlib.sha256(sent.encode()).hexdigest()[:16]
    return cache_dir() / "downloads" / f"{key}-{name}"


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):  # the code's standard words, not the server's (which may repeat the URL asked for, token and all)
        if 300 <= e.code < 400 and "infinite loop" in str(e.reason):  # urllib's words for a redirect loop or too many redirects
            text = f"HTTP {e.code}: a redirect loop, or more redirects than urllib follows"
        else:
            try:
                text = f"HTTP {e.code} {http.HTTPStatus(e.code).phrase}"
            except ValueError:  # a code of no standard
                text = f"HTTP {e.code}"
    else:
        reason = getattr(e, "reason", None) or e
        text = str(reason) or type(e).__name__
        if isinstance(reason, socket.gaierror):
            text += " (is this machine offline?)"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__


MAX_BYTES = 4 << 30  # generous: a StyleGAN2 network at 1024 px is a few hundred MB
MIN_SPEED = 1024  # bytes per second, averaged over `timeout` seconds, below which a download has stalled
STALE_PART = 3600  # seconds after which an untouched .part file that no download holds is a killed download's


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to ftp:// too, and refuses file:// in a message that shows the target's
    query string; a network file is fetched over http(s) only, and every other target refused here."""

    def http_error_302(self, req, fp, code, msg, headers):
        fp.close()  # its body unread: urllib would read all of it, however large or slow
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            newurl = urllib.parse.urljoin(req.full_url, target)
            scheme = urllib.parse.urlsplit(newurl).scheme.lower()
            if scheme not in ("http", "https"):
                raise urllib.error.URLError(f"the server redirects it to {shown(newurl)[:120]}, and only http and https are followed")  # named with the URL asked for
            if scheme == "http" and urllib.parse.urlsplit(req.full_url).scheme.lower() == "https":  # the file would come unencrypted, open to change on the way
                raise urllib.error.URLError(f"the server redirects it from https to plain http ({shown(newurl)[:120]}); download it yourself if you trust that")
        return super().http_error_302(req, io.BytesIO(), code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Watchdog:
    """Watches one download, so that a read blocked on a server that drips its headers, chunk sizes
    or body a byte at a time (each byte well inside the socket's timeout, which bounds one wait only)
    returns at once: when the download stalls, it shuts the download's connections down.

    It has stalled when a connection (the first, or a redirect's) has not brought the server's whole
    answer `timeout` seconds after it was made, when the file's first byte (after a redirect, whose
    body is not read: the next connection) has not come `timeout` seconds after that answer, or,
    from the first byte on, when any `timeout` seconds bring fewer than `min_speed * timeout` bytes
    of the file."""

    def __init__(self, timeout: float, min_speed: float):
        self.timeout, self.least = timeout, min_speed * timeout
        self.received = 0  # bytes of the file so far, counted by the reader
        self.stalled: Optional[str] = None  # why it fired
        self._sockets: list[socket.socket] = []  # the connections', kept open by their responses after urllib closes them
        self._lock = threading.Lock()
        self._awaited = "the server's answer"  # before the file's first byte: what must come by the deadline
        self._deadline = float("inf")  # set by the first connection (looking up and reaching the server: the socket's timeout bounds each step)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stylelift-download-watchdog", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket) -> None:
        """A new connection: it has `timeout` seconds to bring the server's answer."""
        with self._lock:
            self._sockets.append(sock)
            self._wait_for("the server's answer")
            if self.stalled:
                self._shut(sock)

    def connecting(self) -> None:
        """A connection is being made: no deadline until it is."""
        with self._lock:
            self._deadline = float("inf")

    def answered(self) -> None:
        """The server's answer (its headers) is in: the file's first byte has `timeout` seconds to
        come (after a redirect, the next connection starts at once and lifts the deadline)."""
        with self._lock:
            self._wait_for("the file's first byte")

    def _wait_for(self, what: str) -> None:
        self._awaited, self._deadline = what, time.monotonic() + self.timeout

    def _run(self) -> None:
        window_start, at_start = None, 0  # from the first byte on: the current window's start and the count then
        while not self._stop.wait(self.timeout / 20):
            now, received = time.monotonic(), self.received
            if window_start is None and received:
                window_start = now
            if window_start is None and now > self._deadline:
                self._fire(f"{self._awaited} did not come within {self.timeout:g} s")
                return
            if window_start is not None and now - window_start >= self.timeout:
                if received - at_start < self.least:
                    self._fire(f"{received - at_start} bytes in the last {self.timeout:g} s")
                    return
                window_start, at_start = now, received

    def _fire(self, why: str) -> None:
        with self._lock:
            self.stalled = why
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:  # the plain socket's shutdown, also under TLS: a blocked read returns, and no TLS state is touched from this thread
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:  # closed already
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._sockets.clear()


class _Watched:
    """A urllib handler whose connections the download's watchdog watches."""

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def do_open(self, http_class, req, **kwargs):
        watchdog = self.watchdog

        class WatchedConnection(http_class):
            def connect(self):
                watchdog.connecting()  # looking up and reaching the next host (a redirect's): bounded by the socket's timeout, step by step
                super().connect()
                watchdog.watch(self.sock)

            def _tunnel(self):  # through an https proxy: its answer is read inside connect(), and watched as a server's is
                watchdog.watch(self.sock)
                super()._tunnel()

            def getresponse(self):
                response = super().getresponse()
                watchdog.answered()
                return response

        return super().do_open(WatchedConnection, req, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass


def _lock(fd: int, *, shared: bool = False) -> bool:
    """Take the lock that marks a .part file as a running download's (exclusive, held until `fd` is
    closed, also while its process is stopped), or a shared one to test for it (which a read-only `fd`
    may take over NFS too); False when another process holds the exclusive one. Without flock: True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: the file's age alone decides
        pass
    return True


def _new_part(folder: Path, name: str) -> tuple[int, Path]:
    """A fresh temporary file for a download, locked as a running one's, made with the permissions the
    user's umask gives new files (mkstemp's are 0600, which would make the cached copy unreadable to
    a shared cache's other users)."""
    while True:
        path = folder / f".{name[:40]}.{secrets.token_hex(8)}.part"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _lock(fd)
        return fd, path


def _remove_stale_parts(folder: Path) -> None:
    """Delete the .part files of downloads that were killed outright: untouched for STALE_PART seconds
    (a running download writes at least every `timeout` seconds, or fails) and locked by no process
    (one stopped with Ctrl-Z, or suspended with its machine, still holds its lock)."""
    now = time.time()
    for part in folder.glob(".*.part"):
        try:
            if now - part.stat().st_mtime <= STALE_PART:
                continue
            fd = os.open(part, os.O_RDONLY)
        except OSError:  # another process removed or renamed it first
            continue
        try:
            if _lock(fd, shared=True):
                part.unlink(missing_ok=True)
        except OSError:  # not ours to remove (another user's, in a shared folder), or not removable while open
            pass
        finally:
            os.close(fd)


def _content_length(text: Optional[str]) -> Optional[int]:
    """The Content-Length header as a number, None when it is absent or not digits. A length of more
    than 30 digits (which int() may refuse to read) is taken as 10**30: no file comes near either."""
    if not text or not re.fullmatch(r"[0-9]+", text):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 30 else 10**30


def _size(n: int, other: Optional[int] = None) -> str:
    """A byte count for messages: MB below a GiB, GiB above; in bytes where `other`, the size it is
    compared with, would read the same."""
    said = lambda n: f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MB"  # noqa: E731
    return f"{n:,} bytes" if other is not None and said(n) == said(other) else said(n)


def _check_room(url: str, folder: Path, total: Optional[int], max_bytes: int) -> None:
    if total is None:
        return
    if total > max_bytes:
        said = _size(total, max_bytes) if total < 2**80 else "far larger than any file"
        raise DownloadError(f"cannot download {shown(url)}: the server says it is {said}, above stylelift's limit of {_size(max_bytes, total)} for a network file (download it yourself and give its path)")
    free = shutil.disk_usage(folder).free
    if total > free:
        raise DownloadError(f"cannot download {shown(url)}: it is {_size(total, free)} and the cache folder {folder} has {_size(free, total)} free (set STYLELIFT_CACHE to a folder with room)")


def _copy_body(url, response, out, digest, total, *, watchdog: _Watchdog, max_bytes: int, progress) -> int:
    """Copy the response body to `out` as it arrives, counting it for the watchdog; return its size.
    Refuses a body above `max_bytes`, whatever the server said its size is (it may say nothing)."""
    done = 0
    if progress:
        progress(0, total)
    while chunk := response.read1(1 << 20):  # read1: whatever has arrived, so the count is current
        done += len(chunk)
        watchdog.received = done
        if done > max_bytes:
            raise DownloadError(f"cannot download {shown(url)}: it is larger than stylelift's limit of {_size(max_bytes)} for a network file (download it yourself and give its path)")
        out.write(chunk)
        digest.update(chunk)
        if progress:
            progress(done, total)
    return done


def _stalled(url: str, watchdog: _Watchdog) -> DownloadError:
    return DownloadError(f"cannot download {shown(url)}: it has stalled ({watchdog.stalled})")


def cached_download(
    url: str,
    *,
    timeout: float = 60.0,
    sha256: Optional[str] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    max_bytes: int = MAX_BYTES,
    min_speed: float = MIN_SPEED,
) -> Path:
    """Return the local path of `url`, downloading it into the cache first if needed.

    `sha256`, when given, is checked before the file is kept, and again when a cached copy is
    reused. `progress(done, total)` is called when the server answers and as bytes arrive.
    `timeout` bounds each wait for the server, each connection's wait for the server's whole answer
    (a redirect's too), and the wait for the file's first byte; a download that then gets fewer than
    `min_speed` bytes/s of the file in any `timeout` seconds has stalled, and one above `max_bytes`
    is refused, both with an error.
    """
    url = url.strip()
    dest = cached_path(url)
    if dest.is_dir():  # the rename at the end would fail, naming the temporary file
        raise DownloadError(f"cannot download {shown(url)}: a folder takes its place in the cache ({dest}); remove it")
    if dest.is_file():
        try:
            if not sha256 or file_sha256(dest) == sha256.lower():
                return dest
        except OSError as e:  # a bad sector, a dropped network mount
            raise DownloadError(f"cannot read the cached copy of {shown(url)}, {dest}: {e.strerror or _reason(e)}") from None
        log.info("the cached copy of %s does not match its sha256; downloading it again", shown(url))  # kept until a matching one replaces it
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest.parent)
        fd, tmp = _new_part(dest.parent, dest.name)
    except OSError as e:
        raise DownloadError(f"cannot download {shown(url)}: the cache folder {dest.parent} is not writable ({_reason(e)})") from None
    log.info("downloading %s -> %s", shown(url), dest)
    digest = hashlib.sha256()
    watchdog = _Watchdog(timeout, min_speed)
    opener = urllib.request.build_opener(_HttpOnlyRedirects, _WatchedHTTP(watchdog), _WatchedHTTPS(watchdog))
    try:
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=timeout) as response:
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            if any(part.strip() not in ("", "identity", "none") for part in encoding.split(",")):  # asked for none; S3 sends a file stored gzipped as such
                raise DownloadError(f"cannot download {shown(url)}: the server sends it compressed (Content-Encoding: {encoding[:40]}), which stylelift does not undo; download it yourself")
            total = _content_length(response.headers.get("Content-Length"))
            _check_room(url, dest.parent, total, max_bytes)
            done = _copy_body(url, response, out, digest, total, watchdog=watchdog, max_bytes=max_bytes, progress=progress)
        watchdog.close()
        if watchdog.stalled and done != total:  # the connection was cut: what arrived is not the whole file
            raise _stalled(url, watchdog)
        if total is not None and done != total:
            raise DownloadError(f"download of {shown(url)} stopped after {done} of {total} bytes")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"download of {shown(url)} has sha256 {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # one the watchdog caused comes after it set `stalled`
        raise (_stalled(url, watchdog) if watchdog.stalled else DownloadError(f"cannot download {shown(url)}: {_reason(e)}{_through_proxy(url, e)}")) from None
    finally:
        watchdog.close()
        tmp.unlink(missing_ok=True)
    return dest


def _through_proxy(url: str, e: BaseException) -> str:
    """Where a connection could not be made (not an answer of the server's, a refused redirect or a
    write to the cache), the proxy urllib went through, as its environment variable names it: a
    dead proxy reads as a dead server otherwise. (Judged by the URL asked for, not a redirect's.)"""
    connecting = isinstance(e, urllib.error.URLError) and isinstance(e.reason, OSError)  # urllib wraps what fails while connecting (an HTTPError's reason is the server's words)
    if not (connecting or isinstance(e, ConnectionError)):  # ConnectionError: dropped while answering
        return ""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.netloc):  # host:port, as urllib asks it
        return ""
    return f" (through the proxy {shown(proxy)[:120]} that ${parts.scheme.lower()}_proxy names)"


def forget(url: str) -> None:
    """Remove the cached copy of `url` (a file that turned out not to be what was wanted)."""
    cached_path(url).unlink(missing_ok=True)

