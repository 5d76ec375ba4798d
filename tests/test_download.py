import http.server
import threading
from functools import partial

import pytest

from conftest import tiny_generator
from stylelift import load_generator, network_id, save_generator
from stylelift.models.download import DownloadError, cached_download


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
        super().do_GET()

    def log_message(self, *args):
        pass


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
