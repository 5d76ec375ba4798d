"""Outputs that cannot be written are found before the work, and said in one line."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import save_generator
from stylelift.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(), path)
    return path


@pytest.fixture
def read_only(tmp_path):
    """A folder no file can be made in, even by root (chattr +i), or a skip where that cannot be had."""
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    immutable = False
    if os.access(folder, os.W_OK) and shutil.which("chattr"):  # root ignores the mode
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        (folder / "probe").write_text("x")
        (folder / "probe").unlink()
        writable = True
    except OSError:
        writable = False
    if writable:
        pytest.skip("no read-only folder can be made here")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    os.chmod(folder, 0o755)


def one_line_naming(r, path) -> bool:
    lines = r.output.strip().splitlines()
    return r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0] and ".tmp-" not in lines[0]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
def test_a_folder_that_takes_no_files_is_called_one(net):
    r = invoke("mix", "--rows", "1", "--cols", "2", "--network", net, "--out", "/proc/grid.png")
    assert r.exit_code == 1 and r.output.strip() == "error: /proc: this folder takes no new files", r.output  # was "No such file or directory"


def test_a_read_only_folder_is_one_line_before_any_work(tmp_path, net, read_only, monkeypatch):
    from stylelift.projector import run as run_module

    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    monkeypatch.setattr(run_module, "_project_batch", lambda *a, **k: pytest.fail("projected before finding the folder read-only"))
    r = invoke("project", tmp_path / "p.png", "--network", net, "--no-align", "--loss", "mse", "--steps", "2", "--outdir", read_only / "sub")
    assert one_line_naming(r, read_only), r.output
    for args in (
        ["convert", net, read_only / "x.pt"],  # torch.save opening the file itself raised a RuntimeError
        ["directions", "sefa", "--network", net, "--outdir", read_only],
        ["directions", "learn", "--attribute", "x", "--labels", tmp_path / "none.csv", "--network", net, "--out", read_only / "d.npy"],
        ["encoder", "fit", "--network", net, "--out", read_only / "f.pt", "--samples", "10", "--rank", "2"],
        ["encoder", "train", "--network", net, "--out", read_only / "e.pt", "--steps", "1", "--batch-size", "2", "--input-resolution", "32"],
    ):
        r = invoke(*args)
        assert one_line_naming(r, read_only), (args[:2], r.output)
    monkeypatch.setattr("stylelift.generation.render_ws", lambda *a, **k: pytest.fail("rendered before finding the folder read-only"))
    for out in ("x.gif", "x.png", "x.mp4"):
        r = invoke("edit", "3", "--direction", "age", "--network", net, "--out", read_only / out)
        assert one_line_naming(r, read_only), (out, r.output)
    assert list(read_only.iterdir()) == []


def test_a_picture_larger_than_its_format_holds_is_refused_before_rendering(tmp_path, net):
    for out, count in (("e.webp", 1025), ("e.jpg", 4097)):  # 16-px tiles in a row: 16,400 and 65,552 pixels wide
        r = invoke("edit", "3", "--direction", "age", "--strength", f"0:1:{count}", "--network", net, "--out", tmp_path / out)
        assert r.exit_code == 1 and f"pixels, more than a {out[1:]}" in r.output, r.output  # before the direction is even read
    r = invoke("truncation-sweep", "--seeds", "0", "--psi", "0:1:1023", "--network", net, "--out", tmp_path / "t.webp")
    assert r.exit_code == 0 and Image.open(tmp_path / "t.webp").size == (1023 * 16, 16), r.output  # 16,368 pixels: fits


def test_a_folder_where_one_of_a_set_goes_is_found_before_the_set_is_replaced(tmp_path, net):
    s = tmp_path / "s"
    assert invoke("directions", "sefa", "--network", net, "--k", "3", "--outdir", s).exit_code == 0
    before = {p.name: p.read_bytes() for p in s.iterdir()}
    (s / "sefa_01.json").unlink()
    (s / "sefa_01.json").mkdir()
    r = invoke("directions", "sefa", "--network", net, "--k", "3", "--layers", "0", "--outdir", s, "--overwrite")
    assert r.exit_code == 1 and "sefa_01.json is a folder" in r.output, r.output
    assert all((s / name).read_bytes() == data for name, data in before.items() if name != "sefa_01.json")  # nothing replaced


def test_encoder_training_refuses_a_batch_norm_of_one_value(tmp_path, net):
    r = invoke("encoder", "train", "--network", net, "--out", tmp_path / "e.pt", "--steps", "1", "--batch-size", "1", "--input-resolution", "32", "--device", "cpu")
    assert r.exit_code == 1 and "--batch-size 2 or more" in r.output and not (tmp_path / "e.pt").exists(), r.output


def test_make_grid_takes_a_batch_array_and_refuses_odd_tiles():
    from stylelift.errors import InputError
    from stylelift.images import make_grid

    batch = np.arange(4 * 2 * 3 * 3, dtype=np.uint8).reshape(4, 2, 3, 3)  # [N, H, W, C] as to_uint8 gives
    assert np.array_equal(make_grid(batch, cols=2), make_grid(list(batch), cols=2)) and make_grid(batch, cols=np.int64(4)).shape == (2, 12, 3)
    for images, kwargs, why in (([batch[0], batch[0][:1]], {}, "one size"), (batch, {"cols": -1}, "cols must be"), (batch, {"pad": -1}, "pad"), ([], {}, "no images")):
        with pytest.raises(InputError, match=why):
            make_grid(images, **kwargs)


def test_to_uint8_refuses_what_is_not_a_network_image_batch():
    import torch

    from stylelift.images import to_uint8

    for bad in (torch.rand(1, 8, 8, 3), np.zeros([1, 3, 8, 8]), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)):  # NHWC, an array, pixels already
        with pytest.raises(ValueError, match=r"float image batch \[N, C, H, W\]"):
            to_uint8(bad)


def test_the_longest_name_a_file_system_takes_and_the_set_checked_against_it(tmp_path, monkeypatch):
    import os

    from stylelift.fileio import check_name_lengths, name_max
    from stylelift.errors import InputError

    check_name_lengths([tmp_path / ("a" * 255)])
    with pytest.raises(InputError, match=r"^the output name a{40}\.\.\. is longer than the file system takes \(255 bytes\); rename the photo$"):
        check_name_lengths([tmp_path / "short", tmp_path / ("a" * 256)])
    with pytest.raises(InputError, match=r"^the output name 顔{40}\.\.\. is longer"):
        check_name_lengths([tmp_path / ("顔" * 86)])  # 258 bytes of UTF-8
    monkeypatch.setattr(os, "pathconf", lambda path, name: -1)  # no fixed limit: 255, not every name refused
    assert name_max(tmp_path / "not" / "yet") == 255
    monkeypatch.setattr(os, "pathconf", lambda path, name: 1530)  # FAT's bytes (255 characters of up to 6)
    assert name_max(tmp_path) == 255
    monkeypatch.setattr(os, "pathconf", lambda path, name: 143)  # eCryptfs
    check_name_lengths([tmp_path / ("b" * 143)])
    with pytest.raises(InputError, match=r"\(143 bytes\)"):
        check_name_lengths([tmp_path / ("b" * 144)])


def test_project_finds_a_name_too_long_before_the_optimisation(tmp_path, net):
    long = tmp_path / f"{'p' * 245}.png"  # NAME.png and NAME.npz fit, NAME_metrics.json does not
    Image.new("RGB", (40, 40), (120, 80, 60)).save(long)
    r = invoke("project", long, "--network", net, "--no-align", "--steps", "1", "--loss", "mse", "--no-video", "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "is longer than the file system takes (255 bytes); rename the photo" in r.output and "loss=" not in r.output, r.output  # no step was run
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_a_cache_folder_in_a_home_folder_this_machine_lacks_is_one_line(monkeypatch):
    from stylelift.errors import InputError
    from stylelift.models.download import cache_dir

    monkeypatch.setenv("STYLELIFT_CACHE", "~no-such-user-here/cache")  # Path.expanduser raised a RuntimeError
    with pytest.raises(InputError, match=r"^no cache folder: STYLELIFT_CACHE is in a home folder this machine cannot find; set STYLELIFT_CACHE to a folder$"):
        cache_dir()


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGTERM"])
def test_a_closing_terminal_or_a_kill_mid_write_keeps_the_earlier_file_and_leaves_no_temporary_one(tmp_path, net, monkeypatch, signame):
    import signal

    out = tmp_path / "mix.png"
    out.write_bytes(b"the earlier grid")
    real = Image.Image.save

    def save_then_signalled(self, fp, *args, **kwargs):
        real(self, fp, *args, **kwargs)
        os.kill(os.getpid(), getattr(signal, signame))  # the handler runs here, half-way through the write

    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}
    monkeypatch.setattr(Image.Image, "save", save_then_signalled)
    try:
        signal.signal(getattr(signal, signame), signal.SIG_DFL)  # as a terminal's (under nohup SIGHUP starts ignored, and stays so)
        r = invoke("mix", "--rows", "1", "--cols", "2", "--network", net, "--out", out)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert r.exit_code == 128 + getattr(signal, signame), r.output
    assert out.read_bytes() == b"the earlier grid" and sorted(p.name for p in tmp_path.iterdir()) == ["mix.png", "net.pt"]


def test_ffmpeg_killed_by_a_signal_is_said_in_words():
    from stylelift.images import stopped_how

    assert stopped_how(1) == "it stopped with exit code 1"
    assert stopped_how(-25) == "it was killed by SIGXFSZ (the file size limit, ulimit -f)"
    assert stopped_how(-9) == "it was killed by SIGKILL (out of memory?)"


def test_progress_lines_on_a_full_stderr_cost_the_lines_not_the_run():
    from stylelift.progress import StepProgress

    import contextlib

    full = open("/dev/full", "w")
    with StepProgress("steps", 10, stream=full) as bar:
        for step in range(1, 11):
            bar.update(step, "loss 1")
    assert bar.completed == 10 and bar.next_line == 11  # no more lines tried after the first failed
    with contextlib.suppress(OSError):  # the line still buffered fails once more
        full.close()


def test_a_set_signalled_while_it_is_renamed_into_place_is_renamed_whole(tmp_path, monkeypatch, sigint_raises):
    """Ctrl-C between the renames of project's set left the new NAME.npz beside the old pictures."""
    import signal

    from stylelift import fileio

    a, b, mark = tmp_path / "a.npz", tmp_path / "b.png", tmp_path / "done.json"
    for path in (a, b, mark):
        path.write_text("old")
    real = os.replace
    calls = []

    def rename_then_interrupted(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(fileio.os, "replace", rename_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with fileio.written_together([a, b], remove=(mark,)) as tmps:
            for tmp in tmps:
                tmp.write_text("new")
    assert a.read_text() == b.read_text() == "new" and not mark.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.png"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_after_the_command_ends_the_process_at_once_with_its_output_flushed():
    import sys

    code = ("import os, signal, sys, time\nfrom stylelift.cli import _exit_at_once\n"
            "signal.signal(signal.SIGTERM, _exit_at_once)\nprint('wrote out.png')\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert p.returncode == 143 and p.stdout == b"wrote out.png\n" and p.stderr == b"", p


def test_a_progress_bar_on_a_terminal_that_is_gone_does_not_hide_the_error_unwinding():
    """A hang-up under project's bar: rich's write to the dead terminal replaced the SystemExit(129)."""
    from stylelift.progress import StepProgress

    class GoneTerminal:
        def __exit__(self, *exc):
            raise OSError(5, "Input/output error")

    progress = StepProgress("steps", 3)
    progress.bar = GoneTerminal()
    assert progress.__exit__(SystemExit, SystemExit(129), None) is None  # the SystemExit goes on unwinding
    with pytest.raises(OSError, match="Input/output error"):  # with nothing unwinding, the error is the one to tell
        progress.__exit__(None, None, None)
