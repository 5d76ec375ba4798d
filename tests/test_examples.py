"""The example scripts run, on a tiny network, and write what they say they write."""

import importlib.util
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from conftest import tiny_generator
from stylelift import load_latents, network_id, save_generator

EXAMPLES = Path(__file__).parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_project_and_edit_writes_a_latent_file_and_its_edits(tmp_path):
    G = tiny_generator(img_resolution=32)
    save_generator(G, tmp_path / "net.pt")
    out = tmp_path / "out"
    load_example("project_and_edit").main([str(EXAMPLES / "astronaut.png"), "--network", str(tmp_path / "net.pt"), "--steps", "3", "--loss", "mse", "--outdir", str(out)])
    latents = load_latents(out / "projected.npz")
    assert latents.w.shape == (1, G.num_ws, G.w_dim) and latents.meta["network_id"] == network_id(G)
    assert sorted(latents.noises) == list(range(len(G.synthesis.noise_layers())))
    sizes = {name: Image.open(out / name).size for name in ("projected.png", "younger_older.png", "mix.png", "older_pasted.png")}
    assert sizes == {"projected.png": (64, 32), "younger_older.png": (160, 32), "mix.png": (96, 64), "older_pasted.png": (512, 512)}
    strip = np.asarray(Image.open(out / "younger_older.png")).astype(int)
    assert np.abs(strip[:, :32] - strip[:, 128:]).max() > 0  # the edit changes the face
    frames = imageio.mimread(out / "morph.mp4", memtest=False)
    assert len(frames) == 48 and frames[0].shape[:2] == (32, 32)
    from typer.testing import CliRunner

    from stylelift.cli import app
    from stylelift.editing import Direction, save_direction

    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim], np.float32), {}))
    args = ["edit", str(out / "projected.npz"), "--direction", str(tmp_path / "d.npy"), "--strength", "-1,1", "--paste-back", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "p.png")]
    r = CliRunner().invoke(app, args)  # the example's latent file is pasted back as a projection's is
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "p.png").size == tuple(2 * s if i == 0 else s for i, s in enumerate(Image.open(EXAMPLES / "astronaut.png").size))
