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
    assert r.exit_code == 2
    with pytest.raises(Exception):
        parse_int_list("a,b")
    assert parse_int_list("0,3,5-7") == [0, 3, 5, 6, 7]


def test_info_and_convert(tmp_path, net):
    r = invoke("info", net)
    assert r.exit_code == 0 and "num_ws: 6" in r.output and "16:8" in r.output
    dest = tmp_path / "copy.pt"
    assert invoke("convert", net, dest).exit_code == 0
    r = invoke("convert", net, dest)
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert invoke("convert", net, dest, "--overwrite").exit_code == 0
