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
    sizes = {name: Image.open(out / name).size for name in ("projected.png", "older_younger.png", "mix.png")}
    assert sizes == {"projected.png": (64, 32), "older_younger.png": (160, 32), "mix.png": (96, 64)}
    strip = np.asarray(Image.open(out / "older_younger.png")).astype(int)
    assert np.abs(strip[:, :32] - strip[:, 128:]).max() > 0  # the edit changes the face
    frames = imageio.mimread(out / "morph.mp4", memtest=False)
    assert len(frames) == 48 and frames[0].shape[:2] == (32, 32)
