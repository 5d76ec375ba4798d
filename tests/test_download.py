import hashlib
import http.server
import io
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from functools import partial

import pytest
import torch
from PIL import Image

from conftest import tiny_generator
from stylelift import load_generator, network_id, save_generator
from stylelift.errors import CheckpointError
from stylelift.models.download import DownloadError, cached_download, cached_path


class Handler(http.server.SimpleHTTPRequestHandler):
    hits: list = []

    def do_GET(self):
        Handler.hits.append(self.path)
        if self.path.startswith("/short"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)  # then hang up: a broken download
            return
        if self.path.startswith("/chunked-cut"):  # a chunked body that stops inside a chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"100\r\n" + b"x" * 10)
            return
        redirects = {"/loop": (302, self.path), "/to-ftp": (302, "ftp://127.0.0.1/net.pt"), "/hop": (307, "/to-ftp.pt"), "/moved": (301, "/net.pt"), "/to-file": (302, "file:///etc/passwd?token=filesecret")}
        for start, (code, target) in redirects.items():  # /loop redirects to itself forever, /hop on to /to-ftp
            if self.path.startswith(start):
                self.send_response(code)
                self.send_header("Location", target)
                self.end_headers()
                return
        if self.path.startswith("/reason"):  # a status line whose words repeat the request, token and all
            self.send_response(403, f"denied for {self.path}")
            self.end_headers()
            return
        if self.path.startswith("/gzip"):  # a file stored compressed, sent as such whatever was asked
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip, identity" if "both" in self.path else "gzip")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b\x08\x00")
            return
        if self.path.startswith("/endless"):  # no Content-Length: the body ends when the server hangs up
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"z" * 65536)
            except OSError:  # the client gave up
                pass
            return
        if self.path.startswith("/huge"):  # says it is 20 GB
            self.send_response(200)
            self.send_header("Content-Length", getattr(Handler, "huge_length", str(20 << 30)))
            self.end_headers()
            return
        if self.path.startswith("/slow"):  # the whole file, in pieces, while another request runs
            import time

            body = b"y" * 300_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 30_000):
                self.wfile.write(body[i : i + 30_000])
                self.wfile.flush()
                time.sleep(0.02)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch):
    """The same rich output whatever the CI's environment says about terminals and colours."""
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "www"
    root.mkdir()
    monkeypatch.setenv("STYLELIFT_CACHE", str(tmp_path / "cache"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.hits = []
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_is_cached_and_loads(server, tmp_path):
    root, url = server
    G = tiny_generator()
    save_generator(G, root / "net.pt")
    H = load_generator(f"{url}/net.pt")
    assert network_id(H) == network_id(G)
    load_generator(f"{url}/net.pt")
    assert Handler.hits == ["/net.pt"]  # the second load came from the cache
    assert len(list((tmp_path / "cache" / "downloads").iterdir())) == 1


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    root, url = server
    (root / "f.bin").write_bytes(b"abc")
    with pytest.raises(DownloadError, match="sha256"):
        cached_download(f"{url}/f.bin", sha256="0" * 64)
    assert not any((tmp_path / "cache" / "downloads").iterdir())


def test_broken_and_missing_downloads_are_clear_errors(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError):
        cached_download(f"{url}/short.bin", timeout=5)
    with pytest.raises(DownloadError, match="404"):
        cached_download(f"{url}/nothing.bin")
    assert not any((tmp_path / "cache" / "downloads").iterdir())


def test_network_failures_of_every_kind_are_one_line(server, tmp_path):
    _, url = server
    for path, fragment in (("/chunked-cut.bin", "IncompleteRead"), ("/loop.bin", "HTTP 302")):
        with pytest.raises(DownloadError, match=fragment) as e:
            cached_download(f"{url}{path}", timeout=5)
        assert "\n" not in str(e.value)
    assert not any((tmp_path / "cache" / "downloads").iterdir())


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:port/x.pkl", "https:///x.pkl"])
def test_malformed_urls_are_one_error_and_fetch_nothing(server, tmp_path, url):
    with pytest.raises(DownloadError, match="not a valid URL"):
        load_generator(url)
    assert not (tmp_path / "cache" / "downloads").exists() or not any((tmp_path / "cache" / "downloads").iterdir())


def test_messages_show_no_password_and_no_query(server, tmp_path):
    from stylelift.models.download import shown

    assert shown("https://me:pa55@host:8080/a@b/net.pt?token=s#x") == "https://host:8080/a@b/net.pt"
    assert shown("http://me:pa55@[::1/a@b/x.pt?token=s") == "http://[::1/a@b/x.pt"  # malformed: cut by hand
    _, url = server
    with pytest.raises(DownloadError) as e:  # http.client's own refusal quotes the path and query
        load_generator(f"{url}/a net.pt?token=secret")
    assert str(e.value) == f"{url}/a net.pt is not a valid URL (it holds a space, a control character or a non-ASCII character; write them %-encoded, a space as %20)"
    with pytest.raises(DownloadError, match="non-ASCII character; write them %-encoded"):  # urllib: "ordinal not in range(128)"
        load_generator(f"{url}/caf\u00e9.pt")
    with pytest.raises(DownloadError) as e:  # urllib would read the password as a port, and say so
        load_generator(url.replace("://", "://me:pa55@") + "/net.pt")
    assert str(e.value) == f"{url}/net.pt: stylelift does not send a user name or password in a URL; download the file yourself and give its path"
    root, _ = server
    save_generator(tiny_generator(), root / "net.pt")
    assert network_id(load_generator(f"{url}/net.pt\n")) == network_id(load_generator(root / "net.pt"))  # pasted with a newline
    assert network_id(load_generator(f" {url}/net.pt")) == network_id(load_generator(root / "net.pt"))  # or a space before it


def test_url_names_stay_inside_the_cache_and_short(server, tmp_path):
    root, url = server
    long = "n" * 240 + ".bin"  # the temporary name would be longer than a file name may be
    (root / long).write_bytes(b"abc")
    path = cached_download(f"{url}/{long}?token=secret#/../../x")
    assert path.parent == tmp_path / "cache" / "downloads" and len(path.name) < 130 and path.read_bytes() == b"abc"


def test_parallel_downloads_of_one_url_keep_a_whole_file(server, tmp_path):
    import concurrent.futures

    _, url = server
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: cached_download(f"{url}/slow.bin", timeout=10), range(3)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == b"y" * 300_000
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]  # no temporary files left


def test_a_checksum_is_checked_on_the_cached_copy_too(server, tmp_path):
    import hashlib

    root, url = server
    (root / "f.bin").write_bytes(b"abc")
    path = cached_download(f"{url}/f.bin")
    path.write_bytes(b"tampered")
    good = hashlib.sha256(b"abc").hexdigest()
    assert cached_download(f"{url}/f.bin", sha256=good).read_bytes() == b"abc"  # fetched again


def test_a_page_that_is_not_a_network_is_not_kept(server, tmp_path):
    root, url = server
    (root / "ffhq.pkl").write_text("<html>please log in</html>")
    with pytest.raises(Exception, match=r"did not give a network file \(ffhq.pkl is not a network file") as e:  # (named by the cache's hashed name)
        load_generator(f"{url}/ffhq.pkl?token=secret")
    assert "secret" not in str(e.value)
    assert not any((tmp_path / "cache" / "downloads").iterdir())
    from typer.testing import CliRunner

    from stylelift.cli import app

    r = CliRunner().invoke(app, ["info", f"{url}/ffhq.pkl"])
    assert r.exit_code == 1 and "did not give a network file" in r.output and "downloaded" not in r.output, r.output


def test_a_url_pinned_with_its_sha256_is_checked_and_shares_the_cache(server, tmp_path):
    import hashlib

    root, url = server
    save_generator(tiny_generator(), root / "net.pt")
    good = hashlib.sha256((root / "net.pt").read_bytes()).hexdigest()
    assert network_id(load_generator(f"{url}/net.pt#sha256={good.upper()}")) == network_id(load_generator(f"{url}/net.pt"))
    assert Handler.hits == ["/net.pt"]  # the fragment is not sent, and pinned or not is one cached copy
    with pytest.raises(DownloadError, match=f"has sha256 {good}, expected {'0' * 64}"):
        load_generator(f"{url}/net.pt#SHA256={'0' * 64}")  # the cached copy fails the pin: fetched again, and refused
    [kept] = (tmp_path / "cache" / "downloads").iterdir()  # the good copy is not lost to a wrong pin
    assert kept.read_bytes() == (root / "net.pt").read_bytes()
    assert Handler.hits == ["/net.pt", "/net.pt"]
    for typo in ("sha256=abcde", f"sha256:{good}", f"sha512={good}{good}", f"shaa256={good}", f"md5={good[:32]}", f"{good}=", f"x={good}"):
        with pytest.raises(DownloadError, match="a pin is #sha256= and the file's 64 hex digits"):
            load_generator(f"{url}/net.pt#{typo}")  # a pin with a typo is refused, not ignored
    load_generator(f"{url}/net.pt#weights")  # a fragment that is no pin: the same cached file
    assert Handler.hits == ["/net.pt", "/net.pt"]


def test_the_cli_shows_a_download_once_and_refuses_a_wrong_pin_in_one_line(server, tmp_path):
    from typer.testing import CliRunner

    from stylelift.cli import app

    root, url = server
    save_generator(tiny_generator(), root / "net.pt")
    runner = CliRunner()
    r = runner.invoke(app, ["info", f"{url}/net.pt?token=secret"])
    assert r.exit_code == 0 and f"downloaded {url}/net.pt (" in r.output and "secret" not in r.output, r.output
    r = runner.invoke(app, ["info", f"{url}/net.pt?token=secret"])
    assert r.exit_code == 0 and "downloaded" not in r.output and Handler.hits == ["/net.pt?token=secret"]
    r = runner.invoke(app, ["generate", "--seeds", "0", "--network", f"{url}/other.pt#sha256={'1' * 64}", "--outdir", str(tmp_path / "g")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "404" in r.output, r.output
    assert not (tmp_path / "g").exists()
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    r = runner.invoke(app, ["project", str(tmp_path / "p.png"), "--network", f"{url}/net2.pt", "--loss", "bogus=1"])
    assert r.exit_code == 2 and "bogus" in r.output and len(Handler.hits) == 2  # options are checked before a download


def test_the_download_bar_shows_a_url_as_text(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stylelift.cli import app

    root, url = server
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws its bar as on a terminal
    (root / "[red]").mkdir()
    save_generator(tiny_generator(), root / "[red]" / "{a}.pt")
    r = CliRunner().invoke(app, ["info", f"{url}/[red]/{{a}}.pt"])  # as typed, not %-encoded
    assert r.exit_code == 0 and "format: stylelift" in r.output, r.output
    assert f"downloading {url}/[red]/{{a}}.pt" in r.output  # drawn as typed: no markup, no format fields


def test_a_body_without_a_length_is_cut_off_at_the_size_limit(server, tmp_path, monkeypatch):
    _, url = server
    with pytest.raises(DownloadError, match="larger than stylelift's limit of 1.0 MB"):
        cached_download(f"{url}/endless.bin", max_bytes=1 << 20)
    assert not any((tmp_path / "cache" / "downloads").iterdir())
    with pytest.raises(DownloadError, match="the server says it is 20.0 GiB, above stylelift's limit of 4.0 GiB"):
        cached_download(f"{url}/huge.bin")
    assert len(cached_download(f"{url}/endless.bin", max_bytes=20 << 20).read_bytes()) == 200 * 65536  # under the limit: kept
    monkeypatch.setattr(Handler, "huge_length", str((4 << 30) + 1), raising=False)  # a byte above: both would read 4.0 GiB
    with pytest.raises(DownloadError, match="the server says it is 4,294,967,297 bytes, above stylelift's limit of 4,294,967,296 bytes"):
        cached_download(f"{url}/huge.bin")


def drip(conn, head: bytes, byte: bytes) -> None:
    """Send `head`, then `byte` 500 times, one every 20 ms (10 s in all), until the client hangs up."""
    import time

    try:
        conn.sendall(head)
        for _ in range(500):
            conn.sendall(byte)
            time.sleep(0.02)
    except OSError:  # the client gave up
        pass


def cut_off_quickly(url: str, message: str, *, min_speed: float) -> None:
    """With a 0.3 s timeout, `url` (a server that drips for 10 s) fails with `message` within 3 s."""
    import time

    start = time.monotonic()
    with pytest.raises(DownloadError, match=message):
        cached_download(url, timeout=0.3, min_speed=min_speed)
    assert time.monotonic() - start < 3


def serve_raw(listener, answer) -> None:
    """Accept connections on `listener` until it is closed, each answered by answer(conn) in a thread."""

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


@pytest.fixture
def dripping_server():
    """A raw server that sends its answer a byte every 20 ms after a head given by the path: the
    headers dripped (/head), the body (/body, 500 bytes) or a chunk size line (/chunk)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    heads = {
        "/head": b"HTTP/1.1 200 OK\r\nX-Slow: ",
        "/body": b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
        "/chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n1",
        "/firstchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
        "/redirect": b"HTTP/1.1 302 Found\r\nLocation: /body\r\nContent-Length: 500\r\n\r\n",  # its body is not read: /body is
        "/hugeredirect": b"HTTP/1.1 302 Found\r\nLocation: /body\r\nContent-Length: 100000000000\r\n\r\n",  # read, it was a MemoryError
    }

    def answer(conn):
        with conn:
            path = conn.recv(65536).split()[1].decode().split("?")[0]
            drip(conn, heads[path], b"0" if "chunk" in path else b"a")  # a chunk size of 10000... digits

    serve_raw(listener, answer)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.parametrize(
    "part, why",
    [
        ("head", "the server's answer did not come within 0.3 s"),
        ("firstchunk", "the file's first byte did not come within 0.3 s"),
        ("redirect", r"\d+ bytes in the last 0.3 s"),
        ("hugeredirect", r"\d+ bytes in the last 0.3 s"),
        ("body", r"\d+ bytes in the last 0.3 s"),
        ("chunk", "4 bytes in the last 0.3 s"),
    ],
)
def test_a_download_that_drips_is_called_stalled(server, dripping_server, tmp_path, part, why):
    # each byte comes well inside the timeout; the message has no token
    cut_off_quickly(f"{dripping_server}/{part}?token=secret", rf"^cannot download {dripping_server}/{part}: it has stalled \({why}\)$", min_speed=1000)
    assert not any((tmp_path / "cache" / "downloads").iterdir())


def test_an_https_proxy_that_drips_its_answer_is_called_stalled(tmp_path, monkeypatch):
    import socket

    def answer(conn):  # the tunnel is made, then its answer never ends
        with conn:
            conn.recv(65536)
            drip(conn, b"HTTP/1.1 200 Connection established\r\n", b"X-Slow: a\r\n")

    listener = socket.create_server(("127.0.0.1", 0))
    serve_raw(listener, answer)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        cut_off_quickly("https://example.invalid/net.pt", r"it has stalled \(the server's answer did not come within 0.3 s\)", min_speed=1000)
    finally:
        listener.close()


def test_slow_redirects_and_a_late_first_byte_are_not_stalls(server, tmp_path):
    """Each connection has the timeout to answer, and the file's first byte the timeout after that;
    the speed is measured from that byte on. (A watchdog counting from the first connection would
    call each of these downloads stalled in its first second.)"""
    import socket
    import time

    def answer(conn):
        with conn:
            path = conn.recv(65536).split()[1].decode()
            time.sleep(0.6)
            if path in ("/hop1", "/hop2"):
                target = "/hop2" if path == "/hop1" else "/late"
                conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n")
            time.sleep(0.6)
            for _ in range(100):  # then 10 kB/s, twice the speed asked for
                conn.sendall(b"x" * 100)
                time.sleep(0.01)

    listener = socket.create_server(("127.0.0.1", 0))
    serve_raw(listener, answer)
    try:
        start = time.monotonic()
        path = cached_download(f"http://127.0.0.1:{listener.getsockname()[1]}/hop1", timeout=1.0, min_speed=5000)
        assert path.read_bytes() == b"x" * 10000
        assert time.monotonic() - start > 2.4  # three slow answers, a late first byte and a second of body
    finally:
        listener.close()


def test_a_file_bigger_than_the_free_space_is_refused_before_it_is_fetched(server, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    root, url = server
    (root / "f.bin").write_bytes(b"x" * 3_000_000)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2_000_000, 2_000_000))
    with pytest.raises(DownloadError, match=r"it is 2.9 MB and the cache folder .* has 1.9 MB free \(set STYLELIFT_CACHE"):
        cached_download(f"{url}/f.bin")
    assert not any((tmp_path / "cache" / "downloads").iterdir())


def test_redirects_are_followed_over_http_only(server, tmp_path):
    root, url = server
    save_generator(tiny_generator(), root / "net.pt")
    assert network_id(load_generator(f"{url}/moved.pt")) == network_id(load_generator(root / "net.pt"))
    with pytest.raises(DownloadError, match=f"^cannot download {url}/hop.pt: the server redirects it to ftp://127.0.0.1/net.pt, and only http and https are followed$") as e:
        cached_download(f"{url}/hop.pt?token=secret")  # via /to-ftp.pt: the message names the URL asked for
    assert "secret" not in str(e.value)
    with pytest.raises(DownloadError, match=f"^cannot download {url}/to-file.pt: the server redirects it to file:///etc/passwd, and only http and https are followed$"):
        cached_download(f"{url}/to-file.pt")  # urllib's own refusal would show the target's query
    assert [p.name.split("-", 1)[1] for p in (tmp_path / "cache" / "downloads").iterdir()] == ["moved.pt"]


def test_what_servers_proxies_and_the_cache_say_is_named_plainly(server, tmp_path, monkeypatch):
    from stylelift.models import download

    root, url = server
    with pytest.raises(DownloadError) as e:
        cached_download(f"{url}/reason.pt?token=secret")  # the server's words were printed: its token with them
    assert str(e.value) == f"cannot download {url}/reason.pt: HTTP 403 Forbidden"
    with pytest.raises(DownloadError, match=r"the server sends it compressed \(Content-Encoding: gzip\), which stylelift does not undo"):
        cached_download(f"{url}/gzip.pt")  # was kept compressed, then "gzip.pt is not a network file" under the cache's name
    with pytest.raises(DownloadError, match=r"Content-Encoding: gzip, identity"):  # a list of codings: one is a compression
        cached_download(f"{url}/gzip-both.pt")
    save_generator(tiny_generator(), root / "net.pt")
    assert network_id(load_generator(url.replace("http://", "HTTP://") + "/net.pt")) == network_id(load_generator(root / "net.pt"))  # was "no network file HTTP://..."
    cached_path(f"{url}/dir.pt").mkdir(parents=True)
    with pytest.raises(DownloadError, match=r"a folder takes its place in the cache \(.*dir.pt\); remove it"):  # named the temporary .part file
        cached_download(f"{url}/dir.pt")
    cached_download(f"{url}/net.pt")
    monkeypatch.setattr(download, "file_sha256", lambda path: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    pin = "0" * 64
    with pytest.raises(DownloadError, match=rf"cannot read the cached copy of {url}/net.pt, .*net.pt: Input/output error"):  # said nothing but "Input/output error"
        cached_download(f"{url}/net.pt", sha256=pin)
    monkeypatch.undo()
    monkeypatch.setenv("STYLELIFT_CACHE", str(tmp_path / "cache"))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")  # a proxy that is not there: the server was blamed
    with pytest.raises(DownloadError, match=r"Connection refused \(through the proxy http://127.0.0.1:1 that \$http_proxy names\)"):
        cached_download(f"{url}/other.pt")
    proxied = download._through_proxy(f"{url}/x.pt", urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert proxied == " (through the proxy http://127.0.0.1:1 that $http_proxy names)"
    assert download._through_proxy(f"{url}/x.pt", ConnectionResetError(104, "Connection reset by peer")) == proxied  # a proxy that takes the connection, then drops it
    for not_the_proxy in (urllib.error.URLError("the server redirects it to ftp://h/x"), OSError(27, "File too large"), urllib.error.HTTPError(url, 404, "x", {}, None)):
        assert download._through_proxy(f"{url}/x.pt", not_the_proxy) == ""  # refused by stylelift, a write to the cache, the server's answer
    monkeypatch.setenv("no_proxy", url.removeprefix("http://"))  # host:port, as urllib matches it: connected directly
    assert download._through_proxy(f"{url}/x.pt", urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))) == ""
    assert download._reason(urllib.error.HTTPError(url, 304, "Not Modified (of /x?token=s)", {}, None)) == "HTTP 304 Not Modified"  # not a redirect loop
    redirects = download._HttpOnlyRedirects()
    request = urllib.request.Request("https://example.org/net.pt")
    with pytest.raises(urllib.error.URLError, match="redirects it from https to plain http"):
        redirects.http_error_302(request, io.BytesIO(), 302, "Found", {"location": "http://example.org/net.pt"})


def test_a_damaged_download_names_its_url_and_is_not_kept(server, tmp_path):
    root, url = server
    save_generator(tiny_generator(), root / "good.pt")
    whole = (root / "good.pt").read_bytes()
    (root / "net.pt").write_bytes(whole[: len(whole) // 2])  # a zip cut in half: it looks like a torch file
    with pytest.raises(CheckpointError, match=f"^{url}/net.pt \\(downloaded\\): .*; removed it from the cache$"):
        load_generator(f"{url}/net.pt")
    assert not any((tmp_path / "cache" / "downloads").iterdir())
    (root / "net.pt").write_bytes(whole)  # mended on the server: the next try fetches it again
    assert network_id(load_generator(f"{url}/net.pt")) == network_id(load_generator(root / "good.pt"))
    assert Handler.hits == ["/net.pt", "/net.pt"]


def test_a_download_refused_as_code_is_not_kept(server, tmp_path):
    from stylelift.errors import UnsafeCheckpointError

    root, url = server
    (root / "evil.pkl").write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # one damaged byte in a class name reads the same way
    with pytest.raises(UnsafeCheckpointError, match="removed it from the cache$"):
        load_generator(f"{url}/evil.pkl")
    assert not any((tmp_path / "cache" / "downloads").iterdir())


def test_a_whole_download_of_an_unsupported_version_is_kept(server, tmp_path):
    from stylelift.errors import UnsupportedNetworkError

    root, url = server
    save_generator(tiny_generator(), root / "good.pt")
    data = torch.load(root / "good.pt", weights_only=True)
    data["version"] = 99  # from a newer stylelift: whole, and not readable by this one
    torch.save(data, root / "new.pt")
    for came in ("downloaded", "cached copy"):  # (the second was called downloaded too)
        with pytest.raises(UnsupportedNetworkError, match=f"^{url}/new.pt \\({came}\\): new.pt has stylelift format version 99; this stylelift reads 1; kept in the cache as .*new.pt$"):
            load_generator(f"{url}/new.pt")
    assert Handler.hits == ["/new.pt"]  # the second try read the kept copy
    data["version"] = 98
    torch.save(data, root / "new.pt")
    pin = hashlib.sha256((root / "new.pt").read_bytes()).hexdigest()
    with pytest.raises(UnsupportedNetworkError, match=rf"^{url}/new.pt \(downloaded\): new.pt has stylelift format version 98"):  # the kept copy failed the pin: fetched again
        load_generator(f"{url}/new.pt#sha256={pin}")


def test_killed_downloads_are_cleared_and_kept_files_follow_the_umask(server, tmp_path):
    import os
    import time

    root, url = server
    (root / "f.bin").write_bytes(b"abc")
    folder = tmp_path / "cache" / "downloads"
    folder.mkdir(parents=True)
    old, fresh, stopped, stuck = folder / ".x.1.part", folder / ".y.2.part", folder / ".z.3.part", folder / ".w.4.part"
    stuck.mkdir()  # cannot be removed as a file: passed over, not an error
    old.write_bytes(b"left by kill -9")
    fresh.write_bytes(b"another download, running")
    stopped.write_bytes(b"a download stopped with Ctrl-Z for hours: it holds its lock")
    for path in (old, stopped, stuck):
        os.utime(path, (time.time() - 2 * 3600,) * 2)
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, os, sys; fd = os.open({str(stopped)!r}, os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"1\n"  # another process holds it, as the stopped download would
    mask = os.umask(0o027)
    try:
        path = cached_download(f"{url}/f.bin")
    finally:
        os.umask(mask)
        holder.communicate(b"")
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, fresh.name, stopped.name, stuck.name])
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


def test_a_log_file_is_told_of_a_download_when_it_starts(server, tmp_path):
    from typer.testing import CliRunner

    from stylelift.cli import app

    root, url = server
    save_generator(tiny_generator(), root / "net.pt")
    size = (root / "net.pt").stat().st_size / 2**20
    r = CliRunner().invoke(app, ["info", f"{url}/net.pt"])  # stderr is no terminal here
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith(f"downloaded {url}/net.pt ({size:.1f} MB)"))
    assert lines[0] == f"downloading {url}/net.pt ({size:.1f} MB) ...", r.output
    assert all(re.fullmatch(rf"downloading {re.escape(url)}/net.pt: \d+% \(.*\)", line) for line in lines[1:done]), r.output  # the file may come in pieces


def test_https_downloads_work_and_a_server_dripping_its_answer_or_handshake_is_cut_off(tmp_path, monkeypatch):
    """The watchdog shuts down the TCP socket under TLS; a self-signed certificate for 127.0.0.1,
    trusted through SSL_CERT_FILE, stands in for a real server's."""
    import shutil
    import socket
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("STYLELIFT_CACHE", str(tmp_path / "cache"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn):
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                if b"/drip" not in tls.recv(65536):
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    return
                drip(tls, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")
        except OSError:
            pass

    serve_raw(listener, answer)
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    try:
        assert cached_download(f"{url}/hello.bin", timeout=5).read_bytes() == b"hello"
        cut_off_quickly(f"{url}/drip.bin", r"it has stalled \(the server's answer did not come within 0.3 s\)", min_speed=1000)
    finally:
        listener.close()

    def drip_handshake(conn):  # the head of a 16 kB handshake record, then its body a byte at a time
        # (no watchdog needed: CPython bounds a whole TLS handshake by the socket's timeout)
        with conn:
            try:
                conn.recv(65536)  # the client's hello
            except OSError:
                return
            drip(conn, b"\x16\x03\x03\x40\x00", b"\x00")

    listener = socket.create_server(("127.0.0.1", 0))
    serve_raw(listener, drip_handshake)
    try:
        cut_off_quickly(f"https://127.0.0.1:{listener.getsockname()[1]}/x.pt", r"^cannot download https://127.0.0.1:\d+/x.pt: .*handshake operation timed out$", min_speed=0)
    finally:
        listener.close()


def test_a_log_file_gets_a_line_at_each_tenth_of_a_download(capsys):
    from stylelift.cli import DownloadBar

    with DownloadBar("downloading x") as bar:  # stderr is captured: no terminal
        for done in (0, 50, 150, 160, 990, 1000):
            bar(done, 1000)
    assert capsys.readouterr().err.splitlines() == ["downloading x (0.0 MB) ...", "downloading x: 15% (0.0 of 0.0 MB)", "downloading x: 99% (0.0 of 0.0 MB)"]


@pytest.mark.parametrize("digits", [400, 5000])
def test_an_absurd_content_length_is_one_line(server, tmp_path, monkeypatch, digits):
    _, url = server
    monkeypatch.setattr(Handler, "huge_length", "1" + "0" * digits, raising=False)
    with pytest.raises(DownloadError, match="the server says it is far larger than any file, above stylelift's limit") as e:
        cached_download(f"{url}/huge.bin")
    assert "\n" not in str(e.value)
