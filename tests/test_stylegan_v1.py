"""StyleGAN (v1): the generator, NVIDIA's TensorFlow pickles of it, and the rest of stylelift on it."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import pickle_fixtures as pf
from pickle_fixtures import one_thread  # noqa: F401  (fixture)
from stylelift import load_generator, load_latents, project, save_generator
from stylelift.cli import app
from stylelift.errors import CheckpointError
from stylelift.generation import stored_noises
from stylelift.models import describe_generator, network_id
from stylelift.models.stylegan import StyleGAN, StyleGANConfig
from stylelift.projector.metrics import psnr

# 128 px with NVIDIA's fused_scale='auto': nearest-neighbour up-sampling + conv up to 64 px, one
# transposed conv at 128 px; widths as fmap_base=256, fmap_max=16 give them.
REFERENCE_CFG = StyleGANConfig(
    z_dim=10, w_dim=12, img_resolution=128, mapping_layers=3, mapping_layer_features=9,
    channels=(16, 16, 16, 16, 8, 4), fused_min_resolution=128,
)  # fmt: skip


def one_line(e) -> str:
    return str(e.value).strip()


def test_nvidia_tensorflow_pickle_reproduces_the_reference_port(tmp_path):
    """The numbers below were computed outside this repository by genforce's PyTorch port of
    NVIDIA's StyleGAN (its converter checks it against NVIDIA's TensorFlow code), fed the same TF
    variables (`stylegan_tf_variables` of this network); max difference over the whole images 2e-5."""
    path = pf.write_nvidia_stylegan(tmp_path / "karras2019.pkl", pf.random_stylegan(REFERENCE_CFG, seed=0))
    G = load_generator(path)
    assert isinstance(G, StyleGAN) and G.config == REFERENCE_CFG and G.source_format == "nvidia-tensorflow"
    z = torch.from_numpy(np.random.RandomState(1).standard_normal([2, 10]).astype(np.float32))
    wp = torch.from_numpy(np.random.RandomState(2).standard_normal([2, 12, 12]).astype(np.float32))
    with torch.no_grad():
        from_z = G.synthesis(G.mapping(z, truncation_psi=0.7, truncation_cutoff=4))
        from_wp = G.synthesis(wp)  # W+: another w for every layer
    expected = {
        "z": ([[2.66984, -0.72431, 1.12062], [2.79315, -0.47171, 1.35429]], [2.72306, -1.80696, -0.13243], [2.43897, -1.38603, 3.32256]),
        "wp": ([[1.41654, -0.66058, -0.27154], [-0.13537, -0.37725, -1.64308]], [1.67972, 0.05532, -0.26473], [0.97768, 5.30895, -4.0051]),
    }
    for name, img in (("z", from_z), ("wp", from_wp)):
        means, pixel_a, pixel_b = (torch.tensor(x) for x in expected[name])
        assert torch.allclose(img.mean(dim=[2, 3]), means, atol=2e-4), name
        assert torch.allclose(img[0, :, 10, 20], pixel_a, atol=2e-4) and torch.allclose(img[1, :, 127, 0], pixel_b, atol=2e-4), name


def test_fused_up_sampling_is_nearest_neighbour_then_the_flipped_conv():
    """NVIDIA's fused up-sampling (a transposed conv with the 4x4 sums of the 3x3 kernel) is not the
    separate path with the same weights: it equals it with each up-sampling kernel flipped in space."""
    fused = pf.random_stylegan(pf.tiny_stylegan_config(fused_min_resolution=8))
    separate = StyleGAN(pf.tiny_stylegan_config(fused_min_resolution=2048)).eval()
    state = fused.state_dict()
    separate.load_state_dict({k: v.flip(2, 3) if k.endswith("conv0.weight") else v for k, v in state.items()})
    ws = fused.mapping(torch.randn(2, 10))
    a, b = fused.synthesis(ws), separate.synthesis(ws)
    assert a.shape == (2, 3, 32, 32) and a.std() > 0.1
    assert torch.allclose(a, b, atol=1e-4)
    separate.load_state_dict(state)
    assert (separate.synthesis(ws) - a).abs().max() > 0.1


def test_layers_noise_and_truncation():
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    assert G.num_ws == 8 and G.layer_resolutions == [4, 4, 8, 8, 16, 16, 32, 32]
    assert [layer.resolution for layer in G.synthesis.noise_layers()] == G.layer_resolutions
    assert [tuple(w.shape) for w in G.synthesis.style_affine_weights()] == [(24, 12), (24, 12), (20, 12), (20, 12), (16, 12), (16, 12), (12, 12), (12, 12)]
    ws = G.mapping(torch.randn(1, 10))
    const, none = G.synthesis(ws), G.synthesis(ws, noise_mode="none")
    explicit = G.synthesis(ws, noises=[layer.noise_const[None, None] for layer in G.synthesis.noise_layers()])
    assert torch.equal(const, explicit) and (const - none).abs().max() > 1e-3
    assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    z = torch.randn(3, 10)
    full, cut = G.mapping(z), G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.w_avg + 0.5 * (full[:, :2] - G.w_avg), atol=1e-5) and torch.equal(cut[:, 2:], full[:, 2:])
    with pytest.raises(ValueError, match=r"ws must be a real tensor of shape \[N, 8, 12\]"):
        G.synthesis(torch.zeros(1, 18, 12))


def test_stylelift_format_round_trip_keeps_outputs_and_network_id(tmp_path):
    G = load_generator(pf.write_nvidia_stylegan(tmp_path / "v1.pkl", pf.random_stylegan(pf.tiny_stylegan_config())))
    save_generator(G, tmp_path / "v1.pt")
    H = load_generator(tmp_path / "v1.pt")
    assert isinstance(H, StyleGAN) and H.config == G.config and H.source_format == "stylelift"
    ws = G.mapping(torch.randn(2, 10))
    assert torch.equal(G.synthesis(ws), H.synthesis(ws))
    assert network_id(G) == network_id(H) and network_id(G).startswith("stylegan-")
    facts = describe_generator(H)
    assert facts["architecture"].startswith("StyleGAN (v1") and facts["num_ws"] == 8 and facts["noise inputs"] == 8


@pytest.mark.parametrize("fused_min_resolution", [8, 2048])  # NVIDIA's fused_scale True / False
def test_network_without_noise_inputs_and_without_blur(tmp_path, fused_min_resolution):
    cfg = pf.tiny_stylegan_config(use_noise=False, blur_filter=(), fused_min_resolution=fused_min_resolution)
    G = pf.random_stylegan(cfg)
    assert G.synthesis.noise_layers() == [] and G.synthesis.blur_filter is None
    H = load_generator(pf.write_nvidia_stylegan(tmp_path / "plain.pkl", G))
    assert H.config == cfg
    ws = G.mapping(torch.randn(2, 10))
    assert torch.allclose(H.synthesis(ws), G.synthesis(ws), atol=1e-5)
    blurred = StyleGAN(dataclasses.replace(cfg, blur_filter=(1, 2, 1))).eval()
    blurred.load_state_dict(G.state_dict())
    assert (blurred.synthesis(ws) - G.synthesis(ws)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v, kw: v.update({"lod": np.float32(1.5)}), "snapshot taken during progressive growing (lod=1.5)"),
        (lambda v, kw: v.update({"synthesis/lod": np.float32(2)}), "(lod=2)"),
        (lambda v, kw: kw.update(label_size=3), "conditional StyleGAN network"),
        (lambda v, kw: kw.update(use_instance_norm=False), "use_instance_norm=False are not supported"),
        (lambda v, kw: kw.update(mystery_knob=1), "unknown StyleGAN network setting 'mystery_knob'"),
        (lambda v, kw: kw.update(fused_scale="sometimes"), "fused_scale is 'sometimes'"),
        (lambda v, kw: kw.update(resolution=64), "do not match resolution=64"),
        (lambda v, kw: v.pop("synthesis/16x16/Conv1/StyleMod/bias"), "16x16/Conv1/StyleMod/bias is missing"),
        (lambda v, kw: v.update({"synthesis/16x16/Conv2/weight": np.ones([3, 3, 8, 8], np.float32)}), "unexpected TensorFlow variables synthesis/16x16/Conv2/weight"),
        (lambda v, kw: v.update({"synthesis/8x8/Conv1/bias": np.ones([7], np.float32)}), "wrong shape synthesis.b8.conv1.bias [7]"),
        (lambda v, kw: v.update({"synthesis/4x4/Conv/weight": np.ones([3, 3], np.float32)}), "4x4/Conv/weight has shape [3, 3]"),
        (lambda v, kw: kw.update(use_noise=False), "use_noise=False does not match"),
        (lambda v, kw: kw.update(blur_filter=[1, 10**30, 1]), "blur_filter must list up to 16 integer taps from 0 to 65536"),
        (lambda v, kw: kw.update(mapping_lrmul=1e300), "mapping_lr_multiplier must be a number above 0 and at most 100"),
        (lambda v, kw: kw.update(resolution=10**40), "resolution 10000000000000000000 is not a power of two"),
        (lambda v, kw: v.update({"mapping/Dense2/weight": np.float32(1)}), "mapping/Dense2/weight has shape []"),
        (lambda v, kw: v.update({"synthesis/4x4/Const/const": np.ones([10, 4, 4], np.float32)}), "4x4/Const/const has shape [10, 4, 4]"),
        (lambda v, kw: v.update({"lod": np.zeros([2], np.float32)}), "TensorFlow variable lod is not one number"),
        (lambda v, kw: v.update({"synthesis/ToRGB_lod4/bias": np.zeros([3], np.float32)}), "unexpected TensorFlow variables synthesis/ToRGB_lod4/bias"),
        (lambda v, kw: v.update({"synthesis/8x8/Conv1/bias": np.ones([10], np.complex64)}), "8x8/Conv1/bias holds complex64, not floating-point"),
    ],
)
def test_bad_stylegan_pickles_are_refused_in_one_line(tmp_path, change, message):
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    v, kw = pf.stylegan_tf_variables(G), pf.stylegan_tf_kwargs(G.config)
    change(v, kw)
    path = pf.write_nvidia_stylegan(tmp_path / "bad.pkl", G, variables=v, static_kwargs=kw)
    with pytest.raises(CheckpointError) as e:
        load_generator(path)
    assert message in one_line(e) and "\n" not in one_line(e)


@pytest.mark.parametrize("field, value, message", [
    ("version", "3", "network version '3' is not supported"),
    ("version", 5, "network version 5 is not supported"),
    ("build_func_name", "G_style2", "built by 'G_style2', not G_style"),
])  # fmt: skip
def test_stylegan_networks_of_other_versions_or_builders_are_refused(tmp_path, field, value, message):
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    nets = pf.nvidia_stylegan_networks(G)
    nets[2]._state[field] = value
    with pytest.raises(CheckpointError) as e:
        load_generator(pf.dump(nets, tmp_path / "odd.pkl", protocol=3))
    assert message in one_line(e)


def test_a_variable_stored_twice_is_refused(tmp_path):
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    nets = pf.nvidia_stylegan_networks(G)
    synthesis = nets[2]._state["components"]["synthesis"]
    synthesis._state["variables"] = synthesis._state["variables"] + synthesis._state["variables"][-1:]
    with pytest.raises(CheckpointError, match="is stored twice"):
        load_generator(pf.dump(nets, tmp_path / "twice.pkl", protocol=3))


def test_a_stylegan_network_saved_by_the_stylegan2_code_is_read(tmp_path):
    """StyleGAN2's config A is StyleGAN's G_style, pickled by StyleGAN2's dnnlib (network version 4)."""
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    H = load_generator(pf.write_nvidia_stylegan(tmp_path / "config-a.pkl", G, version=4))
    ws = G.mapping(torch.randn(1, 10))
    assert torch.allclose(G.synthesis(ws), H.synthesis(ws), atol=1e-6)


# --- the commands ---------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_generate_project_and_mix_work_on_a_stylegan_pickle(tmp_path):
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    G.synthesis.torgb.weight.mul_(0.15), G.synthesis.torgb.bias.mul_(0.1)  # images mostly inside [-1, 1], as a trained network's
    net = pf.write_nvidia_stylegan(tmp_path / "karras2019.pkl", G)
    r = invoke("info", net)
    assert r.exit_code == 0 and "StyleGAN (v1" in r.output and "fused (transposed conv) at 8, 16, 32 px, blur [1, 2, 1]" in r.output, r.output
    r = invoke("generate", "--network", net, "--seeds", "3", "--trunc", "0.7", "--outdir", tmp_path / "gen")
    assert r.exit_code == 0, r.output
    photo = tmp_path / "gen" / "seed0003.png"
    with Image.open(photo) as im:
        assert im.size == (32, 32)

    r = invoke("project", photo, "--network", net, "--steps", "60", "--no-align", "--loss", "mse", "--no-video", "--outdir", tmp_path / "proj")
    assert r.exit_code == 0, r.output
    lf = load_latents(tmp_path / "proj" / "seed0003.npz")
    assert lf.w.shape == (1, 8, 12) and sorted(lf.noises) == list(range(8))
    H = load_generator(net)
    again = H.synthesis(torch.from_numpy(lf.w), noises=stored_noises(H, lf.noises, "cpu"))
    with Image.open(tmp_path / "proj" / "seed0003_proj.png") as im:
        saved = np.asarray(im)
    assert np.array_equal((again.permute(0, 2, 3, 1)[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy(), saved)
    metrics = json.loads((tmp_path / "proj" / "seed0003_metrics.json").read_text())
    assert metrics["psnr"] > 16, metrics  # about 8 dB at the start, 19 after these 60 steps

    r = invoke("mix", "--network", net, "--rows", "1,2", "--cols", f"{tmp_path / 'proj' / 'seed0003.npz'},5", "--styles", "coarse", "--out", tmp_path / "mix.png")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "mix.png") as im:
        assert im.size == (3 * 32, 3 * 32)


def test_projection_recovers_an_image_the_network_made():
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    torch.manual_seed(5)
    target = G.synthesis(G.mapping(torch.randn(1, 10), truncation_psi=0.7))
    r = project(G, target, space="w+", steps=200, optimize_noise=False, loss="mse")
    assert float(psnr(r.image, target)[0]) > 25
    assert r.history[-1]["loss"] < r.history[0]["loss"] / 10


# --- rosinality's StyleGAN port (style-based-gan-pytorch) ------------------------------------------


def rosinality_file(tmp_path, G, name="train_step-3.model", *, legacy=True, bare=False, **kw):
    sd = pf.rosinality_stylegan_state_dict(G, **kw)
    ckpt = sd if bare else {"generator": sd, "discriminator": {}, "g_optimizer": {}, "d_optimizer": {}, "g_running": sd}
    return pf.write_torch(tmp_path / name, ckpt, legacy=legacy)


@pytest.mark.parametrize("legacy, bare", [(True, False), (False, True)])
def test_rosinality_stylegan_checkpoint_reads_back_the_same_network(tmp_path, legacy, bare):
    """Names and scales inverted by the fixture, so a scale wrong in both would pass here: the
    reader's agreement with rosinality's own code (whose channel widths are fixed at 512 and up, too
    big for a test) is measured by benchmarks/parity_stylegan_v1.py --rosinality-repo: 1.8e-3 apart
    at 1024 px, where rosinality's own float32 output is 1.4e-3 from its float64 output."""
    cfg = pf.rosinality_stylegan_config()
    G = pf.random_stylegan(cfg)
    G.synthesis.b4.conv0.bias.zero_()  # rosinality's constant layer has no bias
    H = load_generator(rosinality_file(tmp_path, G, legacy=legacy, bare=bare))
    assert isinstance(H, StyleGAN) and H.config == cfg and H.source_format == "rosinality"
    assert H.source_info["trained resolution"] == 32
    layers = H.synthesis.noise_layers()
    assert all(torch.equal(a.noise_const, b.noise_const) for a, b in zip(layers[::2], layers[1::2]))  # one map per block
    ws = G.mapping(torch.randn(2, 12))
    assert torch.allclose(H.mapping(torch.ones(1, 12)), G.mapping(torch.ones(1, 12)), atol=1e-5)
    noises = [torch.randn(1, 1, layer.resolution, layer.resolution) for layer in layers]
    assert torch.allclose(H.synthesis(ws, noises=noises), G.synthesis(ws, noises=noises), atol=1e-4)
    assert torch.allclose(H.w_avg, G.mapping(torch.randn(10_000, 12, generator=torch.Generator().manual_seed(0)))[:, 0].mean(0), atol=1e-3)


def test_rosinality_settings_change_the_image():
    """Both of rosinality's differences from NVIDIA (the up-sampling bias before the blur, whose zero
    padding then weakens it at the borders; InstanceNorm2d's epsilon) are honoured, not ignored."""
    cfg = pf.rosinality_stylegan_config()
    G = pf.random_stylegan(cfg)
    ws = G.mapping(torch.randn(1, 12))
    for change in ({"bias_before_blur": False}, {"instance_norm_eps": 1e-8}):
        H = StyleGAN(dataclasses.replace(cfg, **change)).eval()
        H.load_state_dict(G.state_dict())
        assert (H.synthesis(ws) - G.synthesis(ws)).abs().max() > 1e-4, change


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda sd: [sd.__setitem__(k, torch.zeros_like(v)) for k, v in list(sd.items()) if k.startswith("generator.to_rgb") and k.endswith("bias")], "no trained resolution"),
        (lambda sd: sd.__setitem__("generator.progression.1.mystery", torch.ones(1)), "unexpected tensors for a rosinality StyleGAN generator: generator.progression.1.mystery"),
        (lambda sd: sd.pop("generator.progression.2.adain2.style.linear.bias"), "tensor generator.progression.2.adain2.style.linear.bias is missing"),
        (lambda sd: sd.__setitem__("generator.progression.2.conv2.conv.weight_orig", torch.ones(8, 8)), "conv2.conv.weight_orig has shape [8, 8]"),
        (lambda sd: sd["generator.to_rgb.3.conv.bias"].fill_(float("nan")), "synthesis.torgb.bias holds NaN or infinite values"),  # not read as a 16-px network
        (lambda sd: [sd.pop(k) for k in ("style.3.linear.weight_orig", "style.3.linear.bias")], "unexpected tensors for a rosinality StyleGAN generator: style.5.linear.bias"),
        (lambda sd: sd.__setitem__("generator.progression.1.conv2.conv.bias", torch.ones(10, dtype=torch.int64)), "conv2.conv.bias holds int64, not floating-point"),
        (lambda sd: sd.__setitem__("generator.progression.0.conv1.input", torch.ones(2, 12, 4, 4)), "conv1.input has shape [2, 12, 4, 4]"),
        (lambda sd: sd.__setitem__("generator.progression.2.conv1.1.conv.weight_orig", torch.ones(8, 10, 3, 3)), "unexpected tensors for a rosinality StyleGAN generator: generator.progression.2.conv1.1.conv.weight_orig"),
        (lambda sd: sd.__setitem__("generator.progression.1.conv1.2.weight", torch.zeros(1).expand(20000, 20000)), "they share their data more than any network file does"),  # 1.6 GB of views of 4 bytes
    ],
)
def test_bad_rosinality_stylegan_checkpoints_are_refused_in_one_line(tmp_path, change, message):
    sd = pf.rosinality_stylegan_state_dict(pf.random_stylegan(pf.rosinality_stylegan_config()))
    change(sd)
    with pytest.raises(CheckpointError) as e:
        load_generator(pf.write_torch(tmp_path / "bad.model", sd))
    assert message in one_line(e) and "\n" not in one_line(e)


def test_a_rosinality_training_checkpoint_without_a_generator_state_is_refused(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_generator(pf.write_torch(tmp_path / "odd.model", {"generator": {}, "g_running": [1, 2]}))
    assert one_line(e) == "odd.model: g_running is not a state dict of generator tensors"


def test_an_empty_batch_of_ws_is_refused_in_words():
    G = pf.random_stylegan(pf.tiny_stylegan_config())
    with pytest.raises(ValueError, match=r"ws holds no latents \(N = 0\)"):
        G.synthesis(torch.zeros(0, 8, 12))


def test_the_public_api_is_importable_from_the_package():
    import stylelift

    for name in stylelift.__all__:
        assert getattr(stylelift, name) is not None, name
    assert stylelift.project.__module__ == "stylelift.projector.project" and stylelift.StyleGAN is StyleGAN


def rosinality_8px_state() -> dict:
    """The first two blocks (4 and 8 px, 512 channels: rosinality's widths are fixed) and a 2-layer
    mapping of rosinality's StyledGenerator, every tensor from RandomState(0) in key order, the blur
    buffers as rosinality makes them. 9.6M numbers: the smallest file its code can run."""
    C = W = 512
    shapes = {f"style.{2 * j + 1}.linear.{p}": s for j in range(2) for p, s in (("weight_orig", (W, W)), ("bias", (W,)))}
    shapes["generator.progression.0.conv1.input"] = (1, C, 4, 4)
    shapes |= {"generator.progression.1.conv1.1.conv.weight_orig": (C, C, 3, 3), "generator.progression.1.conv1.1.conv.bias": (C,)}
    for i in range(2):
        b = f"generator.progression.{i}"
        for k in (1, 2):
            shapes |= {f"{b}.noise{k}.weight_orig": (1, C, 1, 1), f"{b}.adain{k}.style.linear.weight_orig": (2 * C, W), f"{b}.adain{k}.style.linear.bias": (2 * C,)}
        shapes |= {f"{b}.conv2.conv.weight_orig": (C, C, 3, 3), f"{b}.conv2.conv.bias": (C,)}
        shapes |= {f"generator.to_rgb.{i}.conv.weight_orig": (3, C, 1, 1), f"generator.to_rgb.{i}.conv.bias": (3,)}
    rng = np.random.RandomState(0)
    sd = {k: torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for k, s in sorted(shapes.items())}
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    sd["generator.progression.1.conv1.2.weight"] = blur.expand(C, 1, 3, 3).clone()
    sd["generator.progression.1.conv1.2.weight_flip"] = blur.expand(C, 1, 3, 3).clone()
    return sd


def test_rosinality_stylegan_checkpoint_reproduces_rosinalitys_own_code(tmp_path):
    """Numbers computed outside this repository by rosinality's model.py (`StyledGenerator(512,
    n_mlp=2)`, this state dict, `forward(z, noise, step=1, alpha=1)`); stylelift was 9.8e-6 away
    over the whole images. Independent of the fixture that inverts stylelift's reader."""
    path = tmp_path / "train_step-1.model"
    torch.save(rosinality_8px_state(), path)
    G = load_generator(path)
    assert G.img_resolution == 8 and G.config.mapping_layers == 2
    rng = np.random.RandomState(1)
    z = torch.from_numpy(rng.standard_normal([2, 512]).astype(np.float32))
    noise = [torch.from_numpy(rng.standard_normal([1, 1, r, r]).astype(np.float32)) for r in (4, 8)]
    with torch.no_grad():
        img = G.synthesis(G.mapping(z), noises=[n for n in noise for _ in range(2)])  # one map per block, as rosinality
    means = torch.tensor([[0.0311, -0.1348, 5.5597], [0.7182, -3.525, 5.1226]])
    assert torch.allclose(img.mean(dim=[2, 3]), means, atol=1e-3)
    assert torch.allclose(img[0, :, 2, 5], torch.tensor([0.0047, 6.9972, 7.9137]), atol=1e-3)
    assert torch.allclose(img[1, :, 7, 0], torch.tensor([4.9444, 0.0289, 4.9865]), atol=1e-3)


def test_random_stylegan_networks_are_known_by_name():
    G = load_generator("random-stylegan-64")
    assert isinstance(G, StyleGAN) and G.config.channels == (512, 512, 512, 512, 256) and G.num_ws == 10
    assert network_id(G) == network_id(load_generator("random-stylegan-64"))  # the same weights every time
