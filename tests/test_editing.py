import errno
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import LatentFile, load_latents, network_id, save_generator, save_latents
from stylelift.cli import app
from stylelift.editing import (
    Direction,
    apply_direction,
    condition,
    fit_boundary,
    interpolation_path,
    load_direction,
    mix_styles,
    mixing_grid,
    parse_layers,
    pca_directions,
    save_direction,
    sefa,
    slerp,
    style_ranges,
    truncate,
    w_std_along,
)
from stylelift.errors import InputError
from stylelift.generation import latents_for_items, z_from_seed
from stylelift.images import to_uint8
from stylelift.models import Generator, StyleGAN2Config

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def net(tmp_path):
    save_generator(tiny_generator(), tmp_path / "net.pt")
    return tmp_path / "net.pt"


# --- layers and mixing ----------------------------------------------------------------------------


def test_coarse_middle_fine_of_an_18_ws_network():
    G = Generator(StyleGAN2Config(z_dim=8, w_dim=8, img_resolution=1024, channel_base=1024, channel_max=4, mapping_layers=1))
    assert G.num_ws == 18
    ranges = style_ranges(G.layer_resolutions)
    assert ranges == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "fine": list(range(8, 18))}
    assert parse_layers("coarse,9-10", G.layer_resolutions) == [0, 1, 2, 3, 9, 10]
    assert parse_layers("fine,all", G.layer_resolutions) == list(range(18))
    with pytest.raises(InputError, match="unknown layer name"):
        parse_layers("\u0661-3", G.layer_resolutions)  # an Arabic-Indic 1, which int() would read
    for spec in ("9" * 5000, "0-" + "9" * 10):  # int() of the first raised Python's own ValueError (over 4300 digits)
        with pytest.raises(InputError, match=r"^layer index [0-9-]+(\.\.\.)? is beyond the ws of any network"):  # was "unknown layer name"
            parse_layers(spec, G.layer_resolutions)
    assert parse_layers("0000000003,0-00000000001", G.layer_resolutions) == [0, 1, 3]  # zeros in front count for nothing (were "beyond any network")


def test_layer_names_follow_the_network_not_a_fixed_18():
    G = tiny_generator(img_resolution=32)  # 8 ws: 4,4,8,8,16,16,32,32
    assert style_ranges(G.layer_resolutions) == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "fine": []}


@pytest.mark.parametrize("spec, match", [("hair", "unknown layer"), ("0-99", "outside"), ("0-4", "outside 0-3"), ("4", "outside 0-3"), ("3-1", "runs backwards")])
def test_bad_layer_specs(spec, match):
    with pytest.raises(InputError, match=match):
        parse_layers(spec, [4, 4, 8, 8])


def test_mixing_grid_takes_the_named_layers_from_the_column():
    rows, cols = torch.randn(2, 6, 4), torch.randn(3, 6, 4)
    grid = mixing_grid(rows, cols, [1, 2])
    assert grid.shape == (6, 6, 4)
    for i in range(2):
        for j in range(3):
            cell = grid[i * 3 + j]
            assert torch.equal(cell[[1, 2]], cols[j, [1, 2]])
            assert torch.equal(cell[[0, 3, 4, 5]], rows[i, [0, 3, 4, 5]])


def test_truncation_on_the_first_layers_only():
    ws, avg = torch.randn(1, 6, 4), torch.randn(4)
    out = truncate(ws, avg, 0.5, cutoff=2)
    assert torch.allclose(out[:, :2], avg + 0.5 * (ws[:, :2] - avg)) and torch.equal(out[:, 2:], ws[:, 2:])


def tiles(path, size, rows, cols):
    grid = np.asarray(Image.open(path))
    assert grid.shape[:2] == (rows * size, cols * size)
    return [[grid[r * size : (r + 1) * size, c * size : (c + 1) * size] for c in range(cols)] for r in range(rows)]


def test_mix_command_puts_each_mixed_image_in_its_cell(tmp_path, net):
    G = tiny_generator()
    src = G.mapping(torch.randn(1, G.z_dim))
    save_latents(tmp_path / "a.npz", LatentFile(w=src.numpy(), meta={"network_id": network_id(G)}))
    out = tmp_path / "mix.png"
    r = invoke("mix", "--rows", "1,2", "--cols", f"{tmp_path / 'a.npz'},5", "--styles", "middle", "--network", net, "--out", out, "--batch-size", "3")
    assert r.exit_code == 0, r.output
    t = tiles(out, 16, 3, 3)
    rows = latents_for_items(G, ["1", "2"])
    cols = torch.cat([src, latents_for_items(G, ["5"])])
    middle = style_ranges(G.layer_resolutions)["middle"]
    assert middle == [4, 5]
    for i in range(2):
        assert np.array_equal(t[i + 1][0], to_uint8(G.synthesis(rows[i : i + 1]))[0])
        for j in range(2):
            mixed = rows[i : i + 1].clone()
            mixed[:, middle] = cols[j : j + 1, middle]
            assert np.array_equal(t[i + 1][j + 1], to_uint8(G.synthesis(mixed))[0]), (i, j)
    assert np.array_equal(t[0][1], to_uint8(G.synthesis(src))[0])
    r = invoke("mix", "--rows", "1", "--cols", "5", "--styles", "hair", "--network", net, "--out", tmp_path / "bad.png")
    assert r.exit_code == 2 and "Invalid value for '--styles': unknown layer name 'hair'" in r.output, r.output  # a usage error, which option it is
    r = invoke("mix", "--rows", "1", "--cols", "5", "--styles", "0-30", "--network", net, "--out", tmp_path / "bad.png")
    assert r.exit_code == 1 and r.output.startswith("error: --styles: layer range 0-30 is outside 0-5 for this network"), r.output  # only the network can tell


# --- interpolation --------------------------------------------------------------------------------


def test_interpolation_starts_and_ends_exactly_on_the_keys():
    keys = torch.randn(3, 6, 4)
    path = interpolation_path(keys, 11, easing="smooth")
    assert path.shape == (11, 6, 4)
    assert torch.equal(path[0], keys[0]) and torch.equal(path[5], keys[1]) and torch.equal(path[-1], keys[2])
    looped = interpolation_path(keys, 12, loop=True)
    assert torch.equal(looped[0], keys[0]) and torch.equal(looped[4], keys[1]) and torch.equal(looped[8], keys[2])


def test_interpolation_moves_evenly_between_keys_and_eases_when_asked():
    keys = torch.randn(2, 6, 4)
    linear = interpolation_path(keys, 5)  # t = 0, 1/4, 1/2, 3/4, 1
    for i, t in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        assert torch.allclose(linear[i], keys[0] + t * (keys[1] - keys[0]), atol=1e-6), i
    smooth = interpolation_path(keys, 5, easing="smooth")
    for i, t in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        eased = t * t * (3 - 2 * t)  # smoothstep
        assert torch.allclose(smooth[i], keys[0] + eased * (keys[1] - keys[0]), atol=1e-6), i
    assert not torch.allclose(smooth[1], linear[1])
    z = torch.randn(2, 8)
    z[1] *= z[0].norm() / z[1].norm()
    sph = interpolation_path(z, 9, spherical=True)
    assert torch.allclose(sph.norm(dim=1), z[0].norm().expand(9), rtol=1e-5)  # slerp: on the sphere, not the chord
    angles = torch.acos((sph[:-1] * sph[1:]).sum(1) / z[0].norm() ** 2)
    assert torch.allclose(angles, angles.mean().expand(8), atol=1e-3)  # at an even angular speed


def test_slerp_keeps_the_norm_and_hits_the_ends():
    a, b = torch.randn(512), torch.randn(512)
    b = b / b.norm() * a.norm()
    t = torch.linspace(0, 1, 9)
    path = slerp(a, b, t)
    assert torch.allclose(path.norm(dim=-1), a.norm().expand(9), rtol=1e-5)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)


def test_interpolate_command_writes_a_video_with_the_right_frames(tmp_path, net):
    out = tmp_path / "v.mp4"
    r = invoke("interpolate", "1", "2", "3", "--network", net, "--frames", "9", "--out", out, "--space", "z")
    assert r.exit_code == 0, r.output
    reader = imageio.get_reader(out)
    assert reader.count_frames() == 9 and reader.get_meta_data()["size"] == (16, 16)
    r = invoke("interpolate", "1", "2", "--network", net, "--frames", "5", "--grid", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and Image.open(tmp_path / "s.png").size == (80, 16)
    G = tiny_generator()  # each frame of the strip is the W path's frame (PNG is lossless, unlike mp4)
    keys = torch.cat([G.mapping(torch.from_numpy(z_from_seed(s, G.z_dim))) for s in (1, 2)])
    expected = to_uint8(G.synthesis(interpolation_path(keys, 5)))
    strip = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    for i in range(5):
        assert np.array_equal(strip[:, 16 * i : 16 * (i + 1)], expected[i]), i
    r = invoke("interpolate", "1", "2", "--network", net, "--frames", "5", "--grid", "--space", "z", "--out", tmp_path / "z.png")
    assert r.exit_code == 0, r.output
    zs = torch.cat([torch.from_numpy(z_from_seed(s, G.z_dim)) for s in (1, 2)])
    expected_z = to_uint8(G.synthesis(G.mapping(interpolation_path(zs, 5, spherical=True))))  # slerp in Z, then mapped
    strip = np.asarray(Image.open(tmp_path / "z.png").convert("RGB"))
    assert all(np.array_equal(strip[:, 16 * i : 16 * (i + 1)], expected_z[i]) for i in range(5))
    assert not np.array_equal(expected_z[2], expected[2])  # not the W path's middle
    r = invoke("interpolate", "1", str(tmp_path / "nope.npz"), "--network", net, "--out", out)
    assert r.exit_code == 1 and " ".join(r.output.split()) == f"error: no latent file {tmp_path / 'nope.npz'}", r.output  # as generate says it
    r = invoke("interpolate", "1", "nope", "--network", net, "--out", out)
    assert r.exit_code == 1 and "nope is neither a seed nor an existing latent file" in r.output, r.output
    before = out.read_bytes()
    r = invoke("interpolate", "1", "2", "--network", net, "--frames", "5", "--grid", "--out", out)  # a still, not v.png behind the user's back
    assert r.exit_code == 2 and "--grid writes a still" in r.output and not (tmp_path / "v.png").exists() and out.read_bytes() == before


# --- directions -----------------------------------------------------------------------------------


def test_fit_boundary_recovers_a_linear_attribute():
    rng = np.random.default_rng(0)
    true = rng.normal(size=32)
    true /= np.linalg.norm(true)
    w = rng.normal(size=(600, 32))
    labels = (w @ true + 0.1 * rng.normal(size=600) > 0).astype(float)
    normal, accuracy = fit_boundary(w, labels)
    assert normal.shape == (1, 32) and abs(np.linalg.norm(normal) - 1) < 1e-5
    assert float(normal[0] @ true) > 0.9 and accuracy > 0.9


def test_a_boundary_between_identical_latents_is_refused_not_fitted_to_rounding():
    w = np.tile(np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32), (20, 1)) * 3.7
    with pytest.raises(InputError, match="the 16 labelled latents the boundary is fitted on are all the same"):  # was a direction of rounding noise
        fit_boundary(w, np.arange(20) % 2)
    w[5, 3] = np.nextafter(w[5, 3], np.inf)  # one latent a float apart: not all the same (the fit says whether they separate)
    fit_boundary(w, (np.arange(20) == 5).astype(float), holdout=0)


def test_condition_removes_the_other_component():
    a, b = np.random.randn(1, 16), np.random.randn(1, 16)
    c = condition(a, b)
    assert abs(float(c[0] @ (b[0] / np.linalg.norm(b)))) < 1e-6 and abs(np.linalg.norm(c) - 1) < 1e-6
    b_hat = b[0] / np.linalg.norm(b)
    expected = a[0] - (a[0] @ b_hat) * b_hat  # InterFaceGAN's conditional edit: a's own remainder, not any unit vector orthogonal to b
    assert np.allclose(c[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_direction_files_round_trip_and_refuse_bad_shapes(tmp_path):
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, 16]) * 3, {"attribute": "age"}))
    d = load_direction(tmp_path / "d.npy", w_dim=16)
    assert abs(np.linalg.norm(d.vector) - 1) < 1e-6 and d.meta["attribute"] == "age"
    assert json.loads((tmp_path / "d.json").read_text())["attribute"] == "age"
    with pytest.raises(InputError, match="512"):
        load_direction(tmp_path / "d.npy", w_dim=512)
    np.save(tmp_path / "z.npy", np.zeros([1, 16]))
    with pytest.raises(InputError, match="zero"):
        load_direction(tmp_path / "z.npy")
    np.save(tmp_path / "flat.npy", np.arange(16.0) - 5)  # [w_dim], as some tools save a boundary: read as [1, w_dim]
    assert np.allclose(load_direction(tmp_path / "flat.npy", w_dim=16).vector, (np.arange(16.0) - 5)[None] / np.linalg.norm(np.arange(16.0) - 5))
    with pytest.raises(InputError, match="parallel"):  # conditioning on itself (or its opposite) leaves nothing
        condition(d, -2 * d.vector)
    for vec, meta in ((np.zeros([1, 16]), {}), (np.full([1, 16], np.nan), {}), (np.ones([2, 2, 16]), {}), (np.ones([1, 16]), [1])):
        with pytest.raises(InputError, match="a direction"):  # what load_direction would refuse
            save_direction(tmp_path / "bad.npy", Direction(vec, meta))
    assert not (tmp_path / "bad.npy").exists()
    with warnings.catch_warnings():  # no numpy warning either
        warnings.simplefilter("error")
        for value in (3e38, 1e-45):  # a float32 norm would overflow, or vanish: only the direction counts
            np.save(tmp_path / "big.npy", np.concatenate([np.full([1, 15], value), [[-value]]], axis=1).astype(np.float32))
            expected = np.array([[1] * 15 + [-1]]) / 4
            assert np.abs(load_direction(tmp_path / "big.npy").vector - expected).max() < 1e-6, value
        for value in (np.nan, np.inf):
            np.save(tmp_path / "big.npy", np.concatenate([np.ones([1, 15]), [[value]]], axis=1).astype(np.float32))
            with pytest.raises(InputError, match="NaN or infinite"):
                load_direction(tmp_path / "big.npy")
    Image.new("RGB", (8, 8)).save(tmp_path / "face.png")
    with pytest.raises(InputError, match="not a .npy file"):  # not numpy's advice to unpickle it
        load_direction(tmp_path / "face.png")
    for text, why in (("{oops", "not readable JSON"), ("[1, 2]", "holds a JSON list"), ("\x00\xff", "not readable JSON")):  # it names the network
        (tmp_path / "d.json").write_text(text, encoding="latin-1")
        with pytest.raises(InputError, match=f"sidecar of d.npy, (is|holds) .*{why.split()[-1]}"):
            load_direction(tmp_path / "d.npy")
    (tmp_path / "d.json").write_bytes(b"\xef\xbb\xbf" + b'{"attribute": "age"}')  # a byte-order mark, as some editors write
    assert load_direction(tmp_path / "d.npy").meta == {"attribute": "age"}


def test_mixing_refuses_ws_of_other_shapes_and_bad_layer_lists():
    ws = torch.zeros(2, 6, 4)
    assert torch.equal(mix_styles(ws, ws + 1, torch.tensor([0, 5]))[:, [0, 5]], torch.ones(2, 2, 4))  # a tensor of indices is fine
    for other, layers, why in ((torch.zeros(2, 8, 4), [0], "alike"), (torch.zeros(3, 6, 4), [0], "alike"), (ws.double(), [0], "alike"), (ws, [99], "whole numbers in 0-5"), (ws, "coarse", "parse_layers")):
        with pytest.raises(InputError, match=why):
            mix_styles(ws, other, layers)
    with pytest.raises(InputError, match="one network"):
        mixing_grid(ws, torch.zeros(2, 8, 4), [0])


def test_slerp_between_opposite_keys_stays_on_the_sphere():
    a = torch.randn(3, 32)
    path = interpolation_path(torch.stack([a, -a]), 5, spherical=True)
    assert torch.isfinite(path).all() and torch.allclose(path.norm(dim=-1), a.norm(dim=-1).expand(5, 3), rtol=1e-5)
    assert torch.equal(path[0], a) and torch.equal(path[-1], -a)
    assert abs(float((path[2] * a).sum(-1)[0])) < 1e-3 * float(a[0].square().sum())  # half way: a quarter turn from both
    with pytest.raises(ValueError, match="non-zero"):
        slerp(torch.zeros(4), torch.ones(4), torch.tensor([0.5]))
    a = torch.randn(8, 512)
    for eps in (5e-8, 1e-7, 2e-7, 1e-3):  # nearly opposite: float32 rounding must not shrink the path
        b = -a + eps * torch.randn(8, 512) * a.norm(dim=-1, keepdim=True)
        b = b * (a.norm(dim=-1, keepdim=True) / b.norm(dim=-1, keepdim=True))
        mid = slerp(a, b, torch.tensor([0.5]))[0]
        assert torch.allclose(mid.norm(dim=-1), a.norm(dim=-1), rtol=1e-5), eps


def test_apply_direction_on_chosen_layers():
    ws = torch.zeros(1, 6, 4)
    out = apply_direction(ws, np.array([[1.0, 0, 0, 0]]), 2.0, layers=[0, 5])
    assert out[0, 0, 0] == 2 and out[0, 5, 0] == 2 and out[0, 1:5].abs().sum() == 0
    for bad_ws, strength, layers, why in ((ws, 1.0, [6], "not all whole numbers in 0-5"), (ws, 1.0, [-1], "not all whole numbers in 0-5"), (ws, 1.0, "12", "list of ws indices"), (ws, 1.0, [1.7], "whole numbers"), (ws[0], 1.0, None, r"\[N, num_ws, w_dim\]"), (ws, float("inf"), None, "finite")):
        with pytest.raises(InputError, match=why):
            apply_direction(bad_ws, np.array([[1.0, 0, 0, 0]]), strength, layers)


def test_sefa_and_pca_give_orthonormal_directions():
    G = tiny_generator()
    vecs, values = sefa(G, k=5)
    assert vecs.shape == (5, G.w_dim) and np.allclose(vecs @ vecs.T, np.eye(5), atol=1e-5)
    assert np.all(np.diff(values) <= 1e-6)
    pcs, var = pca_directions(G, samples=500, k=4)
    assert np.allclose(pcs @ pcs.T, np.eye(4), atol=1e-5) and np.all(np.diff(var) <= 1e-6)


def test_pca_directions_are_the_top_eigenvectors_of_the_sampled_ws():
    G = tiny_generator()
    pcs, var = pca_directions(G, samples=500, k=3, seed=0)
    with torch.no_grad():  # the same samples, drawn as pca_directions draws them
        w = G.mapping(torch.randn(500, G.z_dim, generator=torch.Generator().manual_seed(0)))[:, 0].double().numpy()
    values, vectors = np.linalg.eigh(np.cov(w.T))
    top = vectors[:, ::-1][:, :3].T
    assert np.allclose(np.abs((pcs * top).sum(1)), 1, atol=1e-4)  # each the eigenvector (up to sign)
    assert np.allclose(var, values[::-1][:3], rtol=1e-3)  # and its variance
    assert np.allclose(var, ((w - w.mean(0)) @ pcs.T).var(0, ddof=1), rtol=1e-3)
    assert np.all(np.take_along_axis(pcs, np.abs(pcs).argmax(1)[:, None], 1) > 0)  # signs fixed: the largest entry positive
    assert pca_directions(G, samples=3, k=5)[0].shape == (2, G.w_dim)  # 3 samples span 2 directions


def test_sigma_is_the_spread_of_sampled_w_along_the_direction(tmp_path, net):
    G = tiny_generator()
    pcs, var = pca_directions(G, samples=2000, k=3, seed=0)
    sigmas = [w_std_along(G, -3 * pc, samples=2000, seed=0) for pc in pcs]  # any length, either sign
    assert np.allclose(np.square(sigmas), var, rtol=1e-3)  # the same samples: GANSpace's sigma of each component
    save_direction(tmp_path / "pc2.npy", Direction(pcs[2:3], {}))
    r = invoke("edit", "7", "--direction", tmp_path / "pc2.npy", "--strength", "-2,1", "--unit", "sigma", "--network", net, "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and "1 sigma along " in r.output and " in W" in r.output, r.output
    sigma = w_std_along(G, pcs[2])
    ws = latents_for_items(G, ["7"])
    expected = [to_uint8(G.synthesis(apply_direction(ws, pcs[2], s * sigma)))[0] for s in (-2, 1)]
    assert np.abs(np.hstack(expected).astype(int) - np.asarray(Image.open(tmp_path / "s.png")).astype(int)).max() <= 1
    r = invoke("edit", "7", "--direction", tmp_path / "pc2.npy", "--unit", "sd", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and "--unit must be w or sigma" in r.output and not (tmp_path / "x.png").exists()


def test_learn_from_a_labels_csv_finds_the_hidden_rule(tmp_path, net):
    G = tiny_generator()
    seeds = [str(s) for s in range(200)]
    w = latents_for_items(G, seeds)[:, 0].numpy()
    rule = np.random.default_rng(1).normal(size=G.w_dim)
    score = (w - w.mean(0)) @ rule
    (tmp_path / "labels.csv").write_text("seed,label\n" + "".join(f"{s},{float(v > 0)}\n" for s, v in zip(seeds, score)))
    out = tmp_path / "dir.npy"
    r = invoke("directions", "learn", "--attribute", "custom", "--labels", tmp_path / "labels.csv", "--network", net, "--out", out)
    assert r.exit_code == 0, r.output
    d = load_direction(out, w_dim=G.w_dim)
    assert d.meta["accuracy"] >= 0.85 and d.meta["network_id"] == network_id(G)
    cos = float(d.vector[0] @ rule / np.linalg.norm(rule))
    assert cos > 0.6


def test_edit_uses_the_layers_the_direction_names_unless_told_otherwise(tmp_path, net):
    G = tiny_generator()
    vec = np.random.default_rng(5).normal(size=(1, G.w_dim))
    vec /= np.linalg.norm(vec)  # directions are stored as unit normals
    save_direction(tmp_path / "d.npy", Direction(vec, {"network_id": network_id(G), "layers": "0-1"}))
    ws = latents_for_items(G, ["3"])

    def rendered(layers):
        with torch.no_grad():
            return to_uint8(G.synthesis(apply_direction(ws, vec, 3.0, layers)))[0]

    for extra, layers in [([], [0, 1]), (["--layers", "all"], None), (["--layers", "4-5"], [4, 5])]:
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--network", net, "--out", tmp_path / "e.png", *extra)
        assert r.exit_code == 0, r.output
        assert np.array_equal(tiles(tmp_path / "e.png", 16, 1, 1)[0][0], rendered(layers)), extra
    assert not np.array_equal(rendered([0, 1]), rendered(None))
    save_direction(tmp_path / "d.npy", Direction(vec, {"network_id": network_id(G), "layers": [0, 1]}))  # written by hand
    r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--network", net, "--out", tmp_path / "e.png")
    assert r.exit_code == 0 and np.array_equal(tiles(tmp_path / "e.png", 16, 1, 1)[0][0], rendered([0, 1])), r.output
    for blank in ("", " ", []):  # names no layers: every layer, as without a sidecar entry
        save_direction(tmp_path / "d.npy", Direction(vec, {"network_id": network_id(G), "layers": blank}))
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--network", net, "--out", tmp_path / "e.png")
        assert r.exit_code == 0 and np.array_equal(tiles(tmp_path / "e.png", 16, 1, 1)[0][0], rendered(None)), (blank, r.output)
    for bad in (5, {"a": 1}, [0.5]):
        save_direction(tmp_path / "d.npy", Direction(vec, {"network_id": network_id(G), "layers": bad}))
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--network", net, "--out", tmp_path / "e.png")
        said = " ".join(r.output.split())
        assert r.exit_code == 1 and said.startswith("error: d.json, the sidecar of d.npy: the direction's layers are given as") and said.count("sidecar") == 1, (bad, said)
    for bad, why in (("hair", "unknown layer name 'hair'"), ([0, 100], "outside 0-")):  # the sidecar's mistake, not the user's
        save_direction(tmp_path / "d.npy", Direction(vec, {"network_id": network_id(G), "layers": bad}))
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--network", net, "--out", tmp_path / "e.png")
        said = " ".join(r.output.split())
        assert r.exit_code == 1 and said.startswith("error: d.json, the sidecar of d.npy: ") and why in said and "(or give --layers)" in said, said
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "3", "--layers", "all,coarse", "--network", net, "--out", tmp_path / "e.png")
        assert r.exit_code == 0 and np.array_equal(tiles(tmp_path / "e.png", 16, 1, 1)[0][0], rendered(None)), r.output  # 'all' joins other names
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "none.csv", "--layers", "hair", "--network", net, "--out", tmp_path / "x.npy")
    assert r.exit_code == 2 and "unknown layer" in r.output
    for given, said in ((["--samples", "1000"], "--samples chooses the faces"), (["--seed", "5", "--samples", "50"], "--samples and --seed choose the faces")):
        r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "none.csv", *given, "--network", net, "--out", tmp_path / "x.npy")
        assert r.exit_code == 2 and f"{said} the classifier labels; with --labels the CSV names them" in " ".join(r.output.replace("│", " ").split()), r.output  # they were ignored


def test_classifier_labels_are_saved_and_a_refit_from_them_gives_the_same_direction(tmp_path, net, monkeypatch):
    from stylelift.models import attributes

    # a stand-in classifier: "age" = mean brightness of the red channel (tiny nets draw no faces)
    monkeypatch.setattr(attributes, "classify", lambda image: attributes.Attributes(age=float(image[..., 0].mean()), male=0.9))
    G = tiny_generator()
    first = tmp_path / "first.npy"
    labels = tmp_path / "age.csv"
    r = invoke("directions", "learn", "--attribute", "age", "--samples", "120", "--trunc", "0.7", "--network", net, "--out", first, "--save-labels", labels)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote {first} ") and len(r.stdout.splitlines()) == 1, r.stdout  # the labelling's progress on stderr
    assert "labelling: 120/120 120 usable" in r.stderr, r.stderr
    rows = labels.read_text().splitlines()
    sampling = {"network_id": network_id(G), "truncation_psi": 0.7, "truncation_cutoff": None, "class": None}
    assert rows[0] == "# stylelift sampling " + json.dumps(sampling)  # how the seeds were mapped, for the refit
    assert rows[1] == "item,label" and len(rows) == 122 and rows[2].split(",")[0] == "0"
    refit = tmp_path / "refit.npy"
    r = invoke("directions", "learn", "--attribute", "age", "--labels", labels, "--network", net, "--out", refit)
    assert r.exit_code == 1 and "sampled with --trunc 0.7, not --trunc 1.0" in r.output and not refit.exists(), r.output  # other faces
    r = invoke("directions", "learn", "--attribute", "age", "--labels", labels, "--trunc", "0.7", "--network", net, "--out", refit)
    assert r.exit_code == 0, r.output
    a, b = load_direction(first, w_dim=G.w_dim), load_direction(refit, w_dim=G.w_dim)
    assert np.allclose(a.vector, b.vector, atol=1e-4) and a.meta["accuracy"] == b.meta["accuracy"]
    labels.write_text(labels.read_text().replace(network_id(G), "stylegan2-elsewhere"))
    r = invoke("directions", "learn", "--attribute", "age", "--labels", labels, "--trunc", "0.7", "--network", net, "--out", tmp_path / "x.npy")
    assert r.exit_code == 1 and "labels seeds of another network (stylegan2-elsewhere" in r.output, r.output
    labels.write_text(labels.read_text().replace('"stylegan2-elsewhere"', "?"))
    r = invoke("directions", "learn", "--attribute", "age", "--labels", labels, "--trunc", "0.7", "--network", net, "--out", tmp_path / "x.npy")
    assert r.exit_code == 1 and "is not a JSON object" in r.output, r.output
    labels.write_text("\n".join(labels.read_text().splitlines()[1:]))  # the user's own CSV: no record, no check
    r = invoke("directions", "learn", "--attribute", "age", "--labels", labels, "--network", net, "--out", tmp_path / "x.npy")
    assert r.exit_code == 0, r.output


def test_edit_command_and_its_bad_inputs(tmp_path, net):
    G = tiny_generator()
    save_direction(tmp_path / "d.npy", Direction(np.random.randn(1, G.w_dim), {"network_id": network_id(G)}))
    r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "-2:2:5", "--layers", "0-3", "--network", net, "--out", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "e.png", 16, 1, 5)
    ws = latents_for_items(G, ["3"])
    assert np.array_equal(t[0][2], to_uint8(G.synthesis(ws))[0])  # strength 0 = the original
    save_direction(tmp_path / "other.npy", Direction(np.random.randn(1, G.w_dim), {"network_id": "stylegan2-somewhere-else"}))
    save_direction(tmp_path / "othersefa.npy", Direction(np.random.randn(1, G.w_dim), {"network_id": "stylegan2-somewhere-else", "method": "sefa"}))
    save_latents(tmp_path / "bad.npz", LatentFile(w=np.zeros([1, 18, 512], np.float32)))
    cases = [
        (["--direction", tmp_path / "other.npy"], f"made for network stylegan2-somewhere-else, not this one ({network_id(G)})"),
        (["--direction", tmp_path / "other.npy"], "; learn one with `stylelift directions learn`"),
        (["--direction", tmp_path / "othersefa.npy"], "; make one for it with `stylelift directions sefa`"),
        (["--direction", tmp_path / "d.npy", "--layers", "0-40"], "outside 0-5"),
        (["--direction", "age"], "direction"),
    ]
    for extra, text in cases:
        r = invoke("edit", "3", "--network", net, "--out", tmp_path / "x.png", *extra)
        assert r.exit_code == 1 and text in r.output and "Traceback" not in r.output, (extra, r.output)
    r = invoke("edit", tmp_path / "bad.npz", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 1 and "needs [N, 6, 16]" in r.output
    r = invoke("edit", "3", "--direction", " ", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and "Invalid value for '--direction': is empty; name a shipped direction" in " ".join(r.output.replace("│", " ").split()), r.output
    usage = [
        (["--layers", "0-1,,3"], "Invalid value for '--layers': layers '0-1,,3' has an empty item"),
        (["--paste-back"], "3 is a seed; it needs a latent file"),
        (["--photo", tmp_path / "d.npy"], "add --paste-back"),
        (["--paste-region", "square"], "add --paste-back"),
        (["--strength", "3:-3:0"], "COUNT must be 1 to"),
        (["--strength", "1,nan"], "finite"),
        (["--layers", "3-1"], "runs backwards"),
    ]
    for extra, text in usage:
        r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "x.png", *extra)
        said = " ".join(r.output.replace("│", " ").split())  # typer boxes usage errors and wraps their lines
        assert r.exit_code == 2 and text in said and "Traceback" not in r.output, (extra, r.output)
    assert not (tmp_path / "x.png").exists()


def test_truncation_sweep_grid(tmp_path, net):
    r = invoke("truncation-sweep", "--seeds", "0-1", "--psi", "-1:1:3", "--network", net, "--out", tmp_path / "t.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "t.png", 16, 2, 3)
    G = tiny_generator()
    assert np.array_equal(t[1][1], to_uint8(G.synthesis(G.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)))[0])  # psi 0 = w_avg
    for row, seed in enumerate((0, 1)):
        z = torch.from_numpy(z_from_seed(seed, G.z_dim))
        for col, psi in ((0, -1.0), (2, 1.0)):  # every tile at its own psi, not only psi 0
            assert np.array_equal(t[row][col], to_uint8(G.synthesis(G.mapping(z, truncation_psi=psi)))[0]), (seed, psi)


def test_latents_too_large_to_render_are_one_line_not_black_images(tmp_path, net):
    """float32 overflows far outside the trained range; the NaN pixels were saved as a black picture."""
    G = tiny_generator()
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim], np.float32) / np.sqrt(G.w_dim), {}))
    save_latents(tmp_path / "big.npz", LatentFile(w=np.full([1, G.num_ws, G.w_dim], 3e38, np.float32), meta={}))
    runs = {  # each names the image that failed and what to change (nothing, for a file's own w)
        ("generate", "--seeds", "0", "--trunc", "1e38", "--outdir", tmp_path / "g"): "seed 0: ; ask for a truncation psi (--trunc) nearer 0",
        ("generate", "--latents", tmp_path / "big.npz", "--outdir", tmp_path / "g"): "big.npz latent 0: ; what it was trained on",
        ("edit", "3", tmp_path / "big.npz", "--direction", tmp_path / "d.npy", "--strength", "-3e38,0", "--out", tmp_path / "e.png"): "seed 3 at strength -3e+38: ; ask for --strength values nearer 0",
        ("edit", "3", tmp_path / "big.npz", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--out", tmp_path / "e.png"): "big.npz at strength 0: ; what it was trained on",  # its own w: no option to change
        ("edit", "3", "--trunc", "1e38", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--out", tmp_path / "e.png"): "seed 3 at strength 0: ; ask for a --trunc nearer 0",
        ("mix", "--rows", "0", "--cols", "1", "--trunc", "5e37", "--out", tmp_path / "m.png"): "seed 0: ; ask for a --trunc nearer 0",  # (1e38 takes seed 1's ws past float32: refused before rendering)
        ("mix", "--rows", "0,1", "--cols", f"2,{tmp_path / 'big.npz'}", "--out", tmp_path / "m.png"): "big.npz: ; what it was trained on",
        ("mix", "--rows", f"1,{tmp_path / 'big.npz'}", "--cols", "2", "--trunc", "0.5", "--out", tmp_path / "m.png"): "big.npz: ; what it was trained on",  # --trunc does not touch a file
        ("truncation-sweep", "--seeds", "5", "--psi", "1,1e38", "--out", tmp_path / "t.png"): "seed 5 at psi 1e+38: ; ask for --psi values nearer 0",
        ("interpolate", "4", tmp_path / "big.npz", "--frames", "3", "--grid", "--out", tmp_path / "i.png"): "frame 2 of 3: ; what it was trained on",
        ("interpolate", tmp_path / "big.npz", "4", "--trunc", "0.5", "--frames", "3", "--grid", "--out", tmp_path / "i.png"): "frame 1 of 3: ; what it was trained on",  # the file's own frame
    }
    for args, said in runs.items():
        r = invoke(*args, "--network", net)
        before, _, said_now = r.output.rpartition("error: ")
        assert all(line.startswith("rendering: ") for line in before.splitlines()), r.output  # the progress of the images before it
        out = "error: " + " ".join(said_now.split())
        assert r.exit_code == 1 and "not finite" in out and "Traceback" not in r.output, (args, r.output)
        what, advice = said.split(" ; ")
        assert out.startswith(f"error: {what} the network's output is not finite") and out.endswith(advice), (args, out)
    assert "ask for" not in invoke("mix", "--rows", "0", "--cols", tmp_path / "big.npz", "--network", net, "--out", tmp_path / "m.png").output
    r = invoke("edit", "3", "--direction", tmp_path / "d.npy", "--strength", "-1e39,0", "--out", tmp_path / "e.png", "--network", net)
    assert r.exit_code == 1 and r.output == "error: seed 3 at strength -1e+39: the edited ws overflow float: ask for a strength nearer 0\n", r.output  # before rendering
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".png"] and not list((tmp_path / "g").glob("*.png"))
    for args in (("interpolate", "1", "2", "--frames", "3", "--out", tmp_path / "i.gif"), ("edit", "1", "--direction", tmp_path / "d.npy", "--strength", "0", "--out", tmp_path / "e.png")):
        r = invoke(*args, "--trunc", "-3e38", "--network", net)  # past float32 before any rendering: "keys hold NaN or infinite values"
        said = "error: seed 1: truncation psi -3e+38 takes the ws beyond float32's range: ask for a truncation psi (--trunc) nearer 0\n"
        assert r.exit_code == 1 and r.output == said, (args, r.output)
    r = invoke("generate", "--seeds", "2", "--trunc", "-3e38", "--outdir", tmp_path / "g", "--network", net)
    assert r.exit_code == 1 and r.output.endswith("error: seed 2: truncation psi -3e+38 takes the ws beyond float32's range: ask for a truncation psi (--trunc) nearer 0\n"), r.output
    with pytest.raises(InputError, match="takes the ws beyond float32's range"):
        G.mapping(torch.ones(1, G.z_dim), truncation_psi=3e38)  # as editing.truncate says (the mapping returned inf)
    r = invoke("generate", "--seeds", "0", "--trunc", "3", "--outdir", tmp_path / "g", "--network", net)  # far, but finite
    assert r.exit_code == 0, r.output
    w = np.stack([latents_for_items(G, ["0"])[0].numpy(), np.full([G.num_ws, G.w_dim], 3e38, np.float32)])
    save_latents(tmp_path / "two.npz", LatentFile(w=w, meta={}))
    r = invoke("generate", "--latents", tmp_path / "two.npz", "--outdir", tmp_path / "h", "--network", net)
    assert r.exit_code == 1 and "two.npz latent 1: the network's output is not finite" in r.output, r.output
    assert "(the 1 image before it was written; no grid)" in r.output and [p.name for p in (tmp_path / "h").iterdir()] == ["two00.png"]
    save_latents(tmp_path / "three.npz", LatentFile(w=np.stack([w[0]] * 3), meta={}))
    assert invoke("generate", "--latents", tmp_path / "three.npz", "--outdir", tmp_path / "k", "--network", net).exit_code == 0
    save_latents(tmp_path / "three.npz", LatentFile(w=np.stack([w[0], w[1], w[0]]), meta={}))
    r = invoke("generate", "--latents", tmp_path / "three.npz", "--outdir", tmp_path / "k", "--network", net)  # the earlier set is said to be mixed in
    assert r.exit_code == 1 and "written; no grid; 3 files of an earlier run are still there (three01.png, three02.png, grid.png))" in " ".join(r.output.split()), r.output


def test_noise_maps_far_outside_the_unit_gaussian_are_blamed_not_the_ws(tmp_path, net):
    G = tiny_generator()
    noisy_latent_file(G, tmp_path / "n.npz", 5)
    lf = load_latents(tmp_path / "n.npz")
    lf.noises = {k: np.full_like(m, 3e38) for k, m in lf.noises.items()}
    save_latents(tmp_path / "n.npz", lf)
    for args in (["generate", "--latents", tmp_path / "n.npz", "--outdir", tmp_path / "g"], ["mix", "--rows", "1", "--cols", tmp_path / "n.npz", "--out", tmp_path / "m.png"]):
        r = invoke(*args, "--network", net)
        assert r.exit_code == 1 and "(the largest |noise| is 3e+38): the noise maps are far outside the unit Gaussian" in " ".join(r.output.split()), r.output  # was "the largest |w| is 1.2 ... the latents"


def test_truncation_sweep_of_a_latent_file_keeps_its_noise_maps(tmp_path, net):
    G = tiny_generator()
    ws_a, noise_a = noisy_latent_file(G, tmp_path / "12", 5)  # a file whose name is all digits is still a file
    r = invoke("truncation-sweep", "--latents", tmp_path / "12", "--psi", "0,0.5,1", "--network", net, "--out", tmp_path / "t.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "t.png", 16, 1, 3)  # no seed rows: --seeds was not given
    for col, psi in enumerate((0, 0.5, 1)):
        expected = to_uint8(G.synthesis(truncate(ws_a, G.w_avg, psi), noises=noise_a))[0]
        assert np.abs(t[0][col].astype(int) - expected.astype(int)).max() <= 1, psi
    r = invoke("truncation-sweep", "--seeds", "4", "--latents", tmp_path / "12", "--psi", "0.5", "--network", net, "--out", tmp_path / "u.png")
    t = tiles(tmp_path / "u.png", 16, 2, 1)
    assert r.exit_code == 0 and np.array_equal(t[0][0], to_uint8(G.synthesis(G.mapping(torch.from_numpy(z_from_seed(4, G.z_dim)), truncation_psi=0.5)))[0])


def test_trunc_cutoff_truncates_only_the_first_ws_wherever_seeds_are_sampled(tmp_path, net):
    """mix, interpolate and edit take --trunc-cutoff as generate does (NVIDIA's StyleGAN samples use 8)."""
    G = tiny_generator()
    z = torch.from_numpy(z_from_seed(4, G.z_dim))
    ws = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert not torch.equal(ws, G.mapping(z, truncation_psi=0.5))  # the cutoff matters for this seed
    expected = to_uint8(G.synthesis(ws))[0]
    runs = {
        "mix": ("mix", "--rows", "4", "--cols", "4", "--styles", "0-5", "--out", tmp_path / "m.png"),
        "interpolate": ("interpolate", "4", "4", "--frames", "2", "--grid", "--out", tmp_path / "i.png"),
        "interpolate z": ("interpolate", "4", "4", "--space", "z", "--frames", "2", "--grid", "--out", tmp_path / "z.png"),
        "edit": ("edit", "4", "--direction", tmp_path / "d.npy", "--strength", "0", "--out", tmp_path / "e.png"),
    }
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim], np.float32) / np.sqrt(G.w_dim), {}))
    for name, args in runs.items():
        r = invoke(*args, "--network", net, "--trunc", "0.5", "--trunc-cutoff", "2")
        assert r.exit_code == 0, (name, r.output)
        out = args[args.index("--out") + 1]
        grid = tiles(out, 16, *((2, 2) if name == "mix" else (1, 1 if name == "edit" else 2)))
        assert np.array_equal(grid[-1][-1], expected), name
        if name == "mix":  # the row source too, not only the column one
            assert np.array_equal(grid[1][0], expected)
    runs["truncation-sweep"] = ("truncation-sweep", "--seeds", "4", "--psi", "0.5", "--out", tmp_path / "t.png")
    for args in runs.values():
        psi = () if args[0] == "truncation-sweep" else ("--trunc", "0.5")
        r = invoke(*args, "--network", net, *psi, "--trunc-cutoff", "7")
        assert r.exit_code == 1 and "the truncation cutoff must be a whole number between 0 and num_ws=6, got 7" in r.output, r.output


def test_sefa_normalises_each_style_channel_as_the_paper_does():
    """SeFa: A = the style affines stacked [sum C, w_dim], each channel's row scaled to unit length;
    the directions are the top eigenvectors of A^T A."""
    from stylelift.editing.discovery import style_affine_weights

    G = tiny_generator()
    a = np.concatenate([m.detach().double().numpy() for m in style_affine_weights(G)])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(a.T @ a)
    expect = vectors[:, np.argsort(values)[::-1][:3]].T
    got, got_values = sefa(G, k=3)
    assert np.allclose(np.abs((got * expect).sum(1)), 1, atol=1e-4)
    assert np.allclose(got_values, np.sort(values)[::-1][:3], rtol=1e-4)


def test_sefa_on_stylegan2_factorises_the_conv_styles_and_the_last_torgb_as_sefa_does():
    """SeFa's code takes, for ws i, the affine of the conv layer i, and for the last ws (which only the
    final toRGB reads) that toRGB's; the toRGBs in between, which share ws with convs, are left out."""
    G = tiny_generator()  # 16 px: 6 ws
    S = G.synthesis
    named = [S.b4.conv1, S.b8.conv0, S.b8.conv1, S.b16.conv0, S.b16.conv1, S.b16.torgb]
    for layers in (range(6), [0, 1, 2, 3], [5]):
        a = torch.cat([(named[i].affine.weight * named[i].affine.weight_gain).detach().double() for i in layers])
        a = a / a.norm(dim=1, keepdim=True)
        values, vectors = torch.linalg.eigh(a.T @ a)
        order = values.argsort(descending=True)[:3]
        got, got_values = sefa(G, layers=list(layers), k=3)
        assert np.allclose(np.abs((torch.from_numpy(got).double() @ vectors[:, order]).diagonal().numpy()), 1, atol=1e-4), layers  # were at cos 0.2-0.9 with the toRGBs in
        assert np.allclose(got_values, values[order].numpy(), rtol=1e-4), layers


@pytest.mark.parametrize("frames, keys, loop", [(60, 3, False), (61, 4, False), (10, 3, True), (7, 5, False)])
def test_every_key_is_a_frame_of_the_path(frames, keys, loop):
    k = torch.randn(keys, 3, 8)
    path = interpolation_path(k, frames, loop=loop)
    assert path.shape[0] == frames
    for i in range(keys):
        assert any(torch.equal(path[j], k[i]) for j in range(frames)), f"key {i} is not a frame"
    if loop:
        assert not torch.equal(path[-1], k[0])  # the seam is not shown twice


@pytest.mark.parametrize(
    "count, fps, expect_frames, expect_ms", [(30, 30, 30, 1000), (30, 40, 30, 750), (30, 120, 30, 600), (1, 30, 1, 30), (3, 240, 3, 60)]
)
def test_gif_frames_play_for_the_right_time(tmp_path, count, fps, expect_frames, expect_ms):
    """Every frame is kept (a key, a strength); above 50 fps a GIF plays at 50, the most it can."""
    from stylelift.images import write_video

    frames = [np.full((8, 8, 3), i * 8, np.uint8) for i in range(count)]
    write_video(tmp_path / "v.gif", frames, fps=fps)
    gif = Image.open(tmp_path / "v.gif")
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert gif.n_frames == expect_frames and min(durations) >= 20
    assert abs(sum(durations) - expect_ms) <= 10
    gif.seek(gif.n_frames - 1)
    assert np.array_equal(np.asarray(gif.convert("RGB")), frames[-1])  # it ends on the last frame


def fake_ffmpeg(tmp_path, script: str) -> str:
    exe = tmp_path / "ffmpeg"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return str(exe)


FULL_DISK = "cat > /dev/null; echo '[mp4 @ 0x1] Error writing trailer: No space left on device' >&2; echo 'Nothing was written into output file' >&2; exit 1\n"


@pytest.mark.parametrize(
    "script, said",
    [
        ('echo "Unknown encoder libx264" >&2; exit 1\n', "Unknown encoder libx264"),  # quits at once: a broken pipe for us
        (FULL_DISK, "No space left on device"),  # reads every frame, then fails: an OSError naming the file (ffmpeg's last line said "Nothing was written")
        ("cat > /dev/null; exit 3\n", "exit code 3"),  # fails without a word
        (None, "cannot run ffmpeg"),  # no ffmpeg at all
    ],
)
def test_a_failing_ffmpeg_is_one_line_and_keeps_the_old_video(tmp_path, monkeypatch, script, said):
    from stylelift.errors import VideoError
    from stylelift.images import write_video

    out = tmp_path / "v.mp4"
    out.write_bytes(b"the earlier video")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", fake_ffmpeg(tmp_path, script) if script else str(tmp_path / "nowhere" / "ffmpeg"))
    frames = (np.zeros((64, 64, 3), np.uint8) for _ in range(100))  # 1.2 MB: more than a pipe holds
    with pytest.raises(OSError if script == FULL_DISK else VideoError, match=said) as e:
        write_video(out, frames, fps=10)
    assert "\n" not in str(e.value) and "v.mp4" in str(e.value)
    if script == FULL_DISK:
        assert e.value.filename == str(out) and e.value.errno == errno.ENOSPC
    left = sorted(p.name for p in tmp_path.iterdir())  # no temporary file
    assert out.read_bytes() == b"the earlier video" and left == (["ffmpeg", "v.mp4"] if script else ["v.mp4"])


def test_commands_that_write_an_mp4_find_ffmpeg_missing_before_any_work(tmp_path, net, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "nowhere" / "ffmpeg"))
    rendered = []
    monkeypatch.setattr("stylelift.generation.iter_render_ws", lambda *a, **k: rendered.append(1) or iter([]))
    np.save(tmp_path / "d.npy", np.ones([1, 16], np.float32))
    for args in (["interpolate", "0", "1", "--frames", "3", "--out", tmp_path / "v.mp4"], ["edit", "0", "--direction", tmp_path / "d.npy", "--out", tmp_path / "e.mp4"]):
        r = invoke(*args, "--network", net)
        assert r.exit_code == 1 and r.output.strip() == f"error: cannot run ffmpeg ({tmp_path / 'nowhere' / 'ffmpeg'}) to write mp4 videos; write a .gif instead, or install ffmpeg", r.output
    assert not rendered and not list(tmp_path.glob("*.mp4"))
    r = invoke("interpolate", "0", "1", "--frames", "3", "--out", tmp_path / "v.gif", "--network", net)
    assert r.exit_code == 1 and rendered, r.output  # a GIF needs no ffmpeg: rendered (here, into nothing)
    Image.new("RGB", (16, 16)).save(tmp_path / "p.png")
    r = invoke("project", tmp_path / "p.png", "--no-align", "--steps", "1", "--network", net, "--outdir", tmp_path / "out")
    assert r.exit_code == 1 and "to write mp4 videos; pass --no-video, or install ffmpeg" in r.output and not (tmp_path / "out").exists(), r.output
    r = invoke("project", tmp_path / "p.png", "--no-align", "--steps", "1", "--network", net, "--outdir", tmp_path / "out", "--no-video")
    assert r.exit_code == 0 and (tmp_path / "out" / "p.npz").exists(), r.output
    (tmp_path / "out" / "p_proj.mp4").write_bytes(b"made where there was an ffmpeg")  # all done: nothing needs ffmpeg
    r = invoke("project", tmp_path / "p.png", "--no-align", "--steps", "1", "--network", net, "--outdir", tmp_path / "out")
    assert r.exit_code == 0 and "already done" in r.output, r.output


def test_a_broken_pipe_while_making_frames_is_not_taken_for_ffmpeg_s_and_does_not_hang(tmp_path):
    """A frame's progress line on a closed stderr (`stylelift interpolate ... 2>&1 | head -2`) raised
    BrokenPipeError inside the frame loop, which took it for ffmpeg's and waited on ffmpeg, which
    waited on its input: both hung."""
    import threading

    from stylelift.images import write_video

    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise BrokenPipeError(32, "Broken pipe")  # as print() to a closed stderr raises

    raised = []
    worker = threading.Thread(target=lambda: raised.append(pytest.raises(BrokenPipeError, write_video, tmp_path / "v.mp4", frames(), fps=10)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "write_video hung"
    assert raised and not list(tmp_path.iterdir())  # raised, and no video or temporary file is left


def test_mp4_frames_of_odd_size_are_padded_and_mismatched_ones_refused(tmp_path):
    from stylelift.images import write_video

    frames = [np.full((33, 47, 3), 10 * i, np.uint8) for i in range(12)]
    write_video(tmp_path / "v.mp4", iter(frames), fps=12.5)
    reader = imageio.get_reader(tmp_path / "v.mp4")
    assert reader.count_frames() == 12 and reader.get_meta_data()["size"] == (48, 34) and reader.get_meta_data()["fps"] == 12.5
    means = [reader.get_data(i)[:33, :47].mean() for i in range(12)]
    assert np.allclose(means, [10 * i for i in range(12)], atol=2)
    with pytest.raises(InputError, match="differ in size: 47x20 after 47x33"):
        write_video(tmp_path / "w.mp4", [frames[0], frames[1][:20]], fps=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_an_mp4_named_with_a_colon_is_written_where_it_is_named(tmp_path, monkeypatch):
    from stylelift.images import write_video

    monkeypatch.chdir(tmp_path)  # a bare "2024-05-01T12:30.mp4" is ffmpeg's protocol "2024-05-01T12", unless told it is a file
    write_video("2024-05-01T12:30.mp4", [np.zeros((8, 8, 3), np.uint8)] * 3, fps=3)
    assert imageio.get_reader(tmp_path / "2024-05-01T12:30.mp4").count_frames() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2024-05-01T12:30.mp4"]
    (tmp_path / "real" / "a").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "a")
    write_video("link/../v.mp4", [np.zeros((8, 8, 3), np.uint8)] * 3, fps=3)  # ".." after a link is the link's parent, as the OS has it
    assert (tmp_path / "real" / "v.mp4").is_file() and not list(tmp_path.glob(".*"))


def test_truncation_cutoff_outside_the_ws_is_refused():
    G = tiny_generator()
    ws = G.mapping(torch.randn(1, G.z_dim))
    with pytest.raises(InputError, match="cutoff"):
        truncate(ws, G.mapping.w_avg, 0.5, -1)
    assert torch.equal(truncate(ws.double(), G.mapping.w_avg, 1.0), ws.double())


def test_learn_refuses_labels_that_cannot_give_a_boundary_and_checks_its_files_first(tmp_path, net, monkeypatch):
    from stylelift.editing.learn import learn_direction
    from stylelift.models import attributes

    def learn(csv_text, *extra):
        (tmp_path / "l.csv").write_text(csv_text)
        return invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--network", net, "--out", tmp_path / "d.npy", *extra)

    r = learn("".join(f"1,{i % 2}\n" for i in range(20)))  # one seed, labelled both ways
    assert r.exit_code == 1 and "1 is labelled twice, 0.0 and 1.0" in r.output and not (tmp_path / "d.npy").exists(), r.output
    G = tiny_generator()
    for i in range(20):  # one latent under 20 names, labelled both ways
        save_latents(tmp_path / f"same{i}.npz", LatentFile(w=latents_for_items(G, ["1"]).numpy()))
    r = learn("".join(f"{tmp_path / f'same{i}.npz'},{i % 2}\n" for i in range(20)))
    assert r.exit_code == 1 and "the 16 labelled latents the boundary is fitted on are all the same" in r.output and not (tmp_path / "d.npy").exists(), r.output
    r = learn("".join(f"{i},5\n" for i in range(20)))  # every label the same
    assert r.exit_code == 1 and "l.csv: every label is 5: a boundary needs two classes" in r.output, r.output
    r = learn("".join(f"{i},1\n" for i in range(20)))  # one class only
    assert r.exit_code == 1 and "l.csv: every label is 1" in r.output, r.output
    r = invoke("directions", "learn", "--attribute", " ", "--save-labels", tmp_path / "sub" / "l.csv", "--network", net, "--out", tmp_path / "d.npy")
    assert r.exit_code == 2 and "--attribute is empty" in r.output and not (tmp_path / "d.npy").exists() and not (tmp_path / "sub").exists(), r.output
    with pytest.raises(InputError, match="attribute must name"):  # the library's own check
        learn_direction(tiny_generator(), attribute="", labels_csv=tmp_path / "l.csv")
    r = learn("".join(f"{i},{i}\n" for i in range(6)))  # too few at the two ends
    assert r.exit_code == 1 and "at least 10 (the lowest and highest 30% of 17 labels or more)" in r.output, r.output
    r = learn("".join(f"{i},{i}\n" for i in range(17)))  # the fewest that are enough
    assert r.exit_code == 0, r.output
    (tmp_path / "d.npy").unlink()
    r = learn("".join(f"{i},{i % 3}\n" for i in range(40)))  # its sidecar is left, and is not replaced unasked
    assert r.exit_code == 1 and "d.json exists; it would be replaced by the direction's sidecar" in r.output and not (tmp_path / "d.npy").exists(), r.output
    (tmp_path / "d.json").unlink()
    r = learn("".join(f"{i},{i % 3}\n" for i in range(40)))
    assert r.exit_code == 0, r.output
    r = learn("".join(f"{i},{i % 3}\n" for i in range(40)))
    assert r.exit_code == 1 and "exists; pass --overwrite" in r.output, r.output
    monkeypatch.setattr(attributes, "classify", lambda image: None)  # no face found: the labelling fails, its folder is not made
    r = invoke("directions", "learn", "--attribute", "age", "--samples", "20", "--save-labels", tmp_path / "sub" / "l.csv", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 1 and "only 0 of 20 samples could be labelled" in r.output and not (tmp_path / "sub").exists(), r.output
    calls = []
    monkeypatch.setattr(attributes, "classify", lambda image: calls.append(1) or attributes.Attributes(age=30.0, male=0.9))
    r = invoke("directions", "learn", "--attribute", "age", "--samples", "20", "--condition", tmp_path / "none.npy", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 1 and "none.npy" in r.output and not calls, r.output
    r = invoke("directions", "learn", "--attribute", "age", "--samples", "16", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 2 and "--samples 16 is too few for age" in r.output and "ask for 17 or more" in r.output and not calls, r.output  # the command line's mistake
    from stylelift.editing.learn import learn_direction

    with pytest.raises(InputError, match="16 samples are too few for age: .* sample 17 or more"):  # the library says it before labelling too
        learn_direction(tiny_generator(), attribute="age", samples=16)
    assert not calls
    (tmp_path / "e.json").mkdir()
    r = invoke("directions", "learn", "--attribute", "age", "--samples", "20", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 1 and "is a folder" in r.output and not calls and not (tmp_path / "e.npy").exists(), r.output


def test_edit_pastes_each_strength_back_into_the_photo_and_refuses_too_big_a_set(tmp_path, net, monkeypatch):
    from pathlib import Path

    from stylelift import cli
    from stylelift.align import align_face

    photo_path = Path(__file__).parents[1] / "examples" / "astronaut.png"
    photo = Image.open(photo_path).convert("RGB")
    G = tiny_generator()
    face = align_face(photo, size=G.img_resolution)
    ws = latents_for_items(G, ["3"]).numpy()
    meta = {"network_id": network_id(G), "alignment": dict(face.transform_meta(), photo_path=str(photo_path))}
    meta["photo_sha256"] = hashlib.sha256(photo_path.read_bytes()).hexdigest()
    save_latents(tmp_path / "a.npz", LatentFile(w=ws, meta=meta))
    vec = np.random.default_rng(2).normal(size=(1, G.w_dim))
    save_direction(tmp_path / "d.npy", Direction(vec / np.linalg.norm(vec), {"network_id": network_id(G)}))
    args = ("edit", tmp_path / "a.npz", "--direction", tmp_path / "d.npy", "--strength", "0,3", "--paste-back", "--network", net)
    r = invoke(*args, "--out", tmp_path / "e.png")
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.png")  # the same size: only its hash tells
    before = (tmp_path / "mirrored.png").read_bytes()
    r = invoke(*args, "--photo", tmp_path / "mirrored.png", "--out", tmp_path / "mirrored.png")  # it was replaced by the strip
    assert r.exit_code == 1 and "is the photo the edit is pasted into; give another --out" in " ".join(r.output.split()), r.output
    assert (tmp_path / "mirrored.png").read_bytes() == before
    r = invoke(*args, "--photo", tmp_path / "mirrored.png", "--out", tmp_path / "m.png")
    assert r.exit_code == 0 and "warning: mirrored.png is not the photo" in r.output, r.output
    photo.resize((photo.width // 2, photo.height // 2)).save(tmp_path / "half.png")
    r = invoke(*args, "--photo", tmp_path / "half.png", "--out", tmp_path / "h.png")  # refused before the rendering
    said = f"half.png is {photo.width // 2}x{photo.height // 2}, but {tmp_path / 'a.npz'} was aligned in a {photo.width}x{photo.height} photo"
    assert r.exit_code == 1 and said in " ".join(r.output.split()) and not (tmp_path / "h.png").exists(), r.output
    for photo_arg, said in ((tmp_path / "none.png", f"no such photo: {tmp_path / 'none.png'}"), (tmp_path, f"{tmp_path} is a folder, not a photo")):
        r = invoke(*args, "--photo", photo_arg, "--out", tmp_path / "h.png")  # as project says it
        assert r.exit_code == 1 and " ".join(r.output.split()) == f"error: {said}", r.output
    grid = np.asarray(Image.open(tmp_path / "e.png"))
    assert grid.shape == (photo.height, 2 * photo.width, 3)
    left, right = grid[:, : photo.width].astype(int), grid[:, photo.width :].astype(int)
    x0, y0, x1, y1 = face.box
    assert np.array_equal(left[:5, :5], np.asarray(photo)[:5, :5])  # outside the face: the photo itself
    assert np.abs(left - right)[y0:y1, x0:x1].mean() > 1  # inside it: the edit shows
    r = invoke(*args, "--paste-region", "square", "--out", tmp_path / "s.png")
    assert r.exit_code == 0, r.output
    square = np.asarray(Image.open(tmp_path / "s.png"))[:, : photo.width].astype(int)
    x, y = (face.quad[0] + (face.quad[3] - face.quad[0]) * 0.15 + (face.quad[1] - face.quad[0]) * 0.1).astype(int)  # hair, near the square's corner
    assert np.array_equal(left[y, x], np.asarray(photo)[y, x]) and not np.array_equal(square[y, x], left[y, x])
    assert np.array_equal(square[y0 + 40, (x0 + x1) // 2], left[y0 + 40, (x0 + x1) // 2])  # the face: the same either way
    monkeypatch.setattr(cli, "OUTPUT_BYTES", 2 * photo.width * photo.height * 3 - 1)
    r = invoke(*args, "--out", tmp_path / "f.png")
    assert r.exit_code == 1 and f"2 images of {photo.width}x{photo.height}" in r.output and not (tmp_path / "f.png").exists(), r.output
    r = invoke(*args, "--out", tmp_path / "f.mp4")  # its frames go to ffmpeg one by one: only one photo-sized frame need fit
    assert r.exit_code == 0, r.output
    r = invoke(*args, "--out", tmp_path / "f.gif")
    assert r.exit_code == 1 and f"2 images of {photo.width}x{photo.height}" in r.output and not (tmp_path / "f.gif").exists(), r.output


def test_directions_learn_samples_with_the_truncation_it_was_given(tmp_path, net):
    (tmp_path / "l.csv").write_text("seed,label\n" + "".join(f"{s},{s % 2}\n" for s in range(40)))
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--network", net,
               "--trunc", "0.5", "--trunc-cutoff", "2", "--out", tmp_path / "d.npy")  # fmt: skip
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "d.json").read_text())
    assert meta["truncation_psi"] == 0.5 and meta["truncation_cutoff"] == 2
    from stylelift.editing.learn import binarize

    G = tiny_generator()
    seeds, labels = [str(s) for s in range(40)], np.arange(40) % 2
    keep, y = binarize(labels.astype(float))
    fits = {}
    for psi, cutoff in ((0.5, 2), (1.0, None)):
        w = latents_for_items(G, seeds, truncation_psi=psi, truncation_cutoff=cutoff)[:, 0].double().numpy()
        fits[psi] = fit_boundary(w[keep], y)[0]
    saved = np.load(tmp_path / "d.npy")
    assert np.allclose(saved, fits[0.5], atol=1e-5)  # fitted on the truncated ws
    assert not np.allclose(saved, fits[1.0], atol=1e-2)  # which this small fit tells apart from untruncated ones


def test_library_checks_still_take_what_they_took_before(tmp_path):
    G = tiny_generator()
    ws = latents_for_items(G, (str(s) for s in (1, 2)))  # any iterable of items
    one = latents_for_items(G, ["3"])
    assert torch.equal(mix_styles(ws, one, [0])[:, 0], one[:, 0].expand(2, -1))  # one column broadcast over the rows
    strengths = torch.tensor([1.0, -1.0]).reshape(2, 1, 1)  # per-sample strengths
    d = torch.randn(G.w_dim)
    expected = ws.clone()
    expected[:, :2] += strengths * d
    assert torch.allclose(apply_direction(ws, d, strengths, np.array([0.0, 1.0])), expected)  # layers as a float array of whole numbers
    assert torch.equal(truncate(ws, G.w_avg, torch.tensor(0.5)), truncate(ws, G.w_avg, 0.5))
    w, y = np.random.default_rng(0).normal(size=[40, 4]), np.arange(40) % 2
    assert np.isnan(fit_boundary(w, y, holdout=0)[1])  # all data fitted, nothing held out
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, 1, G.w_dim]), {}))
    assert load_direction(tmp_path / "d.npy").vector.shape == (1, G.w_dim)
    save_latents(tmp_path / "one.npz", LatentFile(w=ws[0].numpy(), noises={np.int64(0): np.zeros([4, 4])}))  # one code [num_ws, w_dim]
    back = load_latents(tmp_path / "one.npz")
    assert back.w.shape == (1, G.num_ws, G.w_dim) and list(back.noises) == [0]


def test_library_counts_and_item_lists_are_checked():
    from stylelift.generation import render_ws

    G = tiny_generator()
    ws = latents_for_items(G, ["1"])
    calls = [
        (lambda: latents_for_items(G, "12"), "list of seeds"),  # not seeds 1 and 2
        (lambda: latents_for_items(G, []), "non-empty list"),
        (lambda: render_ws(G, ws, batch_size=0), "batch_size"),
        (lambda: sefa(G, k=-1), "k must be"),
        (lambda: pca_directions(G, samples=1), "samples must be"),
        (lambda: fit_boundary(np.zeros([20, 4]), np.arange(20) % 2, holdout=1.5), "holdout"),
        (lambda: fit_boundary(np.zeros([20, 4]), np.arange(20) % 2, l2=-1), "l2"),
        (lambda: truncate(ws, G.w_avg, float("nan")), "psi must be a finite"),
        (lambda: truncate(ws, G.w_avg, 1e39), "psi must be a finite number within float32's range"),  # the lerp would overflow
        (lambda: G.mapping(torch.zeros(1, G.z_dim), truncation_psi=-1e39), "within float32's range"),
        (lambda: truncate(ws.long(), G.w_avg, 0.5), "ws must be a float tensor"),
        (lambda: truncate(ws, torch.zeros(8), 0.5), r"w_avg must be a tensor \[w_dim\]"),
        (lambda: truncate(ws * 1e37, G.w_avg, 3e38), "beyond float32's range"),
        (lambda: apply_direction(ws, np.zeros([1, G.w_dim]), 1.0), "all zeros"),
        (lambda: apply_direction(ws, np.full([1, G.w_dim], np.nan), 1.0), "not finite"),
        (lambda: apply_direction(ws, np.ones([2, G.w_dim // 2]), 1.0), "one vector"),
        (lambda: apply_direction(ws, np.ones([1, G.w_dim]), 1.0, []), "layers is empty"),
        (lambda: apply_direction(ws, np.ones([1, G.w_dim]), 1e39), "overflow"),
        (lambda: apply_direction(ws, np.ones([1, G.w_dim]), "1"), "strength must be a finite number"),
        (lambda: apply_direction(ws.long(), np.ones([1, G.w_dim]), 1.0), "ws must be a float tensor"),
        (lambda: apply_direction(ws.numpy(), np.ones([1, G.w_dim]), 1.0), "ws must be a float tensor"),
        (lambda: condition(np.ones([1, G.w_dim]), np.zeros([1, G.w_dim])), "all zeros"),
        (lambda: mix_styles(ws, ws.to("meta"), [0]), "different devices"),
        (lambda: mix_styles(ws.numpy(), ws.numpy(), [0]), "row and column ws"),
        (lambda: sefa(G, layers=[-1]), "not all whole numbers"),
        (lambda: sefa(G, layers=[]), "layers is empty"),
        (lambda: interpolation_path(torch.randn(5, G.w_dim), 3), "3 frames cannot pass through 5 keys"),
        (lambda: interpolation_path(np.zeros([2, 4]), 3), "keys must be a float tensor"),
        (lambda: fit_boundary(np.random.default_rng(1).standard_normal((20, 4)), np.array([1] + [0] * 19), holdout=0.5, seed=2), "all of one class"),
        (lambda: fit_boundary(np.full([20, 4], np.nan), np.arange(20) % 2), "NaN or infinite"),
        (lambda: G.mapping(torch.zeros(2, G.z_dim), torch.zeros(2, 3)), "unconditional"),
        (lambda: fit_boundary(np.zeros([20, 4]), np.arange(20) % 2, seed="a"), "seed must be"),
        (lambda: pca_directions(G, samples=10, seed=-1), "seed must be"),
    ]
    for call, why in calls:
        with pytest.raises(InputError, match=why):
            call()


def test_edit_and_generate_render_a_latent_file_with_its_own_noise_maps(tmp_path, net):
    from stylelift.generation import stored_noises

    G = tiny_generator()
    ws = G.mapping(torch.from_numpy(z_from_seed(3, G.z_dim)))
    rng = np.random.default_rng(0)
    noises = {k: 3 * rng.normal(size=[1, layer.resolution, layer.resolution]).astype(np.float32) for k, layer in enumerate(G.synthesis.noise_layers())}
    save_latents(tmp_path / "l.npz", LatentFile(w=ws.numpy(), noises=noises, meta={"network_id": network_id(G)}))
    expected = to_uint8(G.synthesis(ws, noises=stored_noises(G, noises, "cpu")))[0]
    assert not np.array_equal(expected, to_uint8(G.synthesis(ws))[0])  # the maps change the picture
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim]), {}))
    r = invoke("edit", tmp_path / "l.npz", "--direction", tmp_path / "d.npy", "--strength", "-1:1:3", "--network", net, "--out", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    assert np.array_equal(tiles(tmp_path / "e.png", 16, 1, 3)[0][1], expected)  # strength 0: the file's own image, noise and all
    r = invoke("generate", "--latents", tmp_path / "l.npz", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g" / "l00.png").convert("RGB")), expected)


def test_edit_of_several_items_gives_a_row_each_and_video_frames_side_by_side(tmp_path, net):
    from stylelift.generation import stored_noises

    G = tiny_generator()
    d = np.random.default_rng(2).normal(size=[1, G.w_dim])
    save_direction(tmp_path / "d.npy", Direction(d, {}))
    ws = G.mapping(torch.from_numpy(z_from_seed(9, G.z_dim)))
    noises = {k: 2 * np.random.default_rng(k).normal(size=[1, layer.resolution, layer.resolution]).astype(np.float32) for k, layer in enumerate(G.synthesis.noise_layers())}
    save_latents(tmp_path / "l.npz", LatentFile(w=ws.numpy(), noises=noises, meta={"network_id": network_id(G)}))
    unit = torch.from_numpy(d / np.linalg.norm(d)).float()
    expected = {  # the file with its own noise maps, the seed without
        "file": [to_uint8(G.synthesis(apply_direction(ws, unit, s), noises=stored_noises(G, noises, "cpu")))[0] for s in (-1, 0, 2)],
        "seed": [to_uint8(G.synthesis(apply_direction(latents_for_items(G, ["4"]), unit, s)))[0] for s in (-1, 0, 2)],
    }
    r = invoke("edit", tmp_path / "l.npz", "4", "--direction", tmp_path / "d.npy", "--strength", "-1,0,2", "--network", net, "--out", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "e.png", 16, 2, 3)
    for row, name in enumerate(("file", "seed")):
        for col in range(3):
            assert np.abs(t[row][col].astype(int) - expected[name][col].astype(int)).max() <= 1, (name, col)
    r = invoke("edit", tmp_path / "l.npz", "4", "--direction", tmp_path / "d.npy", "--strength", "-1,0,2", "--network", net, "--out", tmp_path / "e.gif")
    assert r.exit_code == 0, r.output
    frames = imageio.mimread(tmp_path / "e.gif")
    assert len(frames) == 3 and frames[0].shape[:2] == (16, 32)
    r = invoke("edit", tmp_path / "l.npz", "4", "--direction", tmp_path / "d.npy", "--paste-back", "--network", net, "--out", tmp_path / "x.png")
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "--paste-back pastes into one photo" in said and not (tmp_path / "x.png").exists()


def test_an_edit_video_is_written_frame_by_frame_as_it_is_rendered(tmp_path, net, monkeypatch):
    """An edit mp4 was held whole in memory (and refused above 2 GiB); now each frame goes to the
    writer once its images are rendered, the items side by side at one strength, as in the strip."""
    from stylelift import generation, images

    G = tiny_generator()
    save_direction(tmp_path / "d.npy", Direction(np.random.default_rng(2).normal(size=[1, G.w_dim]), {}))
    noises = {k: np.random.default_rng(k).normal(size=[1, layer.resolution, layer.resolution]).astype(np.float32) for k, layer in enumerate(G.synthesis.noise_layers())}
    save_latents(tmp_path / "l.npz", LatentFile(w=latents_for_items(G, ["9"]).numpy(), noises=noises, meta={"network_id": network_id(G)}))
    args = ("edit", tmp_path / "l.npz", "4", "--direction", tmp_path / "d.npy", "--strength", "-2:2:5", "--batch-size", "2", "--network", net)
    assert invoke(*args, "--out", tmp_path / "e.png").exit_code == 0
    strip = tiles(tmp_path / "e.png", 16, 2, 5)
    rendered, received = [], []
    real_render = generation.iter_render_ws

    def counting(*a, **k):
        for image in real_render(*a, **k):
            rendered.append(1)
            yield image

    def writer(path, frames, fps=30):
        for frame in frames:
            received.append((len(rendered), frame))
        Path(path).write_bytes(b"video")

    monkeypatch.setattr(generation, "iter_render_ws", counting)
    monkeypatch.setattr(images, "write_video", writer)
    r = invoke(*args, "--out", tmp_path / "e.mp4")
    assert r.exit_code == 0, r.output
    assert [done for done, _ in received] == [2, 4, 6, 8, 10]  # frame j as soon as both items at strength j are rendered
    for j, (_, frame) in enumerate(received):
        assert frame.shape == (16, 32, 3) and np.array_equal(frame[:, :16], strip[0][j]) and np.array_equal(frame[:, 16:], strip[1][j]), j


def test_edit_and_interpolate_take_seed_lists_as_generate_does(tmp_path, net, monkeypatch):
    G = tiny_generator()
    d = np.random.default_rng(2).normal(size=[1, G.w_dim])
    save_direction(tmp_path / "d.npy", Direction(d, {}))
    r = invoke("edit", "3-4, 7", "1", "--direction", tmp_path / "d.npy", "--strength", "0", "--network", net, "--out", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "e.png", 16, 4, 1)
    for row, seed in enumerate(("3", "4", "7", "1")):  # a row per seed, in the order given
        assert np.array_equal(t[row][0], to_uint8(G.synthesis(latents_for_items(G, [seed])))[0]), seed
    r = invoke("interpolate", "2-4", "--frames", "3", "--grid", "--network", net, "--out", tmp_path / "s.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "s.png", 16, 1, 3)
    assert all(np.array_equal(t[0][k], to_uint8(G.synthesis(latents_for_items(G, [str(2 + k)])))[0]) for k in range(3))  # one key per frame
    r = invoke("edit", "4-3", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and "runs backwards" in " ".join(r.output.replace("│", " ").split()) and not (tmp_path / "x.png").exists()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5-6").write_bytes(b"not a latent file")  # a file of that name is the file
    r = invoke("edit", "5-6", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 1 and "5-6" in r.output and not (tmp_path / "x.png").exists()
    (tmp_path / "3-4").mkdir()  # a folder named after the seeds it holds, as `generate --outdir 3-4` makes: still seeds
    r = invoke("edit", "3-4", "--direction", tmp_path / "d.npy", "--strength", "0", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 0 and len(tiles(tmp_path / "x.png", 16, 2, 1)) == 2, r.output
    r = invoke("edit", "2024-05", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "y.png")
    assert r.exit_code == 2 and "'2024-05' is neither a latent file nor a list of seeds" in " ".join(r.output.replace("│", " ").split()), r.output


def noisy_latent_file(G, path, seed):
    """A latent file as project writes it on a network with noise inputs: w and its own noise maps."""
    ws = G.mapping(torch.from_numpy(z_from_seed(seed, G.z_dim)))
    rng = np.random.default_rng(seed)
    noises = {k: 3 * rng.normal(size=[1, layer.resolution, layer.resolution]).astype(np.float32) for k, layer in enumerate(G.synthesis.noise_layers())}
    save_latents(path, LatentFile(w=ws.numpy(), noises=noises, meta={"network_id": network_id(G)}))
    return ws, [torch.from_numpy(noises[k]).reshape(1, 1, *noises[k].shape[1:]) for k in sorted(noises)]


def const_noises(G):
    return [layer.noise_const.reshape(1, 1, layer.resolution, layer.resolution) for layer in G.synthesis.noise_layers()]


def test_mix_renders_latent_files_with_their_noise_maps_taken_with_their_layers(tmp_path, net):
    G = tiny_generator()
    ws_a, noise_a = noisy_latent_file(G, tmp_path / "a.npz", 5)
    ws_seed = latents_for_items(G, ["2"])
    r = invoke("mix", "--rows", "2", "--cols", tmp_path / "a.npz", "--styles", "0-2", "--network", net, "--out", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "m.png", 16, 2, 2)
    assert np.array_equal(t[0][1], to_uint8(G.synthesis(ws_a, noises=noise_a))[0])  # the column source as projected
    assert np.array_equal(t[1][0], to_uint8(G.synthesis(ws_seed))[0])  # the seed with the network's own noise
    mixed_noise = [noise_a[k] if k <= 2 else const_noises(G)[k] for k in range(len(noise_a))]  # noise k goes with ws[k]
    expected = to_uint8(G.synthesis(mix_styles(ws_seed, ws_a, [0, 1, 2]), noises=mixed_noise))[0]
    assert np.abs(t[1][1].astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(expected, to_uint8(G.synthesis(mix_styles(ws_seed, ws_a, [0, 1, 2])))[0])  # the maps matter


def test_interpolation_starts_and_ends_on_each_latent_files_own_image_noise_and_all(tmp_path, net):
    G = tiny_generator()
    ws_a, noise_a = noisy_latent_file(G, tmp_path / "a.npz", 5)
    ws_b = latents_for_items(G, ["3"])
    r = invoke("interpolate", tmp_path / "a.npz", "3", "--frames", "5", "--grid", "--network", net, "--out", tmp_path / "i.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "i.png", 16, 1, 5)
    assert np.array_equal(t[0][0], to_uint8(G.synthesis(ws_a, noises=noise_a))[0])
    assert np.array_equal(t[0][4], to_uint8(G.synthesis(ws_b))[0])
    half = [a + (b - a) * 0.5 for a, b in zip(noise_a, const_noises(G))]
    expected = to_uint8(G.synthesis(ws_a + (ws_b - ws_a) * 0.5, noises=half))[0]
    assert np.abs(t[0][2].astype(int) - expected.astype(int)).max() <= 1


def test_directions_learn_condition_removes_the_other_direction(tmp_path, net):
    G = tiny_generator()
    (tmp_path / "l.csv").write_text("seed,label\n" + "".join(f"{s},{s % 3}\n" for s in range(60)))
    other = np.random.default_rng(4).normal(size=(1, G.w_dim))
    save_direction(tmp_path / "gender.npy", Direction(other, {"attribute": "gender"}))
    common = ("directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--network", net)
    assert invoke(*common, "--out", tmp_path / "plain.npy").exit_code == 0
    r = invoke(*common, "--condition", tmp_path / "gender.npy", "--out", tmp_path / "cond.npy")
    assert r.exit_code == 0, r.output
    plain, cond = np.load(tmp_path / "plain.npy"), np.load(tmp_path / "cond.npy")
    assert np.allclose(cond, condition(plain, other), atol=1e-6)  # the same fit, its gender part removed
    assert abs(float(cond[0] @ other[0])) < 1e-5 and abs(float(plain[0] @ other[0]) / np.linalg.norm(other)) > 1e-3
    assert json.loads((tmp_path / "cond.json").read_text())["conditioned_on"] == "gender"
    r = invoke(*common, "--condition", "gender", "--out", tmp_path / "cond2.npy")  # the shipped one, made for the bundled network
    assert r.exit_code == 1 and "gender.npy was made for network mobilestylegan-" in r.output and not (tmp_path / "cond2.npy").exists(), r.output
    (tmp_path / "l.json").write_bytes((tmp_path / "l.csv").read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for labels, more, out in (("l.json", [], "l.npy"), ("l.csv", ["--condition", tmp_path / "gender.npy"], "gender.npy")):  # a sidecar, a direction
        r = invoke(*common[:5], tmp_path / labels, *common[6:], *more, "--out", tmp_path / out, "--overwrite")  # --overwrite replaced them
        assert r.exit_code == 1 and "which this command reads; give another --out" in r.output, r.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_directions_learn_takes_a_shipped_direction_by_name_as_its_condition(tmp_path):
    from stylelift import load_generator
    from stylelift.editing.shipped import resolve_direction

    G = load_generator("mobile-ffhq")
    (tmp_path / "l.csv").write_text("seed,label\n" + "".join(f"{s},{s % 2}\n" for s in range(40)))  # seeds: only the mapping runs
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--condition", "gender", "--out", tmp_path / "c.npy", "--device", "cpu")
    assert r.exit_code == 0, r.output
    gender = resolve_direction("gender", G).vector
    assert abs(float(np.load(tmp_path / "c.npy")[0] @ gender[0])) < 1e-5
    assert json.loads((tmp_path / "c.json").read_text())["conditioned_on"] == "gender"


def test_the_shipped_directions_point_the_way_their_names_say():
    """Three random faces of the bundled network, classified by the offline age/gender networks at
    strengths -3 and +3 (benchmarks/direction_effect.py measures this on 100 faces)."""
    from stylelift import load_generator
    from stylelift.editing.shipped import resolve_direction
    from stylelift.generation import render_ws
    from stylelift.models.attributes import CLASSIFY_SIZE, classify

    G = load_generator("mobile-ffhq")
    ws = latents_for_items(G, ["100000", "100001", "100002"], truncation_psi=0.7)
    found = {}
    for name in ("age", "gender"):
        d = resolve_direction(name, G)
        layers = parse_layers(d.default_layers or "all", G.layer_resolutions)
        edited = torch.cat([apply_direction(ws, d.vector, s, layers) for s in (-3.0, 3.0)])
        found[name] = [classify(im) for im in render_ws(G, edited, batch_size=6, max_resolution=CLASSIFY_SIZE)]
    assert all(a is not None for a in found["age"] + found["gender"])
    young, old = found["age"][:3], found["age"][3:]
    assert all(o.age > y.age + 10 for y, o in zip(young, old)), [(y.age, o.age) for y, o in zip(young, old)]
    female, male = found["gender"][:3], found["gender"][3:]
    assert all(m.male > f.male for f, m in zip(female, male)) and np.mean([m.male for m in male]) > 0.5 > np.mean([f.male for f in female])


def test_every_command_that_samples_seeds_takes_a_class_on_a_conditional_network(tmp_path):
    G = tiny_generator(c_dim=4)
    net = tmp_path / "cnet.pt"
    save_generator(G, net)
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim]), {}))
    (tmp_path / "l.csv").write_text("seed,label\n" + "".join(f"{s},{s % 2}\n" for s in range(30)))
    runs = {
        "truncation-sweep": ["truncation-sweep", "--seeds", "5", "--psi", "0.5,1", "--out", tmp_path / "t.png"],
        "mix": ["mix", "--rows", "5", "--cols", "6", "--styles", "0-1", "--out", tmp_path / "m.png"],
        "interpolate w": ["interpolate", "5", "6", "--frames", "3", "--grid", "--out", tmp_path / "iw.png"],
        "interpolate z": ["interpolate", "5", "6", "--frames", "3", "--grid", "--space", "z", "--out", tmp_path / "iz.png"],
        "edit": ["edit", "5", "--direction", tmp_path / "d.npy", "--strength", "0", "--out", tmp_path / "e.png"],
        "learn": ["directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--out", tmp_path / "x.npy"],
    }
    c = torch.nn.functional.one_hot(torch.tensor([2]), 4).float()
    seed5 = to_uint8(G.synthesis(G.mapping(torch.from_numpy(z_from_seed(5, G.z_dim)), c)))[0]
    for name, args in runs.items():
        r = invoke(*args, "--network", net)
        assert r.exit_code == 1 and "conditional (4 classes); pass --class 0..3" in r.output and r.output.count("\n") == 1, (name, r.output)
        r = invoke(*args, "--network", net, "--class", "2")
        assert r.exit_code == 0, (name, r.output)
    assert np.array_equal(tiles(tmp_path / "e.png", 16, 1, 1)[0][0], seed5)  # strength 0: seed 5 of class 2
    assert np.array_equal(tiles(tmp_path / "iw.png", 16, 1, 3)[0][0], seed5) and np.array_equal(tiles(tmp_path / "iz.png", 16, 1, 3)[0][0], seed5)
    assert json.loads((tmp_path / "x.json").read_text())["class"] == 2
    assert invoke("directions", "pca", "--samples", "20", "--k", "2", "--network", net, "--outdir", tmp_path / "p").exit_code == 0  # every class alike
    r = invoke("truncation-sweep", "--seeds", "5", "--class", "1", "--out", tmp_path / "u.png", "--network", "random-stylegan2-64")
    assert r.exit_code == 1 and "unconditional; drop --class" in r.output
    ws = G.mapping(torch.from_numpy(z_from_seed(5, G.z_dim)), c)
    save_latents(tmp_path / "a.npz", LatentFile(w=ws.numpy(), meta={"network_id": network_id(G)}))
    for i in range(20):
        save_latents(tmp_path / f"a{i}.npz", LatentFile(w=ws.numpy() + i, meta={"network_id": network_id(G)}))
    (tmp_path / "files.csv").write_text("latent_file,label\n" + "".join(f"{tmp_path / f'a{i}.npz'},{i % 2}\n" for i in range(20)))
    only_files = {
        "mix": ["mix", "--rows", tmp_path / "a.npz", "--cols", tmp_path / "a.npz", "--out", tmp_path / "m2.png"],
        "interpolate": ["interpolate", tmp_path / "a.npz", tmp_path / "a.npz", "--grid", "--out", tmp_path / "i2.png"],
        "edit": ["edit", tmp_path / "a.npz", "--direction", tmp_path / "d.npy", "--out", tmp_path / "e2.png"],
        "generate": ["generate", "--latents", tmp_path / "a.npz", "--outdir", tmp_path / "g"],
        "learn": ["directions", "learn", "--attribute", "x", "--labels", tmp_path / "files.csv", "--out", tmp_path / "y.npy"],
    }
    for name, args in only_files.items():  # a class or a truncation that would do nothing is refused, not ignored
        r = invoke(*args, "--network", net, "--class", "1")
        said = " ".join(r.output.replace("│", " ").split())
        if name == "learn":  # the CSV's content: exit 1
            assert r.exit_code == 1 and "files.csv names only latent files, which hold their ws already: a class (--class) applies to seeds; drop it" in said, said
        else:  # the command line alone says it: a usage error
            assert r.exit_code == 2 and "--class applies to seeds" in said, (name, said)
        r = invoke(*args, "--network", net, "--trunc", "0.5", "--trunc-cutoff", "2")
        said = " ".join(r.output.replace("│", " ").split())
        assert r.exit_code == (1 if name == "learn" else 2) and ("a truncation" if name == "learn" else "--trunc and --trunc-cutoff apply to seeds") in said, (name, said)
        assert not args[-1].exists(), name  # nothing written
    r = invoke("mix", "--rows", tmp_path / "a.npz", "--cols", "6", "--styles", "0-1", "--class", "2", "--network", net, "--out", tmp_path / "m3.png")
    assert r.exit_code == 0, r.output  # a seed among them: the class is the seed's
    r = invoke(*only_files["learn"], "--network", net)
    assert r.exit_code == 0 and "class" not in json.loads((tmp_path / "y.json").read_text()), r.output  # latent files need no class


def test_seeds_are_ascii_digits():
    from stylelift.generation import is_seed

    assert is_seed("42") and is_seed("007") and not is_seed("\u00b2") and not is_seed("4\u00b2") and not is_seed("-1") and not is_seed("")
    with pytest.raises(FileNotFoundError, match="neither a seed nor"):
        latents_for_items(tiny_generator(), ["\u00b2"])


def test_mix_grid_of_several_files_and_seeds_gives_every_cell_its_own_noise_maps(tmp_path, net):
    """2 rows x 3 columns mixing files and seeds, rendered in batches that straddle rows: a swapped
    row/column index or a batch offset would give some cell another item's maps."""
    G = tiny_generator()
    files = {name: noisy_latent_file(G, tmp_path / f"{name}.npz", seed) for name, seed in (("a", 5), ("b", 6), ("c", 7))}
    rows, cols = ["2", str(tmp_path / "b.npz")], [str(tmp_path / "a.npz"), "3", str(tmp_path / "c.npz")]

    def source(item):  # (ws, noise maps) of one item, rendered alone
        name = Path(item).stem
        return files[name] if name in files else (latents_for_items(G, [item]), const_noises(G))

    r = invoke("mix", "--rows", ",".join(rows), "--cols", ",".join(cols), "--styles", "0-2", "--batch-size", "4", "--network", net, "--out", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "m.png", 16, 3, 4)
    for i, row in enumerate(rows):
        (row_ws, row_noise) = source(row)
        assert np.array_equal(t[i + 1][0], to_uint8(G.synthesis(row_ws, noises=row_noise))[0]), row
        for j, col in enumerate(cols):
            col_ws, col_noise = source(col)
            noise = [col_noise[k] if k <= 2 else row_noise[k] for k in range(len(row_noise))]
            expected = to_uint8(G.synthesis(mix_styles(row_ws, col_ws, [0, 1, 2]), noises=noise))[0]
            assert np.abs(t[i + 1][j + 1].astype(int) - expected.astype(int)).max() <= 1, (row, col)


def test_truncation_sweep_rows_of_files_and_seeds_keep_their_own_noise_maps(tmp_path, net):
    G = tiny_generator()
    ws_a, noise_a = noisy_latent_file(G, tmp_path / "a.npz", 5)
    ws_b, noise_b = noisy_latent_file(G, tmp_path / "b.npz", 6)
    args = ("--seeds", "4", "--latents", tmp_path / "a.npz", "--latents", tmp_path / "b.npz", "--psi", "0.5,1", "--batch-size", "3")
    r = invoke("truncation-sweep", *args, "--network", net, "--out", tmp_path / "t.png")
    assert r.exit_code == 0, r.output
    t = tiles(tmp_path / "t.png", 16, 3, 2)
    rows = [(latents_for_items(G, ["4"], truncation_psi=1), const_noises(G)), (ws_a, noise_a), (ws_b, noise_b)]
    for i, (ws, noise) in enumerate(rows):
        for j, psi in enumerate((0.5, 1)):
            expected = to_uint8(G.synthesis(truncate(ws, G.w_avg, psi), noises=noise))[0]
            assert np.abs(t[i][j].astype(int) - expected.astype(int)).max() <= 1, (i, psi)


def test_an_out_that_is_a_folder_is_named_as_a_folder(tmp_path, net, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short path: rich wraps long ones mid-word
    (tmp_path / "outdir").mkdir()
    runs = {
        ("edit", "0", "--direction", "1", "--out"): ".png",
        ("mix", "--rows", "0", "--cols", "1", "--out"): ".png",
        ("truncation-sweep", "--out"): ".png",
        ("interpolate", "0", "1", "--out"): ".mp4",
        ("interpolate", "0", "1", "--grid", "--out"): ".png",
    }
    for args, suffix in runs.items():
        r = invoke(*args, "outdir", "--network", net)
        said = " ".join(r.output.replace("│", " ").split())
        assert r.exit_code == 1 and said == f"error: outdir is a folder; name the file to write, e.g. outdir/NAME{suffix}", (args, said)  # as directions learn, convert, encoder fit say it
    assert list((tmp_path / "outdir").iterdir()) == []
    (tmp_path / "grid.png").mkdir()  # folders, with a picture's name and without: the usage errors come first, then what is on disk
    for folder in ("grid.png", "outdir"):
        for args, said in ((("edit", "0", "--direction", "1", "--strength", "bogus"), "cannot read --strength 'bogus'"), (("mix", "--rows", "0,,1", "--cols", "1"), "has an empty item"),
                           (("truncation-sweep", "--psi", "bogus"), "cannot read --psi 'bogus'"), (("interpolate", "0", "1", "--grid", "--fps", "3"), "--fps is for a video"),
                           (("interpolate", "0", "x.npz", "--space", "z"), "--space z needs seeds"), (("edit", "x.npz", "--direction", "1", "--class", "3"), "--class applies to seeds")):
            r = invoke(*args, "--out", folder, "--network", net)
            assert r.exit_code == 2 and said in " ".join(r.output.replace("│", " ").split()), (folder, args, r.output)
    r = invoke("edit", "0", "--direction", "1", "--out", "grid.png", "--network", net)
    assert r.exit_code == 1 and r.output.startswith("error: grid.png is a folder; name the file to write, e.g. grid.png/NAME.png"), r.output


def test_videos_and_grids_show_their_rendering_progress_on_stderr(tmp_path, net):
    """Off a terminal: a line every tenth of the images; stdout keeps only what was written."""
    r = invoke("interpolate", "0", "1", "--frames", "20", "--network", net, "--out", tmp_path / "i.mp4")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [f"rendering: {k}/20" for k in range(2, 21, 2)] and r.stdout == f"wrote {tmp_path / 'i.mp4'}\n"
    r = invoke("mix", "--rows", "0,1", "--cols", "2,3,4", "--network", net, "--out", tmp_path / "m.png")
    assert r.exit_code == 0 and r.stderr.splitlines() == [f"rendering the mixed cells: {k}/6" for k in range(1, 7)], r.output  # the cells
    G = tiny_generator()
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim], np.float32) / np.sqrt(G.w_dim), {}))
    r = invoke("edit", "0", "1", "--direction", tmp_path / "d.npy", "--strength", "-1:1:5", "--network", net, "--out", tmp_path / "e.mp4")
    assert r.exit_code == 0 and r.stderr.splitlines() == [f"rendering: {k}/10" for k in range(1, 11)], r.output  # both items


def test_a_video_whose_writing_fails_closes_its_frames_and_makes_no_folder(tmp_path, net):
    from stylelift.cli_editing import save_output

    closed = []

    def frames(sizes):
        try:
            for size in sizes:
                yield np.zeros([size, size, 3], np.uint8)
        finally:
            closed.append(True)  # a progress bar's `with` ends here

    video = frames([16, 8, 8])  # held here, so only save_output can close it
    with pytest.raises(InputError):  # the second frame has another size: ffmpeg is fed no more
        save_output(video, tmp_path / "v" / "a.mp4")
    assert closed == [True] and not list(tmp_path.glob("v/*.mp4"))  # (its folder, made at the first frame, is kept: another run may write there)
    G = tiny_generator()
    save_latents(tmp_path / "big.npz", LatentFile(w=np.full([1, G.num_ws, G.w_dim], 3e38, np.float32), meta={}))
    r = invoke("interpolate", tmp_path / "big.npz", "4", "--frames", "3", "--network", net, "--out", tmp_path / "new" / "sub" / "i.mp4")
    assert r.exit_code == 1 and "frame 1 of 3" in r.output and not (tmp_path / "new").exists(), r.output
    for out in ("i.gif", "i.png"):  # a later frame fails: a GIF or a still makes its folder once all are rendered
        grid = ("--grid",) if out.endswith(".png") else ()
        r = invoke("interpolate", "4", tmp_path / "big.npz", *grid, "--frames", "3", "--batch-size", "1", "--network", net, "--out", tmp_path / "new" / "sub" / out)
        assert r.exit_code == 1 and "frame 2 of 3" in r.output and not (tmp_path / "new").exists(), r.output
    (tmp_path / "kept").mkdir()
    r = invoke("interpolate", "4", tmp_path / "big.npz", "--frames", "3", "--batch-size", "1", "--network", net, "--out", tmp_path / "kept" / "i.gif")
    assert r.exit_code == 1 and (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_an_output_named_like_a_file_the_command_reads_is_refused_before_any_work(tmp_path, net, monkeypatch):
    G = tiny_generator()
    save_latents(tmp_path / "lat.png", LatentFile(w=G.mapping(torch.zeros(1, G.z_dim)).detach().numpy(), meta={}))  # a latent file, oddly named
    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim]), {"attribute": "x"}))
    before = (tmp_path / "lat.png").read_bytes()
    monkeypatch.chdir(tmp_path)
    for args in (
        ("edit", "./lat.png", "--direction", "d.npy", "--out", "lat.png"),
        ("mix", "--rows", "./lat.png", "--cols", "1", "--out", tmp_path / "lat.png"),
        ("truncation-sweep", "--latents", "lat.png", "--out", "./lat.png"),
        ("interpolate", "./lat.png", "2", "--grid", "--out", "lat.png"),
    ):
        r = invoke(*args, "--network", net)
        assert r.exit_code == 1 and "lat.png, which this command reads; give another --out" in r.output, (args, r.output)
    r = invoke("generate", "--latents", "lat.png", "--outdir", ".", "--network", net)  # its grid.png: no clash; lat00.png neither
    assert r.exit_code == 0, r.output
    (tmp_path / "grid.png").write_bytes(before)
    r = invoke("generate", "--latents", "grid.png", "--outdir", ".", "--network", net)
    assert r.exit_code == 1 and "the image grid.png is grid.png, which this command reads; give another --outdir" in r.output, r.output
    assert (tmp_path / "lat.png").read_bytes() == (tmp_path / "grid.png").read_bytes() == before


def test_directions_are_taken_as_loaded_and_strengths_per_sample():
    G = tiny_generator()
    ws = latents_for_items(G, ["1", "2"])
    vec = np.random.default_rng(0).standard_normal([1, G.w_dim]).astype(np.float32)
    d = Direction(vec / np.linalg.norm(vec), {})
    assert torch.equal(apply_direction(ws, d, 2.0), apply_direction(ws, d.vector, 2.0))  # a Direction as load_direction gives it
    per_sample = apply_direction(ws, d, torch.tensor([1.0, -2.0]))  # [N]
    assert torch.allclose(per_sample[1], apply_direction(ws[1:], d, -2.0)[0]) and torch.allclose(per_sample[0], apply_direction(ws[:1], d, np.float64(1.0))[0])
    assert w_std_along(G, d, samples=100) == w_std_along(G, d.vector, samples=100)
    other = Direction(np.eye(1, G.w_dim, dtype=np.float32), {})
    assert abs((condition(d, other) @ other.vector.T).item()) < 1e-6


def test_items_may_be_ints_and_paths_and_seed_lists_are_checked(tmp_path):
    from stylelift.generation import generate_from_seeds

    G = tiny_generator()
    ws, _ = noisy_latent_file(G, tmp_path / "12", 5)  # a Path named 12 is a file
    got = latents_for_items(G, [3, np.int64(4), tmp_path / "12", "3"])
    assert torch.equal(got[0], got[3]) and torch.equal(got[1], latents_for_items(G, ["4"])[0]) and torch.equal(got[2], ws[0])
    for items, why in (([-1], "items are seeds"), ([1.5], "items are seeds"), ([True], "items are seeds")):
        with pytest.raises(InputError, match=why):
            latents_for_items(G, items)
    for seeds, why in ((1, "seeds must be a list"), (["1"], "whole numbers"), ([-2], "whole numbers")):
        with pytest.raises(InputError, match=why):
            generate_from_seeds(G, seeds)
    with pytest.raises(InputError, match="psi"):
        generate_from_seeds(G, [1], truncation_psi="x")


def test_edits_pass_gradients_to_strength_and_direction_and_take_per_layer_averages():
    G = tiny_generator()
    ws = latents_for_items(G, ["1", "2"])
    strength = torch.tensor(1.5, requires_grad=True)
    direction = torch.randn(1, G.w_dim, requires_grad=True)
    apply_direction(ws, direction, strength).sum().backward()  # e.g. learning a direction by gradient
    assert strength.grad is not None and direction.grad is not None
    column = np.ones([G.w_dim, 1])  # one vector, standing
    assert torch.equal(apply_direction(ws, column, 1.0), apply_direction(ws, column.T, 1.0))
    per_layer = G.w_avg.expand(G.num_ws, -1)  # [num_ws, w_dim]
    assert torch.equal(truncate(ws, per_layer, 0.5, 3), truncate(ws, G.w_avg, 0.5, 3))


def test_a_labels_csv_is_capped_as_samples_is_and_read_as_it_comes(tmp_path, monkeypatch):
    """A 121 MB CSV of 12 million seeds ran past 4.9 GB (a w kept per row) with no limit; --samples
    has one. The rows are read as they come, so the cap also bounds what reading them takes."""
    from stylelift.editing import learn

    (tmp_path / "l.csv").write_text("".join(f"{i},{i % 2}\n" for i in range(6)))
    assert len(learn.read_labels_csv(tmp_path / "l.csv")[0]) == 6
    monkeypatch.setattr(learn, "MAX_LABELLED", 5)  # (a million in use)
    with pytest.raises(InputError, match="l.csv labels more than 5 items, the most one fit takes"):
        learn.read_labels_csv(tmp_path / "l.csv")
    read = []
    monkeypatch.setattr(learn.csv, "reader", lambda lines: (read.append(1) or row for row in (line.split(",") for line in lines)))
    (tmp_path / "long.csv").write_text("".join(f"{i},{i % 2}\n" for i in range(1000)))
    with pytest.raises(InputError, match="labels more than 5 items"):
        learn.read_labels_csv(tmp_path / "long.csv")
    assert len(read) == 6  # stopped at the cap, not after reading all 1,000 rows (they were read into a list first)
    monkeypatch.undo()
    monkeypatch.setattr(learn, "MAX_LABELS_LINE", 100)  # (a million characters in use)
    (tmp_path / "oneline.csv").write_text("1,0\n" + "9" * 500)
    with pytest.raises(InputError, match="oneline.csv has a line of more than 100 characters"):  # not read whole
        learn.read_labels_csv(tmp_path / "oneline.csv")


def test_a_labels_csv_has_two_columns_and_spreadsheet_trailing_cells_are_fine(tmp_path):
    from stylelift.editing.learn import read_labels_csv

    (tmp_path / "l.csv").write_text("seed,label,\n" + "".join(f"{i},{i % 2},,\n" for i in range(6)))
    items, labels, sampling = read_labels_csv(tmp_path / "l.csv")
    assert items == [str(i) for i in range(6)] and labels.tolist() == [0, 1, 0, 1, 0, 1] and sampling is None
    for text in ("seed,age,gender\n1,30,0\n", "1\n2\n", "1,0,x\n"):
        (tmp_path / "l.csv").write_text(text)
        with pytest.raises(InputError, match=r"l.csv: each row is item,label \(two columns\)"):
            read_labels_csv(tmp_path / "l.csv")


def test_direction_files_that_are_empty_or_damaged_zips_are_one_error_line(tmp_path, net):
    np.save(tmp_path / "empty.npy", np.zeros((1, 0), np.float32))
    (tmp_path / "pk.npy").write_bytes(b"PK\x03\x04junk")
    for name, why in (("empty.npy", "must hold a float array"), ("pk.npy", "not a readable .npy direction")):
        with pytest.raises(InputError, match=why):
            load_direction(tmp_path / name)
        r = invoke("edit", "0", "--direction", tmp_path / name, "--network", net, "--out", tmp_path / "x.png")
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "Traceback" not in r.output and not (tmp_path / "x.png").exists(), r.output


def test_a_direction_is_refused_by_its_header_before_it_is_read_and_its_sidecar_by_its_size(tmp_path):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1, 100_000_000)})
    with open(tmp_path / "sparse.npy", "wb") as out:  # 400 MB of zeros that take no disk: read whole, then "a zero vector"
        out.write(f.getvalue())
        out.truncate(len(f.getvalue()) + 400_000_000)
    with pytest.raises(InputError, match=r"sparse.npy must hold a float array \[1, w_dim\], got float32 \[1, 100000000\]"):
        load_direction(tmp_path / "sparse.npy")
    np.save(tmp_path / "d.npy", np.ones([1, 16], np.float32))
    with pytest.raises(InputError, match="d.npy is a direction in 16-D, but this network's w has 512"):
        load_direction(tmp_path / "d.npy", w_dim=512)
    (tmp_path / "d.json").write_text('{"x": [' + "0," * 600_000 + "0]}")  # 1.2 MB
    with pytest.raises(InputError, match=r"d.json, the sidecar of d.npy, is 1,200,010 bytes, where a sidecar is a few hundred"):
        load_direction(tmp_path / "d.npy")
    (tmp_path / "d.json").unlink()
    np.save(tmp_path / "far.npy", np.full([1, 16], np.longdouble("1e4000")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" was printed before the error line
        with pytest.raises(InputError, match="far.npy holds NaN or infinite values"):
            load_direction(tmp_path / "far.npy")


def test_a_direction_of_python_objects_or_a_header_of_code_is_said_so(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[None] * 16], object), allow_pickle=True)
    with pytest.raises(InputError, match="^o.npy holds Python objects, not numbers"):  # was "claims an array ... the file is damaged"
        load_direction(tmp_path / "o.npy")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': print(1), }"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    (tmp_path / "code.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64))
    with pytest.raises(InputError, match=r"^code.npy is not a readable .npy direction \(a damaged array header\)$"):  # was ast's "<ast.Call object at 0x...>"
        load_direction(tmp_path / "code.npy")


def test_an_unreadable_direction_file_is_said_as_any_unreadable_file(tmp_path, net, monkeypatch):
    import builtins

    vec = np.ones((1, tiny_generator().w_dim))
    save_direction(tmp_path / "d.npy", Direction(vec / np.linalg.norm(vec), {}))
    real_open = builtins.open

    def unreadable(file, *a, **k):  # (as root, a chmod 000 file reads)
        if Path(file) == tmp_path / "d.npy":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", unreadable)
    with pytest.raises(PermissionError):
        load_direction(tmp_path / "d.npy")
    r = invoke("edit", "0", "--direction", tmp_path / "d.npy", "--network", net, "--out", tmp_path / "x.png")
    assert r.exit_code == 1 and " ".join(r.output.split()) == f"error: {tmp_path / 'd.npy'}: Permission denied", r.output


def test_conditioning_on_a_nearly_parallel_direction_is_refused_and_the_saved_normal_has_its_own_accuracy(tmp_path, net):
    G = tiny_generator()
    seeds = [str(s) for s in range(300)]
    w = latents_for_items(G, seeds)[:, 0].double().numpy()
    rule = np.random.default_rng(1).normal(size=G.w_dim)
    (tmp_path / "l.csv").write_text("".join(f"{s},{int(v > 0)}\n" for s, v in zip(seeds, (w - w.mean(0)) @ rule)))
    common = ("directions", "learn", "--attribute", "x", "--labels", tmp_path / "l.csv", "--network", net)
    assert invoke(*common, "--out", tmp_path / "d.npy").exit_code == 0
    d = np.load(tmp_path / "d.npy")
    np.save(tmp_path / "half.npy", d.astype(np.float16))  # the same direction, rounded: what is left is rounding
    np.save(tmp_path / "x3.npy", d * 3)
    for name in ("half.npy", "x3.npy"):
        r = invoke(*common, "--condition", tmp_path / name, "--out", tmp_path / "c.npy")
        assert r.exit_code == 1 and "parallel" in r.output and not (tmp_path / "c.npy").exists(), r.output
    other = np.random.default_rng(4).normal(size=(1, G.w_dim))
    save_direction(tmp_path / "o.npy", Direction(other, {"attribute": "other"}))
    r = invoke(*common, "--condition", tmp_path / "o.npy", "--out", tmp_path / "c.npy")
    assert r.exit_code == 0 and "once conditioned on other" in r.output, r.output
    meta = json.loads((tmp_path / "c.json").read_text())
    plain = json.loads((tmp_path / "d.json").read_text())
    assert meta["accuracy"] == plain["accuracy"] and 0 <= meta["conditioned_accuracy"] <= 1
    bent = condition(d, 0.6 * d / np.linalg.norm(d) + 0.8 * other / np.linalg.norm(other))  # far from d: its accuracy drops
    from stylelift.editing import held_out_accuracy

    labels = ((w - w.mean(0)) @ rule > 0).astype(np.float64)
    assert meta["accuracy"] > 0.9 and held_out_accuracy(w, labels, d) == pytest.approx(fit_boundary(w, labels)[1], abs=0.05)
    assert held_out_accuracy(w, labels, -d) <= max(labels.mean(), 1 - labels.mean()) + 0.1  # pointing the wrong way: no better than one answer
    assert held_out_accuracy(w, labels, bent) < held_out_accuracy(w, labels, d)


def test_the_fitted_threshold_never_splits_equal_values():
    from stylelift.editing.boundary import _best_threshold

    x, positive = np.array([0.0, 1.0, 1.0, 1.0]), np.array([False, False, True, True])
    t = _best_threshold(x, positive)
    assert 0 <= t < 1 and ((x > t) == positive).mean() == 0.75  # above 0: 3 of 4 right; "between" the 1s is no threshold
    x, positive = np.array([2.0, 2.0]), np.array([True, False])
    assert ((x > _best_threshold(x, positive)) == positive).mean() == 0.5
    a = np.nextafter(1.0, 2.0)
    x, positive = np.array([a, np.nextafter(a, 2.0)]), np.array([False, True])  # no float between them: the cut is at the lower
    assert ((x > _best_threshold(x, positive)) == positive).all()


def test_a_labels_csv_names_latent_files_from_its_own_folder_one_latent_each(tmp_path, net, caplog):
    G = tiny_generator()
    (tmp_path / "lat").mkdir()
    rule = np.random.default_rng(2).normal(size=G.w_dim)
    rule /= np.linalg.norm(rule)
    rows = []
    for s in range(80):
        ws = latents_for_items(G, [str(s)]).numpy()
        label = s % 2
        ws[:, 1:] += (3 * label - 1.5) * rule  # the attribute lives in ws 1.. (W+): ws 0 alone does not show it
        save_latents(tmp_path / "lat" / f"s{s}.npz", LatentFile(w=ws))
        rows.append(f"s{s}.npz,{label}\n")
    (tmp_path / "lat" / "l.csv").write_text("".join(rows))
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "lat" / "l.csv", "--network", net, "--out", tmp_path / "d.npy")
    assert r.exit_code == 0 and "80 of the 80 latents are W+" in caplog.text, r.output  # found beside the CSV, not in the current folder
    d = load_direction(tmp_path / "d.npy")
    assert float(d.vector[0] @ rule) > 0.8 and d.meta["accuracy"] == 1.0
    save_latents(tmp_path / "lat" / "two.npz", LatentFile(w=np.concatenate([ws, ws])))
    (tmp_path / "lat" / "l.csv").write_text("".join(rows) + "two.npz,1\n")
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "lat" / "l.csv", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 1 and "two.npz holds 2 latents where one face is asked for" in r.output and not (tmp_path / "e.npy").exists(), r.output
    (tmp_path / "lat" / "l.csv").write_text("".join(rows) + "./s0.npz,1\n")  # s0 again, under another name and label
    r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "lat" / "l.csv", "--network", net, "--out", tmp_path / "e.npy")
    assert r.exit_code == 1 and "./s0.npz is labelled twice" in r.output, r.output
    os.symlink(tmp_path / "lat" / "s0.npz", tmp_path / "lat" / "link.npz")
    os.link(tmp_path / "lat" / "s1.npz", tmp_path / "lat" / "hard.npz")
    for again in ("link.npz,1", "hard.npz,0"):  # the same file by another name and the other label (compared as paths, they were two faces)
        (tmp_path / "lat" / "l.csv").write_text("".join(rows) + again + "\n")
        r = invoke("directions", "learn", "--attribute", "x", "--labels", tmp_path / "lat" / "l.csv", "--network", net, "--out", tmp_path / "e.npy")
        assert r.exit_code == 1 and f"{again.split(',')[0]} is labelled twice" in r.output, r.output


def test_labels_read_a_chunk_at_a_time_give_the_same_direction(tmp_path, monkeypatch):
    from stylelift.editing import learn

    G = tiny_generator()
    ws = latents_for_items(G, ["1", "2"]).numpy()
    save_latents(tmp_path / "a.npz", LatentFile(w=ws[:1]))
    items = [str(s) for s in range(30)] + [str(tmp_path / "a.npz")]
    whole = learn.labelled_w(G, items, truncation_psi=0.7, truncation_cutoff=2, class_idx=None, device="cpu")
    monkeypatch.setattr(learn, "LABELLED_CHUNK", 4)
    assert np.array_equal(learn.labelled_w(G, items, truncation_psi=0.7, truncation_cutoff=2, class_idx=None, device="cpu"), whole)
    truncated = latents_for_items(G, ["5"], truncation_psi=0.7, truncation_cutoff=2)
    assert np.array_equal(whole[5], truncated[0, 0].double().numpy())  # a seed's first ws, as when sampling (not the mean over a cutoff)


def test_label_columns_two_valued_header_only_first_and_quoted_names(tmp_path):
    from stylelift.editing.learn import binarize, read_labels_csv

    keep, labels = binarize(np.array([-1.0, 1, 1, -1]))
    assert keep.tolist() == [0, 1, 2, 3] and labels.tolist() == [0, 1, 1, 0]
    assert binarize(np.array([2.0, 1, 1]))[1].tolist() == [1, 0, 0]
    (tmp_path / "l.csv").write_text("seed,label\n0,female\n1,male\n")
    with pytest.raises(InputError, match="label 'female' is not a number"):
        read_labels_csv(tmp_path / "l.csv")
    (tmp_path / "l.csv").write_text('# made by hand\nitem,label\n"a\nb.npz",1\n1,0\n2,1\n3,0\n')
    items, labels, _ = read_labels_csv(tmp_path / "l.csv")
    assert items[0] == "a\nb.npz" and labels.tolist() == [1, 0, 1, 0]
    (tmp_path / "l.csv").write_text("1," + "9" * 200_000 + "\n")
    with pytest.raises(InputError, match="not a CSV text file .*field larger than field limit"):
        read_labels_csv(tmp_path / "l.csv")


def test_learn_keeps_other_files_its_labels_and_its_sidecar_would_replace(tmp_path, net):
    common = ("directions", "learn", "--attribute", "age", "--samples", "20", "--network", net)
    (tmp_path / "config.json").write_text('{"my": "config"}')
    r = invoke(*common, "--out", tmp_path / "config.npy")
    assert r.exit_code == 1 and "config.json exists" in r.output and (tmp_path / "config.json").read_text() == '{"my": "config"}', r.output
    for labels in ("d.json", "d.npy"):
        r = invoke(*common, "--out", tmp_path / "d.npy", "--save-labels", tmp_path / labels)
        assert r.exit_code == 2 and "--save-labels names the direction file or its sidecar" in r.output, r.output
    (tmp_path / "l.csv").write_text("mine\n")
    r = invoke(*common, "--out", tmp_path / "d.npy", "--save-labels", tmp_path / "l.csv")
    assert r.exit_code == 1 and "l.csv exists; pass --overwrite" in r.output and (tmp_path / "l.csv").read_text() == "mine\n", r.output


def test_a_direction_pair_is_written_whole_and_unit_or_not_at_all(tmp_path, monkeypatch):
    from stylelift.editing import resolve_direction

    save_direction(tmp_path / "x.npy", Direction(np.full([1, 16], 3.0), {"accuracy": float("nan"), "runs": [float("inf"), 1]}))
    assert abs(np.linalg.norm(np.load(tmp_path / "x.npy")) - 1) < 1e-6  # InterFaceGAN's boundary: a unit normal
    assert json.loads((tmp_path / "x.json").read_text()) == {"accuracy": None, "runs": [None, 1]}  # valid JSON, no NaN
    before = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "y.json").mkdir()
    np.save(tmp_path / "y.npy", np.ones([1, 16], np.float32))
    with pytest.raises(InputError, match="y.json is a folder"):
        save_direction(tmp_path / "y.npy", Direction(np.arange(16.0)[None] + 1, {}))
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.ones([1, 16], np.float32))
    (tmp_path / "y.json").rmdir()
    with pytest.raises(InputError, match="the key '1' twice"):  # a sidecar that cannot be written: neither file of the pair is replaced
        save_direction(tmp_path / "x.npy", Direction(-np.ones([1, 16]), {1: "a", "1": "b"}))
    assert (tmp_path / "x.npy").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.npy", "y.npy"]
    G = tiny_generator()
    save_direction(tmp_path / "age", Direction(np.ones([1, G.w_dim]), {"attribute": "mine"}))  # a file named like a shipped direction
    assert resolve_direction(tmp_path / "x.npy", G).meta == {"accuracy": None, "runs": [None, 1]}
    monkeypatch.chdir(tmp_path)
    assert resolve_direction(Path("age"), G).meta == {"attribute": "mine"}  # a Path is a file, not the shipped name


def test_generate_honours_a_noise_mode_given_for_a_latent_file_with_noise_maps(tmp_path, net):
    G = tiny_generator()
    noises = {k: 3 * np.random.default_rng(k).normal(size=[1, layer.resolution, layer.resolution]).astype(np.float32) for k, layer in enumerate(G.synthesis.noise_layers())}
    save_latents(tmp_path / "l.npz", LatentFile(w=latents_for_items(G, ["9"]).numpy(), noises=noises, meta={"network_id": network_id(G)}))
    pictures = {}
    for mode in (None, "const", "none"):
        r = invoke("generate", "--latents", tmp_path / "l.npz", "--network", net, "--outdir", tmp_path / str(mode), *(["--noise-mode", mode] if mode else []))
        assert r.exit_code == 0, r.output
        pictures[mode] = np.asarray(Image.open(tmp_path / str(mode) / "l00.png")).astype(int)
    stored = to_uint8(G.synthesis(torch.from_numpy(load_latents(tmp_path / "l.npz").w), noises=[torch.from_numpy(noises[k])[None] for k in sorted(noises)]))[0]
    assert np.abs(pictures[None] - stored).max() <= 1  # by default the file's own maps
    assert np.abs(pictures["const"] - pictures[None]).max() > 10 and np.abs(pictures["none"] - pictures["const"]).max() > 0  # a mode given is used


def test_a_latent_file_of_several_latents_says_that_only_its_first_is_used(tmp_path, net, caplog):
    G = tiny_generator()
    save_latents(tmp_path / "three.npz", LatentFile(w=latents_for_items(G, ["1", "2", "3"]).numpy(), meta={"network_id": network_id(G)}))
    with caplog.at_level("WARNING"):
        r = invoke("truncation-sweep", "--latents", tmp_path / "three.npz", "--psi", "0.5,1", "--network", net, "--out", tmp_path / "t.png")
    assert r.exit_code == 0 and "three.npz holds 3 latents; only its first is used here" in caplog.text, r.output
    r = invoke("generate", "--latents", tmp_path / ".", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 1 and "is a folder, not a latent file" in r.output, r.output
    r = invoke("mix", "--rows", "1", "--cols", "2", "--network", net, "--out", tmp_path / ".png")
    assert r.exit_code == 2 and "give the file a name before its suffix" in " ".join(r.output.replace("│", " ").split()), r.output


def test_one_frame_of_an_edit_video_is_checked_for_size(tmp_path, net, monkeypatch):
    from stylelift import cli

    G = tiny_generator()
    save_direction(tmp_path / "d.npy", Direction(np.random.default_rng(2).normal(size=[1, G.w_dim]), {}))
    monkeypatch.setattr(cli, "OUTPUT_BYTES", 3 * 16 * 16 * 3 - 1)  # less than three 16-px faces side by side
    r = invoke("edit", "1-3", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--network", net, "--out", tmp_path / "e.mp4")
    assert r.exit_code == 1 and "one frame of the edit would hold 1 images of 48x16" in r.output and not (tmp_path / "e.mp4").exists(), r.output
    assert invoke("edit", "1-2", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--network", net, "--out", tmp_path / "e.mp4").exit_code == 0
    from stylelift import cli_editing

    monkeypatch.setitem(cli_editing.MAX_IMAGE_SIDE, ".mp4", 30)  # (16384: wider frames made ffmpeg fail after the rendering, in words of its own)
    r = invoke("edit", "1-2", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--network", net, "--out", tmp_path / "w.mp4")
    said = "one frame of the edit would be 32x16 pixels, more than a .mp4 holds (30 a side); write a .png or a .gif, or fewer images"
    assert r.exit_code == 1 and said in r.output and not (tmp_path / "w.mp4").exists(), r.output


def test_a_labels_csv_seed_of_thousands_of_digits_is_one_line(tmp_path):
    from stylelift.editing.learn import read_labels_csv

    (tmp_path / "big.csv").write_text("seed,label\n1,0\n2,1\n3,0\n" + "9" * 5000 + ",1\n")
    with pytest.raises(InputError, match=r"big.csv: seed 9{20}\.\.\. is above 4294967295 \(seeds are 32-bit\)"):
        read_labels_csv(tmp_path / "big.csv")  # int() raised ValueError (a traceback)
    (tmp_path / "padded.csv").write_text("seed,label\n1,0\n2,1\n3,0\n" + "0" * 5000 + "4,1\n")
    assert read_labels_csv(tmp_path / "padded.csv")[0] == ["1", "2", "3", "4"]  # seed 0...04 is seed 4 (int() raised on the zeros)


def test_a_latent_file_named_like_a_seed_is_a_file_to_generate(tmp_path, net, monkeypatch):
    monkeypatch.chdir(tmp_path)
    G = tiny_generator()
    save_latents(tmp_path / "12", LatentFile(w=latents_for_items(G, ["3"]).numpy(), meta={}))
    r = invoke("generate", "--latents", "12", "--trunc", "0.5", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 2 and "--trunc applies to seeds" in " ".join(r.output.replace("│", " ").split()), r.output  # it was taken for seed 12, and --trunc ignored
    r = invoke("generate", "--seeds", "0", "--trunc", "1", "--trunc-cutoff", "2", "--network", net, "--outdir", tmp_path / "g")
    assert r.exit_code == 0, r.output  # psi 1 with a cutoff: what a script sweeping psi gives


def test_a_signal_between_a_direction_pair_s_renames_waits_for_both(tmp_path, monkeypatch):
    import signal

    save_direction(tmp_path / "d.npy", Direction(np.ones([1, 16]), {"labeler": "old"}))
    real = os.replace

    def killed_on_first_rename(*args):  # SIGTERM (or a closing terminal) between the two renames
        if not calls:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(args)
        return real(*args)

    def terminated(signum, frame):
        raise SystemExit(128 + signum)

    calls = []
    before = signal.signal(signal.SIGTERM, terminated)
    monkeypatch.setattr(os, "replace", killed_on_first_rename)
    try:
        with pytest.raises(SystemExit):
            save_direction(tmp_path / "d.npy", Direction(np.arange(16.0)[None], {"labeler": "new"}))
    finally:
        signal.signal(signal.SIGTERM, before)
    d = load_direction(tmp_path / "d.npy")
    assert len(calls) == 2 and d.meta["labeler"] == "new" and d.vector[0, 0] == 0  # was the new sidecar beside the old vector
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.npy"]


def test_a_direction_cut_short_by_a_file_size_limit_is_an_error_not_a_half_file(tmp_path):
    """numpy's np.save to a file object wrote a truncated .npy under `ulimit -f` and said nothing."""
    import resource
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom pathlib import Path\nfrom stylelift.editing import Direction, save_direction\n"
            "try:\n    save_direction(Path(sys.argv[1]), Direction(np.ones(512), {}))\nexcept OSError as e:\n    print('refused:', e.filename, e.strerror)\n")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # noqa: E731  (`ulimit -f 1`; the vector takes 2 KB)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.npy")], preexec_fn=limit, capture_output=True, timeout=120)
    assert p.returncode == 0 and p.stdout.decode().strip() == f"refused: {tmp_path / 'd.npy'} File too large", (p.stdout, p.stderr[-500:])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
