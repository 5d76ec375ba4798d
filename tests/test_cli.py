import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import LatentFile, save_generator, save_latents
from stylelift.cli import app, parse_int_list
from stylelift.generation import z_from_seed
from stylelift.images import to_uint8

runner = CliRunner()


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "tiny.pt"
    save_generator(tiny_generator(), path)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_writes_one_png_per_seed_matching_the_library(tmp_path, net):
    out = tmp_path / "out"
    r = invoke("generate", "--network", net, "--seeds", "0,2-3", "--trunc", "0.7", "--outdir", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "seed0000.png", "seed0002.png", "seed0003.png"]
    G = tiny_generator()
    z = torch.from_numpy(z_from_seed(2, G.z_dim))
    expected = to_uint8(G(z, truncation_psi=0.7))[0]
    assert np.array_equal(np.asarray(Image.open(out / "seed0002.png")), expected)
    assert Image.open(out / "grid.png").size == (32, 32)


def test_a_setting_or_flag_given_twice_keeps_its_last_value(tmp_path, net):
    out = tmp_path / "out"
    r = invoke("generate", "--network", "nowhere.pt", "--trunc", "0.1", "--seeds", "0", "--grid", "--no-grid", "--outdir", out, "--device", "cpu", "-n", net, "--trunc", "0.7")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png"]
    G = tiny_generator()
    expected = to_uint8(G(torch.from_numpy(z_from_seed(0, G.z_dim)), truncation_psi=0.7))[0]
    assert np.array_equal(np.asarray(Image.open(out / "seed0000.png")), expected)


def test_running_out_of_gpu_memory_is_one_line_and_exit_1(tmp_path, net, monkeypatch):
    from stylelift import generation

    def too_big(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")  # a RuntimeError, not a MemoryError

    monkeypatch.setattr(generation, "iter_seed_images", too_big)
    r = invoke("generate", "--network", net, "--seeds", "0-3", "--outdir", tmp_path / "out", "--device", "cpu")
    assert r.exit_code == 1 and "out of memory" in r.output and "Traceback" not in r.output, r.output

    def host_too_small(*args, **kwargs):
        torch.empty(2**62, dtype=torch.uint8)  # torch's CPU allocator fails with a plain RuntimeError

    monkeypatch.setattr(generation, "iter_seed_images", host_too_small)
    r = invoke("generate", "--network", net, "--seeds", "0-3", "--outdir", tmp_path / "out", "--device", "cpu")
    assert r.exit_code == 1 and "out of memory" in r.output and "Traceback" not in r.output, r.output

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")  # other RuntimeErrors are bugs: not hidden behind an error line

    monkeypatch.setattr(generation, "iter_seed_images", bug)
    r = invoke("generate", "--network", net, "--seeds", "0-3", "--outdir", tmp_path / "out", "--device", "cpu")
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "a bug"


def test_cuda_without_an_index_means_the_current_gpu(monkeypatch):
    from stylelift.cli import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for name, expected in (("auto", "cuda:1"), ("cuda", "cuda:1"), ("cuda:0", "cuda:0"), ("cpu", "cpu")):
        assert resolve_device(name) == torch.device(expected), name  # tensors report cuda:N, never plain cuda


def test_a_gpu_this_machine_lacks_is_one_error_line(monkeypatch, tmp_path, net):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    r = invoke("generate", "--network", net, "--seeds", "0", "--outdir", tmp_path / "o", "--device", "cuda:2")
    assert r.exit_code == 1 and r.output.strip().splitlines() == ["error: device 'cuda:2': this machine has 2 CUDA GPU(s), numbered from 0"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = invoke("generate", "--network", net, "--seeds", "0", "--outdir", tmp_path / "o", "--device", "cuda")
    assert r.exit_code == 1 and "torch sees no CUDA GPU on this machine" in r.output and not (tmp_path / "o").exists()


def test_seed_follows_numpy_randomstate_convention():
    assert np.array_equal(z_from_seed(5, 4), np.random.RandomState(5).randn(1, 4))


def test_generate_from_a_latent_file(tmp_path, net):
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, G.z_dim)).numpy()
    save_latents(tmp_path / "proj.npz", LatentFile(w=ws))
    r = invoke("generate", "--network", net, "--latents", tmp_path / "proj.npz", "--outdir", tmp_path / "o", "--no-grid")
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(tmp_path / "o" / "proj01.png"))
    assert np.array_equal(img, to_uint8(G.synthesis(torch.from_numpy(ws[1:2])))[0])


def test_a_noise_mode_that_would_do_nothing_is_refused_on_a_network_without_noise_inputs(tmp_path):
    save_generator(tiny_generator(use_noise=False), tmp_path / "quiet.pt")
    for mode in ("random", "none"):
        r = invoke("generate", "--network", tmp_path / "quiet.pt", "--seeds", "1", "--noise-mode", mode, "--outdir", tmp_path / "o")
        assert r.exit_code == 1 and f"--noise-mode {mode} does nothing here: this network has no noise inputs" in r.output and not (tmp_path / "o").exists(), r.output  # was accepted
    r = invoke("generate", "--network", tmp_path / "quiet.pt", "--seeds", "1", "--noise-mode", "const", "--outdir", tmp_path / "o")
    assert r.exit_code == 0 and (tmp_path / "o" / "seed0001.png").exists(), r.output  # what it does anyway


def test_latent_file_of_the_wrong_shape_is_one_line_and_exit_1(tmp_path, net):
    save_latents(tmp_path / "bad.npz", LatentFile(w=np.zeros([1, 5, 16], np.float32)))
    r = invoke("generate", "--network", net, "--latents", tmp_path / "bad.npz", "--outdir", tmp_path / "o")
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "needs [N, 6, 16]" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "args, text",
    [
        (["generate", "--network", "missing.pkl"], "no network file"),
        (["info", "not_here.pt"], "no network file"),
    ],
)
def test_missing_network_is_one_line_and_exit_1(args, text):
    r = invoke(*args)
    assert r.exit_code == 1 and text in r.output and "Traceback" not in r.output


def test_conditional_network_needs_class(tmp_path):
    path = tmp_path / "cond.pt"
    save_generator(tiny_generator(c_dim=3), path)
    r = invoke("generate", "--network", path, "--seeds", "0", "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "--class" in r.output
    r = invoke("generate", "--network", path, "--seeds", "0", "--class", "2", "--outdir", tmp_path / "o")
    assert r.exit_code == 0, r.output


def test_bad_seeds_are_a_usage_error():
    r = invoke("generate", "--seeds", "3-1")
    assert r.exit_code == 2 and "runs backwards" in r.output
    import typer

    with pytest.raises(typer.BadParameter, match="cannot read 'a'"):
        parse_int_list("a,b")
    assert parse_int_list("0,3,5-7") == [0, 3, 5, 6, 7]


def test_info_and_convert(tmp_path, net):
    r = invoke("info", net)
    assert r.exit_code == 0 and "num_ws: 6" in r.output and "16:8" in r.output
    dest = tmp_path / "copy.pt"
    assert invoke("convert", net, dest).exit_code == 0
    from stylelift import load_generator, network_id

    G, copy = load_generator(net), load_generator(dest)
    assert network_id(copy) == network_id(G) and list(G.state_dict()) == list(copy.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), copy.state_dict().values()))
    r = invoke("convert", net, dest)
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert invoke("convert", net, dest, "--overwrite").exit_code == 0
    data = torch.load(net, weights_only=True)
    data["meta"] = {None: 1, "\x1b[2Jnetwork id\n      fake": "x"}  # a file's meta with keys that are no str, or would print a line of their own
    torch.save(data, tmp_path / "keys.pt")
    r = invoke("info", tmp_path / "keys.pt")
    assert r.exit_code == 0 and "None: 1" in r.output and "\\x1b[2Jnetwork id\\n      fake: x" in r.output and "\x1b" not in r.output, r.output  # a TypeError; raw


def test_info_on_a_latent_file_says_it_is_one(tmp_path):
    save_latents(tmp_path / "p0.npz", LatentFile(w=np.zeros([1, 6, 16], np.float32)))
    r = invoke("info", tmp_path / "p0.npz")
    assert r.exit_code == 1 and r.output.strip().endswith("a latent file (numpy's .npz of w), not a network"), r.output


@pytest.fixture
def odd_files(tmp_path, net):
    """Files a user might hand in by mistake, and one file standing where a folder should be."""
    G = tiny_generator()
    (tmp_path / "afile").write_text("x")
    np.save(tmp_path / "w.npy", np.zeros([1, G.num_ws, G.w_dim], np.float32))
    save_latents(tmp_path / "other.npz", LatentFile(w=np.zeros([1, G.num_ws, G.w_dim], np.float32), meta={"network_id": "someone-else"}))
    save_latents(tmp_path / "other2.npz", LatentFile(w=np.zeros([1, 10, 512], np.float32), meta={"network_id": "stylegan2-x", "network": "ffhq-256.pkl"}))
    np.savez(tmp_path / "listmeta.npz", w=np.zeros([1, G.num_ws, G.w_dim], np.float32), meta=np.array("[1, 2]"))
    np.savez(tmp_path / "dir.npz", x=np.ones([1, G.w_dim], np.float32))
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "dirs").mkdir()
    (tmp_path / "dirs" / "sefa_01.npy").write_text("earlier")
    (tmp_path / "dirs" / "pca_02.json").write_text("earlier")
    (tmp_path / "twice.csv").write_text("seed,label\n1,0\n2,1\n3,0\n4,1\n3,1\n")
    (tmp_path / "twice2.csv").write_text("seed,label\n1,0.1\n2,1\n3,0\n4,1\n01,0.1000001\n")
    (tmp_path / "three.csv").write_text("seed,age,gender\n" + "".join(f"{i},{20 + i},{i % 2}\n" for i in range(12)))
    (tmp_path / "ok.csv").write_text("seed,label\n" + "".join(f"{i},{i % 2}\n" for i in range(12)))
    (tmp_path / "minus.csv").write_text("seed,label\n1,0\n2,1\n-5,0\n4,1\n")
    (tmp_path / "word.csv").write_text("seed,label\n1,0\n2,x\n3,0\n4,1\n")
    (tmp_path / "nan.csv").write_text("seed,label\n1,0\n2,nan\n3,0\n4,1\n")
    (tmp_path / "few.csv").write_text("seed,label\n1,0\n2,1\n3,0\n3,0\n")  # a repeated row counts once
    (tmp_path / "garbage.npy").write_bytes(b"not a numpy file")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "notvgg.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "badvgg.pth")  # the key, the wrong shape
    (tmp_path / "badheader.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4 }\n")  # the magic, then a header numpy cannot read
    np.save(tmp_path / "two.npy", np.ones([2, G.w_dim], np.float32))
    np.save(tmp_path / "ints.npy", np.ones([1, G.w_dim], np.int64))
    np.save(tmp_path / "short.npy", np.ones([1, G.w_dim - 1], np.float32))
    np.save(tmp_path / "unit.npy", np.ones([1, G.w_dim], np.float32))  # a direction for this network
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "g" / "grid.png").mkdir(parents=True)  # a folder where generate's grid would go
    with open(tmp_path / "hugeclaim.npy", "wb") as f:  # a header that claims a direction of this network's size, and 8 bytes
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1, G.w_dim)})
        f.write(b"\0" * 8)
    np.savez(tmp_path / "noisestack.npz", w=np.zeros([1, G.num_ws, G.w_dim], np.float32), noise_0=np.zeros([3, 64, 64], np.float32))
    deep = "[" * 100_000 + "]" * 100_000  # JSON nested past Python's recursion limit
    np.savez(tmp_path / "deep.npz", w=np.zeros([1, G.num_ws, G.w_dim], np.float32), meta=np.array(deep))
    np.save(tmp_path / "deepdir.npy", np.ones([1, G.w_dim], np.float32))
    (tmp_path / "deepdir.json").write_text(deep)
    np.save(tmp_path / "longint.npy", np.ones([1, G.w_dim], np.float32))
    (tmp_path / "longint.json").write_text('{"accuracy": 1' + "0" * 5000 + "}")  # json.loads raised int()'s ValueError
    (tmp_path / "bom.csv").write_text("\ufeff" + "".join(f"{i},{i % 2}\n" for i in range(12)), encoding="utf-8")
    (tmp_path / "deepcsv.csv").write_text("# stylelift sampling " + deep[49_000:-49_000] + "\n" + "".join(f"{i},{i % 2}\n" for i in range(12)))
    return tmp_path


BAD_INVOCATIONS = {
    # outputs checked before any work, and no folder made for nothing
    "grid-is-a-folder": (["generate", "--seeds", "0", "--outdir", "{d}/g"], 1, "grid.png is a folder, not a file"),
    "align-no-face-no-folder": (["align", "{d}/photo.png", "--outdir", "{d}/al"], 1, "photo.png"),
    "align-outdir-is-a-file": (["align", "{d}/photo.png", "--outdir", "{d}/afile"], 1, "afile is a file, not a folder"),
    "seeds-unicode-digit": (["generate", "--seeds", "\u0661", "--outdir", "{d}/o"], 2, "cannot read"),
    "train-lr-nan": (["encoder", "train", "--out", "{d}/e.pt", "--lr", "nan"], 2, "nan is not a learning rate"),
    "train-out-not-pt": (["encoder", "train", "--out", "{d}/e.txt", "--steps", "1"], 2, "must end in .pt"),
    # an existing file where the output folder should be
    "outdir-is-a-file": (["generate", "--seeds", "0", "--outdir", "{d}/afile"], 1, None),
    "sweep-out-under-a-file": (["truncation-sweep", "--seeds", "0", "--psi", "0:1:2", "--out", "{d}/afile/t.png"], 1, "afile is a file, not a folder"),
    "sefa-outdir-under-a-file": (["directions", "sefa", "--outdir", "{d}/afile/s"], 1, "afile is a file, not a folder"),
    "pca-outdir-is-a-file": (["directions", "pca", "--samples", "10", "--outdir", "{d}/afile"], 1, "afile is a file, not a folder"),
    "psi-beyond-float32": (["generate", "--seeds", "0", "--trunc", "1e39", "--outdir", "{d}/o"], 2, "1e+39 is beyond float32's range"),
    "learn-psi-beyond-float32": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--trunc", "-1e39", "--out", "{d}/d.npy"], 2, "-1e+39 is beyond float32's"),
    "sweep-psi-beyond-float32": (["truncation-sweep", "--seeds", "0", "--psi", "1,1e39", "--out", "{d}/t.png"], 2, "--psi 1e+39 is beyond"),
    "learn-bad-cutoff": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--trunc", "0.5", "--trunc-cutoff", "99", "--out", "{d}/d.npy"], 1, "error: the truncation cutoff"),
    "labels-conflicting-spelled-apart": (["directions", "learn", "--attribute", "x", "--labels", "{d}/twice2.csv", "--out", "{d}/d.npy"], 1, "01 is labelled twice, 0.1 and 0.1000001"),
    "strength-overflow": (["edit", "0", "--direction", "{d}/dir.npz", "--strength", "1e308:-1e308:3", "--out", "{d}/e.png"], 2, "--strength '1e308:-1e308:3': START and STOP must be finite numbers"),
    "strength-inf-end": (["edit", "0", "--direction", "{d}/dir.npz", "--strength", "inf:1:3", "--out", "{d}/e.png"], 2, "--strength 'inf:1:3': START and STOP must be finite"),
    "photo-folder": (["edit", "{d}/other.npz", "--direction", "{d}/dir.npz", "--paste-back", "--photo", "{d}/dirs", "--out", "{d}/e.png"], 1, "a folder, not a photo"),
    "outdir-under-a-file": (["generate", "--seeds", "0", "--outdir", "{d}/afile/o"], 1, "afile is a file"),
    "latent-meta-nested-too-deep": (["generate", "--latents", "{d}/deep.npz", "--outdir", "{d}/o"], 1, "deep.npz: its 'meta' is not the JSON object"),
    "sidecar-with-a-5000-digit-number": (["edit", "0", "--direction", "{d}/longint.npy", "--out", "{d}/e.png"], 1, "longint.json, the sidecar of longint.npy, is not readable JSON"),
    "sidecar-nested-too-deep": (["edit", "0", "--direction", "{d}/deepdir.npy", "--out", "{d}/e.png"], 1, "deepdir.json, the sidecar of deepdir.npy, is not readable JSON"),
    "sampling-line-nested-too-deep": (["directions", "learn", "--attribute", "x", "--labels", "{d}/deepcsv.csv", "--out", "{d}/d.npy"], 1, "is not a JSON object"),
    "direction-claiming-too-much": (["edit", "0", "--direction", "{d}/hugeclaim.npy", "--out", "{d}/e.png"], 1, "hugeclaim.npy claims an array [1, 16] (64 bytes) but holds less"),
    "noise-maps-that-are-not-one-map": (["generate", "--latents", "{d}/noisestack.npz", "--outdir", "{d}/o"], 1, "'noise_0' is [3, 64, 64], not one square noise map"),
    "glob-matching-nothing": (["align", "{d}/nothing*.jpg", "--outdir", "{d}/al"], 1, "no photo matches"),  # said once, not twice
    "folder-without-images": (["project", "{d}/dirs", "--outdir", "{d}/pr"], 1, "no images in the folders named"),
    "direction-unknown-name": (["edit", "0", "--direction", "smile", "--out", "{d}/e.png"], 1, "name a shipped one (age, gender"),
    "out-parent-is-a-file": (["mix", "--rows", "0", "--cols", "1", "--out", "{d}/afile/m.png"], 1, "afile is a file"),
    "convert-into-a-file": (["convert", "{net}", "{d}/afile/x.pt"], 1, "afile is a file"),
    "convert-onto-a-folder": (["convert", "{net}", "{d}/folder.pt", "--overwrite"], 1, "is a folder"),
    "convert-what-needs-no-conversion": (["convert", "mobile-ffhq", "{d}/newfolder/net.pt"], 1, "mobile-ffhq is a MobileStyleGAN: no conversion is needed"),  # and no folder made
    "convert-to-a-pickle-name": (["convert", "{net}", "{d}/n.pkl"], 2, "NAME.pt"),
    "sweep-latents-missing": (["truncation-sweep", "--latents", "{d}/none.npz", "--out", "{d}/t.png"], 1, "error: no latent file"),  # as generate --latents says
    "encoder-a-folder": (["encoder", "run", "{d}/photo.png", "--no-align", "--encoder", "{d}/dirs", "--outdir", "{d}/er"], 1, "dirs is a folder, not an encoder file"),  # was "Is a directory"
    "encoder-run-outdir-under-a-file": (["encoder", "run", "{d}/photo.png", "--no-align", "--outdir", "{d}/afile/er"], 1, "--outdir"),  # before any photo (each photo said it)
    "learn-out-under-a-file": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--out", "{d}/afile/d.npy"], 1, "afile/d.npy: "),  # as mix --out says it
    "space-z-with-a-file": (["interpolate", "0", "{d}/other.npz", "--space", "z", "--out", "{d}/i.gif"], 2, "--space z needs seeds"),
    "styles-backwards": (["mix", "--rows", "0", "--cols", "1", "--styles", "3-1", "--out", "{d}/m.png"], 2, "layer range '3-1' runs backwards"),  # read before the network (was exit 1)
    "layers-unknown-name": (["edit", "0", "--direction", "{d}/unit.npy", "--layers", "eyes", "--out", "{d}/e.png"], 2, "unknown layer name 'eyes'"),
    "layers-beyond-the-network": (["edit", "0", "--direction", "{d}/unit.npy", "--layers", "0-40", "--out", "{d}/e.png"], 1, "layer range 0-40 is outside 0-5 for this network (6 ws)"),  # only the network can tell
    "item-seed-above-32-bits": (["edit", "99999999999", "--direction", "{d}/unit.npy", "--out", "{d}/e.png"], 2, "seed 99999999999 is above 4294967295 (seeds are 32-bit)"),  # as generate --seeds says
    "item-seed-of-5000-digits": (["edit", "9" * 5000, "--direction", "{d}/unit.npy", "--out", "{d}/e.png"], 2, "is above 4294967295 (seeds are 32-bit)"),  # int() raised ValueError
    "seeds-of-5000-digits": (["generate", "--seeds", "1-" + "9" * 5000, "--outdir", "{d}/g"], 2, "is above 4294967295 (seeds are 32-bit)"),
    "latents-empty": (["generate", "--latents", "", "--outdir", "{d}/g"], 2, "is empty; name a file"),  # was ". is a folder" (exit 1)
    "photo-empty": (["project", "", "--outdir", "{d}/p"], 2, "an empty photo name"),  # it projected every image in the current folder
    "item-seed-zero-padded-past-4300-digits": (["edit", "0" * 5000 + "7", "--direction", "{d}/unit.npy", "--strength", "x", "--out", "{d}/e.png"], 2, "cannot read --strength 'x'"),  # read as seed 7 (int() raised)
    "seeds-zero-padded-past-4300-digits": (["generate", "--seeds", "0" * 5000 + "1,a", "--outdir", "{d}/g"], 2, "cannot read 'a' in seeds"),
    "seed-above-32-bits-named-whole": (["generate", "--seeds", "99999999999", "--outdir", "{d}/g"], 2, "seed 99999999999 in seeds '99999999999' is above 4294967295"),  # not cut with '...'
    "sweep-latents-empty": (["truncation-sweep", "--latents", "", "--out", "{d}/t.png"], 2, "is empty; name a file"),
    "item-empty": (["interpolate", "", "1", "--out", "{d}/i.gif"], 2, "an empty item: give seeds"),  # as mix --rows '' says
    "sefa-empty-layers": (["directions", "sefa", "--layers", "", "--outdir", "{d}/s"], 2, "layers '' has an empty item"),
    "learn-empty-layers": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--layers", "", "--out", "{d}/d.npy"], 2, "layers '' has an empty item"),
    "save-labels-with-labels": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--save-labels", "{d}/s.csv", "--out", "{d}/d.npy"], 2, "--save-labels writes"),
    "w-noise-nan": (["project", "{d}/photo.png", "--w-noise", "nan", "--outdir", "{d}/p"], 2, "nan is not a finite number"),
    "project-steps-huge": (["project", "{d}/photo.png", "--steps", "99999999999999999999", "--outdir", "{d}/p"], 2, "'--steps': Input should be less than or equal to 1000000"),
    "encoder-input-resolution-0": (["encoder", "train", "--out", "{d}/e.pt", "--input-resolution", "0"], 2, "'--input-resolution': Input should be greater than or equal to 32"),
    "sefa-onto-earlier-ones": (["directions", "sefa", "--k", "3", "--outdir", "{d}/dirs"], 1, "already holds sefa_01.npy; pass --overwrite"),
    "pca-onto-earlier-ones": (["directions", "pca", "--k", "3", "--samples", "10", "--outdir", "{d}/dirs"], 1, "already holds pca_02.json; pass --overwrite"),
    # formats and counts checked before any work
    "unknown-image-suffix": (["truncation-sweep", "--seeds", "0", "--psi", "0:1:2", "--out", "{d}/t.xyz"], 2, "must end in"),
    "no-suffix": (["mix", "--rows", "0", "--cols", "1", "--out", "{d}/m"], 2, "must end in"),
    "direction-out-not-npy": (["directions", "learn", "--attribute", "x", "--labels", "{d}/l.csv", "--out", "{d}/d.xyz"], 2, ".npy"),
    "batch-size-0": (["truncation-sweep", "--seeds", "0", "--batch-size", "0", "--out", "{d}/t.png"], 2, "'--batch-size': Input should be greater than or equal to 1"),
    "fps-0": (["interpolate", "0", "1", "--frames", "2", "--fps", "0", "--out", "{d}/i.gif"], 2, "'--fps': Input should be greater than or equal to 1"),
    "fps-of-a-strip": (["interpolate", "0", "1", "--grid", "--fps", "30", "--out", "{d}/i.png"], 2, "--fps is for a video; --grid writes a still strip"),  # it did nothing
    "fps-of-a-default-strip": (["interpolate", "0", "1", "--grid", "--fps", "30"], 2, "--fps is for a video; --grid writes a still strip"),  # named interpolation.png, not given
    "fps-of-an-edit-strip": (["edit", "0", "--direction", "age", "--fps", "30", "--out", "{d}/e.png"], 2, "--fps is for a video (.mp4 or .gif); e.png is a still"),
    "frames-huge": (["interpolate", "0", "1", "--frames", "100000000000", "--out", "{d}/i.gif"], 2, "'--frames': Input should be less than or equal to 10000"),
    "psi-count-huge": (["truncation-sweep", "--seeds", "0", "--psi", "0:1:100000000000", "--out", "{d}/t.png"], 2, "--psi '0:1:100000000000': COUNT must be 1 to 10000"),
    "psi-nan": (["truncation-sweep", "--seeds", "0", "--psi", "nan", "--out", "{d}/t.png"], 2, "--psi 'nan': the values must be finite numbers"),
    "trunc-nan": (["generate", "--seeds", "0", "--trunc", "nan", "--outdir", "{d}/o"], 2, "'--trunc': nan is not a finite number"),
    "strength-inf": (["edit", "0", "--direction", "{d}/dir.npz", "--strength", "inf", "--out", "{d}/e.png"], 2, "--strength 'inf': the values must be finite numbers"),
    "seed-above-32-bits": (["generate", "--seeds", "99999999999", "--outdir", "{d}/o"], 2, "32-bit"),
    "seed-item-above-32-bits": (["mix", "--rows", "99999999999", "--cols", "1", "--out", "{d}/m.png"], 2, "32-bit"),
    "sefa-k-0": (["directions", "sefa", "--k", "0", "--outdir", "{d}/s"], 2, "'--k': Input should be greater than or equal to 1"),
    # files of the wrong kind
    "npy-as-latent": (["generate", "--latents", "{d}/w.npy", "--outdir", "{d}/o"], 1, "not a readable .npz"),
    "meta-not-an-object": (["mix", "--rows", "{d}/listmeta.npz", "--cols", "1", "--out", "{d}/m.png"], 1, "'meta' is not the JSON object"),
    "labels-conflicting": (["directions", "learn", "--attribute", "x", "--labels", "{d}/twice.csv", "--out", "{d}/d.npy"], 1, "twice.csv: 3 is labelled twice, 0.0 and 1.0"),
    "labels-three-columns": (["directions", "learn", "--attribute", "x", "--labels", "{d}/three.csv", "--out", "{d}/d.npy"], 1, "three.csv: each row is item,label (two columns); got ['seed', 'age', 'gender']"),
    "labels-bad-item": (["directions", "learn", "--attribute", "x", "--labels", "{d}/minus.csv", "--out", "{d}/d.npy"], 1, "minus.csv: -5 is neither"),
    "labels-word": (["directions", "learn", "--attribute", "x", "--labels", "{d}/word.csv", "--out", "{d}/d.npy"], 1, "word.csv: label 'x' is not a number"),
    "labels-nan": (["directions", "learn", "--attribute", "x", "--labels", "{d}/nan.csv", "--out", "{d}/d.npy"], 1, "nan.csv: label 'nan' is not a finite number"),
    "labels-too-few": (["directions", "learn", "--attribute", "x", "--labels", "{d}/few.csv", "--out", "{d}/d.npy"], 1, "few.csv has 3 labelled items"),
    "labels-missing": (["directions", "learn", "--attribute", "x", "--labels", "{d}/none.csv", "--out", "{d}/d.npy"], 1, "no labels file "),
    "learn-attribute-unknown-to-the-classifier": (["directions", "learn", "--attribute", "smile", "--samples", "10", "--out", "{d}/d.npy"], 2, "knows age and gender, not 'smile'; pass --labels CSV"),  # before the network loads
    "init-empty": (["project", "{d}/photo.png", "--no-align", "--init", "", "--outdir", "{d}/p"], 2, "is empty; give avg, a latent file or an encoder"),
    "interpolate-out-a-suffix-alone": (["interpolate", "0", "1", "--out", "{d}/.gif"], 2, "give the file a name before its suffix, e.g. out.gif"),
    "learn-out-a-suffix-alone": (["directions", "learn", "--attribute", "age", "--out", "{d}/.npy"], 2, "give the file a name before its suffix, e.g. out.npy"),
    "save-labels-naming-the-sidecar-by-a-detour": (["directions", "learn", "--attribute", "age", "--out", "{d}/two.npy", "--save-labels", "{d}/dirs/../two.json", "--overwrite"], 2, "--save-labels names the direction file"),  # the sidecar replaced the labels
    "learn-too-few-for-age": (["directions", "learn", "--attribute", "age", "--samples", "16", "--network", "{d}/nothere.pkl", "--out", "{d}/d.npy"], 2, "--samples 16 is too few for age: its boundary is fitted on the youngest and oldest 30%, 10 faces at least; ask for 17 or more"),  # was exit 1, after the network loaded
    "learn-seeds-past-32-bits": (["directions", "learn", "--attribute", "gender", "--samples", "12", "--seed", "4294967290", "--out", "{d}/d.npy"], 2, "--seed 4294967290 with --samples 12 runs past seed 4294967295 (seeds are 32-bit); start at --seed 4294967284 or lower"),  # it failed after labelling the first batches
    "save-labels-naming-out-before-out-exists": (["directions", "learn", "--attribute", "age", "--out", "{d}/two.npy", "--save-labels", "{d}/two.npy"], 2, "--save-labels names the direction file"),  # was "two.npy exists" (1)
    "direction-folder": (["edit", "0", "--direction", "{d}/dirs", "--out", "{d}/e.png"], 1, "is a folder, not a direction file"),
    "direction-garbage": (["edit", "0", "--direction", "{d}/garbage.npy", "--out", "{d}/e.png"], 1, "garbage.npy is not a .npy file (a direction is one array [1, w_dim]"),
    "direction-damaged-header": (["edit", "0", "--direction", "{d}/badheader.npy", "--out", "{d}/e.png"], 1, "badheader.npy is not a readable .npy direction"),
    "direction-two-rows": (["edit", "0", "--direction", "{d}/two.npy", "--out", "{d}/e.png"], 1, "two.npy must hold a float array [1, w_dim], got float32 [2, 16]"),
    "direction-ints": (["edit", "0", "--direction", "{d}/ints.npy", "--out", "{d}/e.png"], 1, "ints.npy must hold a float array [1, w_dim], got int64 [1, 16]"),
    "direction-other-w-dim": (["edit", "0", "--direction", "{d}/short.npy", "--out", "{d}/e.png"], 1, "short.npy is a direction in 15-D, but this network's w has 16 dimensions"),
    "condition-garbage": (["directions", "learn", "--attribute", "x", "--labels", "{d}/ok.csv", "--condition", "{d}/garbage.npy", "--out", "{d}/d.npy"], 1, "garbage.npy is not a .npy file (a direction is one array [1, w_dim]"),
    "labels-folder": (["directions", "learn", "--attribute", "x", "--labels", "{d}", "--out", "{d}/d.npy"], 1, "is a folder, not a file"),
    "perceptual-weights-folder": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--perceptual-weights", "{d}", "--outdir", "{d}/p"], 1, "a folder, not a file"),
    "latent-of-another-network": (["generate", "--latents", "{d}/other.npz", "--outdir", "{d}/o"], 1, "made for network someone-else"),
    "latent-of-another-shaped-network": (["generate", "--latents", "{d}/other2.npz", "--outdir", "{d}/o"], 1, "made for network stylegan2-x, ffhq-256.pkl: pass --network ffhq-256.pkl"),
    "npz-as-direction": (["edit", "0", "--direction", "{d}/dir.npz", "--out", "{d}/e.png"], 1, "dir.npz is a zip archive (as .npz latent files and torch files are); a direction is one .npy array"),
    "image-as-labels": (["directions", "learn", "--attribute", "x", "--labels", "{d}/photo.png", "--out", "{d}/d.npy"], 1, "not a CSV text file"),
    "perceptual-weights-not-torch": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "vgg16", "--perceptual-weights", "{d}/photo.png", "--outdir", "{d}/p"], 1, "photo.png: not a torch file stylelift reads"),
    "perceptual-weights-not-vgg16": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "vgg16", "--perceptual-weights", "{d}/notvgg.pth", "--outdir", "{d}/p"], 1, "notvgg.pth is not a torchvision VGG16 state dict (no features.0.weight)"),
    "perceptual-weights-wrong-shapes": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "mse", "--perceptual-weights", "{d}/badvgg.pth", "--outdir", "{d}/p"], 1, "badvgg.pth is not torchvision's VGG16: its features.0.weight is torch.float32 [3], not float [64, 3, 3, 3]"),
    "init-neither-latents-nor-encoder": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--init", "{d}/afile", "--outdir", "{d}/p"], 1, "--init must be avg, encoder (the shipped one), a latent .npz or an encoder .pt"),
    "missing-perceptual-weights": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--perceptual-weights", "{d}/none.pth", "--outdir", "{d}/p"], 1, "no such file"),
    # options checked before any work
    "class-on-unconditional": (["generate", "--seeds", "0", "--class", "1", "--outdir", "{d}/o"], 1, "unconditional"),
    "device-meta": (["generate", "--seeds", "0", "--device", "meta", "--outdir", "{d}/o"], 2, "unknown device"),
    "device-mps": (["generate", "--seeds", "0", "--device", "mps", "--outdir", "{d}/o"], 2, "does not run on Apple's MPS"),
    "mix-no-rows": (["mix", "--rows", "", "--cols", "1", "--out", "{d}/m.png"], 2, "--rows '' has an empty item"),
    "mix-only-commas": (["mix", "--rows", "1", "--cols", " , ", "--out", "{d}/m.png"], 2, "--cols ' , ' has an empty item"),
    "mix-empty-item": (["mix", "--rows", "1", "--cols", "1,,2", "--out", "{d}/m.png"], 2, "empty item"),
    "mix-malformed-seeds": (["mix", "--rows", "1-", "--cols", "2", "--out", "{d}/m.png"], 2, "--rows '1-' is neither a latent file nor a list of seeds"),  # as edit says it (mix took it for a missing file: exit 1)
    "seeds-trailing-comma": (["generate", "--seeds", "0,1,", "--outdir", "{d}/o"], 2, "seeds '0,1,' has an empty item (a comma too many?)"),
    "edit-trailing-comma": (["edit", "0-1,", "--direction", "{d}/dir.npz", "--out", "{d}/e.png"], 2, "'0-1,' is neither a latent file nor a list of seeds: seeds '0-1,' has an empty item"),
    "interpolate-trailing-comma": (["interpolate", "0,1,", "--out", "{d}/i.gif"], 2, "'0,1,' is neither a latent file nor a list of seeds: seeds '0,1,' has an empty item"),
    # an option of one value given twice: the parser would keep the last one without a word
    "latents-twice": (["generate", "--latents", "{d}/w.npy", "--latents", "{d}/deep.npz", "--outdir", "{d}/o"], 2, "--latents is given more than once; it takes one value"),
    "direction-twice": (["edit", "0", "--direction", "age", "--direction=gender", "--out", "{d}/e.png"], 2, "--direction is given more than once"),
    "rows-twice": (["mix", "--rows", "1", "--cols", "2", "--rows", "3", "--out", "{d}/m.png"], 2, "--rows is given more than once; it takes one value (the last would be used alone)"),
    "project-seed-huge": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--seed", "99999999999999999999", "--outdir", "{d}/p"], 2, "'--seed': Input should be less than or equal to 4294967295"),
    "project-seed-negative": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--seed", "-1", "--outdir", "{d}/p"], 2, "'--seed': Input should be greater than or equal to 0"),
    "loss-nan": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "mse=nan", "--outdir", "{d}/p"], 2, "positive number"),
    "loss-weight-left-out": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "mse=", "--outdir", "{d}/p"], 2, "loss weight for 'mse' must be a positive number, got ''"),
    "loss-zero": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "mse=0", "--outdir", "{d}/p"], 2, "positive number"),
    "loss-twice": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--loss", "mse=1,mse=2", "--outdir", "{d}/p"], 2, "named twice"),
    "paste-back-unaligned": (["project", "{d}/photo.png", "--no-align", "--paste-back", "--steps", "1", "--outdir", "{d}/p"], 2, "needs --align"),
    "paste-region-alone": (["project", "{d}/photo.png", "--paste-region", "square", "--steps", "1", "--outdir", "{d}/p"], 2, "--paste-region says what --paste-back pastes; add --paste-back"),
    "paste-region-unknown": (["project", "{d}/photo.png", "--paste-back", "--paste-region", "head", "--steps", "1", "--outdir", "{d}/p"], 2, "--paste-region must be face or square"),
    "project-outdir-is-a-file": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--outdir", "{d}/afile"], 1, "is a file"),
    "align-size-huge": (["align", "{d}/photo.png", "--size", "100000", "--outdir", "{d}/al"], 2, "'--size': Input should be less than or equal to 4096"),
    "project-outdir-under-a-file": (["project", "{d}/photo.png", "--no-align", "--steps", "1", "--outdir", "{d}/afile/p"], 1, "is a file"),
}


@pytest.mark.parametrize("name", BAD_INVOCATIONS)
def test_bad_invocations_end_in_one_line_and_leave_nothing_behind(odd_files, net, name):
    args, code, fragment = BAD_INVOCATIONS[name]
    args = [a.format(d=odd_files, net=net) for a in args]
    if args[0] not in ("convert", "align"):
        args += ["--network", str(net)]
    before = sorted(p.name for p in odd_files.rglob("*"))
    r = invoke(*args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
    if code == 1:
        assert r.output.strip().startswith("error:") and r.output.strip().count("\n") == 0, r.output
    if fragment:
        assert fragment in " ".join(r.output.replace("│", " ").split()), r.output  # the usage box wraps its lines
    if code:
        assert not [p for p in odd_files.rglob("*") if ".tmp-" in p.name]
        assert (odd_files / "afile").read_text() == "x"
        assert sorted(p.name for p in odd_files.rglob("*")) == before  # nothing new, nothing lost


def test_sefa_layers_are_recorded_so_that_edit_can_use_them(tmp_path, net):
    r = invoke("directions", "sefa", "--network", net, "--layers", "0-3", "--k", "2", "--outdir", tmp_path / "s")
    assert r.exit_code == 0, r.output
    r = invoke("edit", "0", "--network", net, "--direction", tmp_path / "s" / "sefa_00.npy", "--strength", "-1:1:3", "--out", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "e.png").size == (3 * 16, 16)
    r = invoke("directions", "sefa", "--network", net, "--layers", "4-5", "--k", "2", "--outdir", tmp_path / "s")
    assert r.exit_code == 1 and "--overwrite" in r.output and json.loads((tmp_path / "s" / "sefa_00.json").read_text())["layers"] == "0-3"
    r = invoke("directions", "sefa", "--network", net, "--layers", "4-5", "--k", "2", "--outdir", tmp_path / "s", "--overwrite")
    assert r.exit_code == 0 and json.loads((tmp_path / "s" / "sefa_00.json").read_text())["layers"] == "4-5", r.output


def test_a_smaller_set_of_directions_replaces_the_whole_earlier_set(tmp_path, net):
    s = tmp_path / "s"
    assert invoke("directions", "sefa", "--network", net, "--k", "4", "--outdir", s).exit_code == 0
    (s / "sefa_notes.txt").write_text("mine")  # not one of the set: kept
    (s / "sefa_2024.json").write_text('{"note": "mine too"}')  # named like one, but not made by sefa: kept
    r = invoke("directions", "sefa", "--network", net, "--layers", "0-1", "--k", "2", "--outdir", s)
    assert r.exit_code == 1 and "already holds sefa_00.json" in r.output  # an earlier set of another size is taken too
    r = invoke("directions", "sefa", "--network", net, "--layers", "0-1", "--k", "2", "--outdir", s, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in s.iterdir()) == ["sefa_00.json", "sefa_00.npy", "sefa_01.json", "sefa_01.npy", "sefa_2024.json", "sefa_notes.txt"]
    assert json.loads((s / "sefa_01.json").read_text())["layers"] == "0-1"
    assert invoke("directions", "pca", "--network", net, "--samples", "10", "--k", "2", "--outdir", s).exit_code == 0  # another prefix is another set
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sefa_2024.json").write_text('{"note": "mine"}')
    (mine / "sefa_\u00b2\u00b2.json").write_text('{"method": "sefa"}')  # digits to str.isdigit, not to int()
    assert invoke("directions", "sefa", "--network", net, "--k", "2", "--outdir", mine).exit_code == 0  # the user's own files block nothing
    r = invoke("directions", "sefa", "--network", net, "--k", "1", "--outdir", mine, "--overwrite")
    assert r.exit_code == 0 and sorted(p.name for p in mine.iterdir()) == ["sefa_00.json", "sefa_00.npy", "sefa_2024.json", "sefa_\u00b2\u00b2.json"], r.output


def test_a_set_of_directions_stopped_while_being_written_leaves_the_earlier_set_whole(tmp_path, net, monkeypatch):
    import stylelift.editing

    s = tmp_path / "s"
    assert invoke("directions", "sefa", "--network", net, "--k", "4", "--outdir", s).exit_code == 0
    before = {p.name: p.read_bytes() for p in s.iterdir()}
    save = stylelift.editing.save_direction

    def stopped_at_the_third(path, direction):
        if path.name == "sefa_02.npy":
            raise KeyboardInterrupt
        save(path, direction)

    monkeypatch.setattr(stylelift.editing, "save_direction", stopped_at_the_third)
    r = invoke("directions", "sefa", "--network", net, "--layers", "0-1", "--k", "3", "--outdir", s, "--overwrite")
    assert r.exit_code != 0
    assert {p.name: p.read_bytes() for p in s.iterdir()} == before  # no new files mixed in, no staging folder left

    import os
    import signal
    from pathlib import Path

    import stylelift.cli_editing as cli_editing

    real_replace = os.replace

    def moved_then_killed(src, dst):  # SIGTERM once the first file of the smaller set is in place
        real_replace(src, dst)
        if Path(dst) == s / "sefa_00.json":  # (not its write into the hidden staging folder)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.undo()
    saved = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli_editing.os, "replace", moved_then_killed)
    try:
        r = invoke("directions", "sefa", "--network", net, "--layers", "0-1", "--k", "2", "--outdir", s, "--overwrite")
    finally:
        signal.signal(signal.SIGTERM, saved)
    monkeypatch.undo()
    assert r.exit_code == 143, r.output
    assert sorted(p.name for p in s.iterdir()) == ["sefa_00.json", "sefa_00.npy", "sefa_01.json", "sefa_01.npy"]  # the new set whole, none of the old 02-03
    assert all((s / name).read_bytes() != data for name, data in before.items() if (s / name).exists() and name.endswith(".npy"))
    before = {p.name: p.read_bytes() for p in s.iterdir()}

    def disk_full_at_the_second_sidecar(path, direction):
        if path.name == "sefa_01.npy":
            raise OSError(28, "No space left on device", str(path.with_suffix(".json")))
        save(path, direction)

    monkeypatch.setattr(stylelift.editing, "save_direction", disk_full_at_the_second_sidecar)
    r = invoke("directions", "sefa", "--network", net, "--layers", "0-1", "--k", "3", "--outdir", s, "--overwrite")
    assert r.exit_code == 1 and r.output.strip() == f"error: {s / 'sefa_01.json'}: No space left on device", r.output  # not its hidden staging name
    assert {p.name: p.read_bytes() for p in s.iterdir()} == before


def test_photos_with_the_same_name_do_not_overwrite_each_other(tmp_path, net):
    folder = tmp_path / "ph"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "a.jpg"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    r = invoke("project", folder, "--network", net, "--no-align", "--steps", "1", "--no-video", "--outdir", tmp_path / "out", "--device", "cpu")
    assert r.exit_code == 1
    assert "same name" in r.output
    assert (tmp_path / "out" / "a.npz").exists()
    import os

    same = [folder / "a.png", os.path.relpath(folder / "a.png")]  # one photo, named two ways: done once, no clash
    r = invoke("project", *same, "--network", net, "--no-align", "--steps", "1", "--no-video", "--outdir", tmp_path / "o2", "--device", "cpu")
    assert r.exit_code == 0 and "same name" not in r.output and r.output.count("done ->") == 1, r.output


def test_align_refuses_a_second_photo_of_the_same_name(tmp_path):
    from pathlib import Path

    astronaut = Path(__file__).parents[1] / "examples" / "astronaut.png"
    folder = tmp_path / "ph"
    folder.mkdir()
    Image.open(astronaut).convert("RGB").resize((256, 256)).save(folder / "a.jpg")
    Image.open(astronaut).convert("RGB").resize((200, 200)).save(folder / "a.png")
    r = invoke("align", folder, "--size", "64", "--outdir", tmp_path / "out")
    assert r.exit_code == 1 and "same name" in r.output, r.output
    assert Image.open(tmp_path / "out" / "a.png").size == (64, 64)


def test_text_from_files_cannot_break_the_one_error_line(tmp_path):
    odd = tmp_path / "evil\n\x1b[2Jname.pkl"  # a newline and a clear-screen escape in the file name
    odd.write_bytes(b"not a pickle")
    r = invoke("info", odd)
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "\x1b" not in r.output and "\\n" in r.output


def test_outputs_too_big_to_hold_are_refused_before_rendering_and_big_grids_skipped(tmp_path, net, monkeypatch):
    from stylelift import cli

    side = tiny_generator().img_resolution
    monkeypatch.setattr(cli, "OUTPUT_BYTES", 8 * side * side * 3)  # room for 8 images
    r = invoke("mix", "--rows", "1,2", "--cols", "3,4", "--network", net, "--out", tmp_path / "m.png")  # 3x3 tiles
    assert r.exit_code == 1 and "would hold 9 images" in r.output and not (tmp_path / "m.png").exists(), r.output
    r = invoke("interpolate", "1", "2", "--frames", "9", "--network", net, "--out", tmp_path / "i.gif")
    assert r.exit_code == 1 and "would hold 9 images" in r.output, r.output
    import imageio.v2 as imageio

    import stylelift.images

    real_writer, events = stylelift.images._write_mp4, []

    def recording_writer(tmp, first, rest, *args, **kwargs):  # notes when each frame goes to ffmpeg
        def noted(frames):
            for frame in frames:
                events.append("written")
                yield frame

        events.append("written")
        return real_writer(tmp, first, noted(rest), *args, **kwargs)

    def rendered(*args, **kwargs):  # notes when each frame is rendered
        for image in iter_render_ws(*args, **kwargs):
            events.append("rendered")
            yield image

    from stylelift.generation import iter_render_ws

    monkeypatch.setattr(stylelift.images, "_write_mp4", recording_writer)
    monkeypatch.setattr("stylelift.generation.iter_render_ws", rendered)
    r = invoke("interpolate", "1", "2", "--frames", "9", "--batch-size", "2", "--network", net, "--out", tmp_path / "i.mp4")
    assert r.exit_code == 0, r.output
    assert events.count("written") == 9 and events.index("written") < len(events) - events[::-1].index("rendered") - 1  # written before all were rendered
    monkeypatch.undo()
    assert imageio.get_reader(tmp_path / "i.mp4").count_frames() == 9
    monkeypatch.setattr(cli, "OUTPUT_BYTES", 2 * side * side * 3)
    r = invoke("generate", "--seeds", "0-2", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 0 and "note: not writing grid.png" in r.stderr and "grid" not in r.stdout, r.output
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png"]


def test_operating_system_errors_are_told_in_words_about_the_file_asked_for(tmp_path):
    from stylelift.errors import InputError, MissingFileError, error_message
    from stylelift.fileio import atomic_path

    assert error_message(FileExistsError(17, "File exists", "out/afile")) == "out/afile is a file, so no folder can be made there"
    assert error_message(NotADirectoryError(20, "Not a directory", "afile/x")) == "afile/x: part of that path is a file, not a folder"
    assert error_message(IsADirectoryError(21, "Is a directory", "labels")) == "labels is a folder, not a file"
    assert error_message(OSError(28, "No space left on device")) == "No space left on device"
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.png" / "inside").write_text("x")
    out = tmp_path / "missing" / "grid.png"
    with pytest.raises(OSError) as info:  # writing the temporary file
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"png")
    assert error_message(info.value) == f"{out}: No such file or directory"  # not .grid.tmp-PID.png
    with pytest.raises(InputError, match="folder.png is a folder; name the file to write"):  # refused before anything is written
        with atomic_path(tmp_path / "folder.png") as tmp:
            tmp.write_bytes(b"png")
    assert not list(tmp_path.glob("**/.*tmp-*")) and (tmp_path / "folder.png" / "inside").read_text() == "x"
    assert error_message(MissingFileError("no such photo: a.png")) == "no such photo: a.png"
    assert error_message(InputError("bad")) == "bad"


def test_a_reader_that_stops_early_ends_the_command_quietly(net):
    import subprocess
    import sys

    # `stylelift info NET | head -0`: stdout's reader is gone before the first line is written
    p = subprocess.Popen([sys.executable, "-m", "stylelift", "info", str(net)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    stderr = p.stderr.read().decode()
    assert p.wait() == 1 and stderr == "", stderr  # no "error: Broken pipe", no "Exception ignored"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_stdout_is_named_in_one_line(net, tmp_path):
    import subprocess
    import sys

    # `stylelift ... > file` on a full disk: the results' lines, --help and --version cannot be written
    for args in (["info", str(net)], ["--help"], ["--version"], ["mix", "--help"], ["generate", "--seeds", "0", "--network", str(net), "--outdir", str(tmp_path)]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([sys.executable, "-m", "stylelift", *args], stdout=full, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 1 and p.stderr == "error: stdout: No space left on device\n", (args, p.stderr)
    assert (tmp_path / "seed0000.png").is_file()  # the image was written before its line was not
    for args in (["--version"], ["--help"], ["info", str(net)]):  # `1</dev/null`: stdout open for reading only
        with open(os.devnull) as read_only:
            p = subprocess.run([sys.executable, "-m", "stylelift", *args], stdout=read_only, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 1 and p.stderr == "error: stdout: Bad file descriptor\n", (args, p.stderr)
    Image.new("RGB", (32, 32), (90, 60, 30)).save(tmp_path / "photo.png")
    project = ["project", str(tmp_path / "photo.png"), "--network", str(net), "--no-align", "--steps", "2", "--loss", "mse", "--no-video", "--outdir", str(tmp_path / "p")]
    for _ in range(2):  # its result line, then its "already done" line
        with open("/dev/full", "w") as full:
            p = subprocess.run([sys.executable, "-m", "stylelift", *project], stdout=full, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 1 and p.stderr.endswith("error: stdout: No space left on device\n"), p.stderr


@pytest.fixture
def signals_kept():
    """The process's signal handlers as they were, after a test that calls cli.run() (which leaves
    handlers that end the process at once: a later test's signal would end pytest)."""
    import signal

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_an_os_error_outside_a_command_that_is_no_write_error_is_not_blamed_on_stdout(monkeypatch, capsys, signals_kept):
    import errno

    from stylelift import cli

    def fails(error):
        def app():
            raise error
        return app

    monkeypatch.setattr(cli, "app", fails(OSError(errno.ENOMEM, "Cannot allocate memory")))  # torch failing to import in an option's callback
    with pytest.raises(OSError, match="Cannot allocate memory"):
        cli.run()
    monkeypatch.setattr(cli, "app", fails(OSError(errno.ENOSPC, "No space left on device")))  # --help on a full disk
    with pytest.raises(SystemExit) as e:
        cli.run()
    assert e.value.code == 1 and capsys.readouterr().err == "error: stdout: No space left on device\n"


def test_ctrl_c_while_the_command_line_is_imported_or_read_is_one_line(monkeypatch, capsys, signals_kept):
    import sys

    import stylelift.__main__ as entry
    from stylelift import cli

    class Interrupted:  # Ctrl-C in the second `import stylelift.cli` takes (a traceback of importlib's frames)
        def find_spec(self, name, path=None, target=None):
            if name == "stylelift.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "stylelift.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    with pytest.raises(SystemExit) as e:
        entry.main()
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    monkeypatch.undo()

    def app():  # while typer reads the options (was exit 130 without a word)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as e:
        cli.run()
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_a_broken_pipe_that_is_not_stdout_is_an_error(capsys):
    import typer

    from stylelift.cli import user_errors

    @user_errors
    def writes_to_a_dead_subprocess():
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(typer.Exit) as e:
        writes_to_a_dead_subprocess()  # stdout here is pytest's capture, whose reader is alive
    assert e.value.exit_code == 1 and "error: Broken pipe" in capsys.readouterr().err  # said, not swallowed


def test_a_progress_label_is_shown_as_written_escaped_never_as_markup_or_control(monkeypatch):
    import io

    from stylelift.progress import StepProgress

    name = "[red]a\nb\x1b[2J.png"  # a photo's name: rich markup, a newline, a clear-screen sequence
    for terminal in ("0", "1"):
        monkeypatch.setenv("TTY_COMPATIBLE", terminal)  # rich's switch: a bar, or lines
        stream = io.StringIO()
        with StepProgress(name, 2, stream=stream) as progress:
            progress.update(2)
        assert "[red]a\\nb\\x1b[2J.png" in stream.getvalue() and "\x1b[2J" not in stream.getvalue(), (terminal, stream.getvalue())


def test_progress_off_a_terminal_is_a_line_at_every_tenth_of_the_job():
    import io

    from stylelift.progress import StepProgress

    log = io.StringIO()
    with StepProgress("p0.png", 25, stream=log) as bar:
        for step in range(1, 26):
            bar.update(step, f"loss={1 / step:.3g}")
    lines = log.getvalue().splitlines()
    assert lines[0] == "p0.png: 3/25 loss=0.333" and lines[-1] == "p0.png: 25/25 loss=0.04"
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [3, 6, 9, 12, 15, 18, 21, 24, 25]
    log = io.StringIO()
    with StepProgress("training", 100, completed=40, stream=log) as bar:  # resumed: the next tenth, not the first
        for step in range(41, 101):
            bar.update(step)
    assert log.getvalue().splitlines() == [f"training: {k}/100" for k in range(50, 101, 10)]
    assert "\x1b" not in log.getvalue()


def test_generate_renders_a_repeated_seed_once(tmp_path, net):
    r = invoke("generate", "--seeds", "3,0,3,0-1", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 0 and "wrote 3 images" in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["grid.png", "seed0000.png", "seed0001.png", "seed0003.png"]
    assert Image.open(tmp_path / "g" / "grid.png").size == (2 * 16, 2 * 16)  # three tiles, two to a row


def test_labels_with_a_byte_order_mark_and_damaged_json_beside_a_set_are_read(odd_files, net):
    r = invoke("directions", "learn", "--attribute", "x", "--labels", odd_files / "bom.csv", "--network", net, "--out", odd_files / "b.npy")
    assert r.exit_code == 0, r.output  # Excel's UTF-8 CSVs start with one; the first seed is 0, not '\ufeff0'
    assert re.search(r"wrote .*b\.npy \(held-out accuracy [0-9.]+ on \d+ samples; too few to tell much: label more rows of bom\.csv\)$", r.output.strip()), r.output
    s = odd_files / "s"
    s.mkdir()
    (s / "sefa_05.json").write_text("[" * 100_000 + "]" * 100_000)  # not a sidecar sefa wrote: neither read as one nor removed
    r = invoke("directions", "sefa", "--network", net, "--k", "2", "--outdir", s)
    assert r.exit_code == 0 and (s / "sefa_05.json").exists(), r.output


def test_generate_of_one_seed_replaces_the_grid_of_an_earlier_run(tmp_path, net):
    assert invoke("generate", "--seeds", "0-3", "--network", net, "--outdir", tmp_path / "g").exit_code == 0
    r = invoke("generate", "--seeds", "5", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g" / "grid.png")), np.asarray(Image.open(tmp_path / "g" / "seed0005.png")))


def test_generate_whose_first_image_fails_leaves_no_empty_folder(tmp_path, net):
    r = invoke("generate", "--seeds", "0", "--trunc", "1e38", "--network", net, "--outdir", tmp_path / "new" / "g")
    assert r.exit_code == 1 and "not finite" in r.output, r.output
    assert not (tmp_path / "new").exists()


def test_a_loss_that_overflows_stops_the_photo_at_once(odd_files, net):
    """It ran every step on NaN, then said its latents were not finite."""
    r = invoke("project", odd_files / "photo.png", "--no-align", "--steps", "500", "--loss", "mse=1e308,l1=1e308", "--no-video", "--outdir", odd_files / "p", "--network", net)
    assert r.exit_code == 1 and r.output.splitlines()[-1] == "error: photo.png: the loss became inf at step 1 (loss mse=1e+308,l1=1e+308): ask for smaller weights, or a start (init) nearer the network's w_avg", r.output
    assert not (odd_files / "p").exists() or not list((odd_files / "p").iterdir())


def test_a_write_that_fails_without_naming_a_file_names_the_output(tmp_path):
    import errno

    from stylelift.errors import error_message
    from stylelift.fileio import atomic_path

    with pytest.raises(OSError) as info:
        with atomic_path(tmp_path / "grid.png") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk reports a write
    assert error_message(info.value) == f"{tmp_path / 'grid.png'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--seeds", "0", "--outdir", ""],
        ["align", "photo.jpg", "--outdir", ""],
        ["project", "photo.jpg", "--outdir", " "],
        ["truncation-sweep", "--seeds", "0", "--out", ""],
        ["mix", "--rows", "0", "--cols", "1", "--out", ""],
        ["interpolate", "0", "1", "--out", ""],
        ["edit", "0", "--direction", "age", "--out", ""],
        ["directions", "learn", "--attribute", "age", "--out", ""],
        ["directions", "sefa", "--outdir", ""],
        ["directions", "pca", "--outdir", ""],
        ["encoder", "run", "photo.jpg", "--outdir", ""],
        ["encoder", "run", "photo.jpg", "--encoder", ""],  # was ". is a folder", exit 1
        ["encoder", "fit", "--out", ""],
        ["encoder", "train", "--out", ""],
    ],
)
def test_an_empty_output_name_is_a_usage_error_not_the_current_folder(tmp_path, monkeypatch, net, args):
    monkeypatch.chdir(tmp_path)  # an empty name used to mean "." and write here
    r = invoke(*args, *([] if args[0] == "align" else ["--network", net]))
    assert r.exit_code == 2 and "is empty" in r.output, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]


def test_encoder_train_checks_its_image_loss_before_any_work(tmp_path, net, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no VGG16 weights in this cache
    for spec, code, said in (("lpips=1", 1, "need torchvision's ImageNet VGG16 weights: put vgg16-397923af.pth (from https://"), ("mse,vgg16", 1, "(encoder train reads them only from there), or give --image-loss mse"), ("foo", 2, "unknown loss term 'foo'")):
        r = invoke("encoder", "train", "--out", tmp_path / "e.pt", "--steps", "1", "--image-loss", spec, "--network", net)
        assert r.exit_code == code and said in r.output and "--perceptual-weights" not in r.output, r.output
        assert not (tmp_path / "e.pt").exists()


def test_flags_are_shown_without_a_value_in_help():
    from typer.testing import CliRunner

    from stylelift.cli import app

    for args in ([], ["project"], ["encoder", "train"], ["directions"], ["directions", "learn"], ["edit"]):
        r = CliRunner().invoke(app, [*args, "--help"])
        assert r.exit_code == 0 and "--help" in r.output and "<bool>" not in r.output, (args, r.output)
    r = CliRunner().invoke(app, ["generate", "--grid=yes"])  # a flag still takes no value
    assert r.exit_code == 2


def test_a_named_pipe_given_as_an_input_file_is_refused_not_waited_on(tmp_path):
    import os
    import signal

    from typer.testing import CliRunner

    from stylelift.cli import app

    for name in ("f.png", "f.pt", "f.csv", "f.npy", "d.json"):
        os.mkfifo(tmp_path / name)
    import numpy as np

    np.save(tmp_path / "d.npy", np.ones([1, 512], np.float32))  # its sidecar d.json is a pipe

    class Hung(BaseException):  # not an OSError, which the CLI would report as one and go on
        pass

    def hung(signum, frame):
        raise Hung("a named pipe was read")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        for args, said in (
            (["align", "f.png", "--size", "16"], "f.png is not a regular file, not a photo"),
            (["info", "f.pt"], "f.pt is not a regular file, not a network file"),
            (["mix", "-n", "f.pt", "--rows", "0", "--cols", "1"], "f.pt is not a regular file, not a network file"),
            (["directions", "learn", "-n", "random-stylegan2-64", "--attribute", "x", "--labels", "f.csv", "--out", "new.npy"], "f.csv is not a regular file, not a labels CSV"),
            (["project", "f.png", "--init", "f.pt", "-n", "random-stylegan2-64", "--no-align", "--steps", "1"], "f.pt is not a regular file"),
            (["edit", "0", "--direction", "f.npy"], "f.npy is not a regular file, not a direction file"),
            (["edit", "0", "--direction", "d.npy"], "d.json, the sidecar of d.npy, is not a regular file"),
        ):
            r = CliRunner().invoke(app, [str(tmp_path / a) if a.endswith((".png", ".pt", ".csv", ".npy")) else a for a in args] + ["--outdir" if args[0] in ("align", "project") else "--out", str(tmp_path / "out.png")] * (args[0] in ("align", "project", "mix", "edit")))
            assert r.exit_code == 1 and said in r.output and r.output.count("\n") == 1, (args, r.output)
        from stylelift import save_generator
        from stylelift.models.encoder import new_encoder, save_encoder
        from conftest import tiny_generator

        save_generator(tiny_generator(), tmp_path / "net.pt")
        save_encoder(tmp_path / "enc.pt", new_encoder(tiny_generator(), input_resolution=32))
        (tmp_path / "enc").mkdir()
        (tmp_path / "enc" / "f.npz").write_bytes(b"an earlier run's")  # done before? the pipe is not hashed to tell
        (tmp_path / "enc" / "f_enc.png").write_bytes(b"its image")
        r = CliRunner().invoke(app, ["encoder", "run", str(tmp_path / "f.png"), "--encoder", str(tmp_path / "enc.pt"), "-n", str(tmp_path / "net.pt"), "--outdir", str(tmp_path / "enc")])
        assert r.exit_code == 1 and "f.png: not a regular file, not a photo" in r.output, r.output
        (tmp_path / "sefa").mkdir()
        os.mkfifo(tmp_path / "sefa" / "sefa_00.json")
        r = CliRunner().invoke(app, ["directions", "sefa", "-n", str(tmp_path / "net.pt"), "--outdir", str(tmp_path / "sefa")])
        assert r.exit_code == 1 and "already holds sefa_00.json" in r.output, r.output
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_an_empty_network_name_is_a_usage_error():
    r = invoke("generate", "--seeds", "0", "--network", "")
    assert r.exit_code == 2 and "is empty; name a network file, a URL or a known name" in " ".join(r.output.replace("│", " ").split()), r.output  # was exit 1


def test_a_folder_of_photos_leaves_out_hidden_files_and_folders_named_like_images(tmp_path):
    from stylelift.cli import expand_photos

    Image.new("RGB", (8, 8)).save(tmp_path / "IMG_1.jpg")
    (tmp_path / "._IMG_1.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS's AppleDouble file beside it
    (tmp_path / "album.png").mkdir()
    assert expand_photos([str(tmp_path)])[0] == [tmp_path / "IMG_1.jpg"]
    assert expand_photos([str(tmp_path / "._IMG_1.jpg")])[0] == [tmp_path / "._IMG_1.jpg"]  # named, it is taken (and fails as not an image)


def test_convert_and_the_encoder_commands_never_write_over_the_network_they_read(tmp_path, net, monkeypatch):
    before = net.read_bytes()
    os.link(net, tmp_path / "same.pt")
    for args in (["convert", net, net], ["convert", net, tmp_path / "same.pt"],
                 ["encoder", "train", "--network", net, "--out", net, "--steps", "1"], ["encoder", "fit", "--network", net, "--out", tmp_path / "same.pt"]):
        for extra in (["--overwrite"], []):  # --overwrite replaced the network with its conversion, or an encoder; without it, it was the advice
            r = invoke(*args, *extra)
            assert r.exit_code == 1 and "which this command reads; give another" in r.output, (args, r.output)
    monkeypatch.setenv("HOME", str(tmp_path))
    r = invoke("convert", "~/tiny.pt", net, "--overwrite")  # the loaders read ~/ as the home folder
    assert r.exit_code == 1 and "which this command reads; give another" in r.output, r.output
    r = invoke("convert", "~no_such_user_here/tiny.pt", net, "--overwrite")  # expanduser's RuntimeError was a traceback
    assert r.exit_code == 1 and "no network file ~no_such_user_here/tiny.pt" in r.output, r.output
    assert net.read_bytes() == before


def test_a_closed_stdout_or_stderr_neither_passes_for_success_nor_stops_the_work(tmp_path, net):
    import os
    import subprocess
    import sys

    def closed(*fds):
        return lambda: [os.close(fd) for fd in fds]

    command = [sys.executable, "-m", "stylelift"]
    p = subprocess.run([*command, "--version"], preexec_fn=closed(1), stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 1 and p.stderr.decode() == "error: stdout: Bad file descriptor\n"  # `ls >&-` fails too; it said nothing, exit 0
    Image.new("RGB", (16, 16), (200, 100, 50)).save(tmp_path / "p.png")
    project = [*command, "project", str(tmp_path / "p.png"), "--no-align", "--steps", "2", "--no-video", "--loss", "mse", "--network", str(net), "--outdir", str(tmp_path / "out")]
    p = subprocess.run(project, preexec_fn=closed(2), stdout=subprocess.PIPE, timeout=300)  # its progress raised AttributeError on sys.stderr None
    assert p.returncode == 0 and p.stdout.decode().startswith("p.png: done") and (tmp_path / "out" / "p.npz").exists()
    Image.new("RGB", (16, 16), (50, 100, 200)).save(tmp_path / "q.png")
    p = subprocess.run([*project[:4], str(tmp_path / "q.png"), *project[4:]], preexec_fn=closed(1), stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 1 and p.stderr.decode().endswith("error: stdout: Bad file descriptor\n") and (tmp_path / "out" / "q.npz").exists()  # the work is done, then the failure said


def test_a_command_run_in_process_leaves_the_signal_handlers_as_it_found_them(net, tmp_path):
    import signal

    def mine(signum, frame):  # an application's own, around an in-process run of the CLI
        pass

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        assert invoke("info", net).exit_code == 0 and invoke("info", tmp_path / "missing.pt").exit_code == 1
        assert all(signal.getsignal(sig) is mine for sig in before)  # they stayed stylelift's, raising SystemExit
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
