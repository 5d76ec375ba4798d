import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config, tiny_generator
from stylelift.errors import InputError
from stylelift.models.stylegan2 import (
    Generator,
    StyleGAN2Config,
    fir_filter_2d,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("resolution", [4, 8, 32])
def test_output_shape_and_num_ws_for_every_architecture_and_resolution(architecture, resolution):
    G = tiny_generator(architecture=architecture, img_resolution=resolution)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2 == G.config.num_ws
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, resolution, resolution)
    assert torch.isfinite(img).all()


def test_num_ws_is_18_at_1024_and_channels_follow_base_and_max():
    cfg = StyleGAN2Config(img_resolution=1024)
    assert cfg.num_ws == 18
    assert cfg.block_channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert StyleGAN2Config(img_resolution=64, channel_base=16384).block_channels[64] == 256


def test_explicit_channel_widths_override_base():
    G = tiny_generator(channels=(8, 6, 4))
    assert G.synthesis.b16.conv1.weight.shape == (4, 4, 3, 3)
    assert G.synthesis.b8.conv0.weight.shape == (6, 8, 3, 3)
    assert G(torch.randn(1, 16)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("bad", [dict(img_resolution=48), dict(img_resolution=2048), dict(architecture="fancy"), dict(channels=(4, 4))])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        tiny_config(**bad)


def test_config_round_trips_through_dict():
    cfg = tiny_config(channels=(8, 6, 4), conv_clamp=256.0, architecture="resnet", c_dim=3)
    assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        StyleGAN2Config.from_dict({**cfg.to_dict(), "surprise": 1})


def test_const_noise_is_deterministic_and_random_noise_is_not(G):
    ws = G.mapping(torch.randn(2, G.z_dim))
    a, b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(a, b)
    r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert not torch.equal(r1, r2)
    none = G.synthesis(ws, noise_mode="none")
    assert (none - a).abs().max() > 1e-3  # noise strengths are non-zero in the fixture


def test_explicit_noise_maps_equal_to_the_constants_reproduce_const_mode(G):
    ws = G.mapping(torch.randn(1, G.z_dim))
    noises = [layer.noise_const.clone() for layer in G.synthesis.noise_layers()]
    assert torch.equal(G.synthesis(ws, noises=noises), G.synthesis(ws, noise_mode="const"))
    assert torch.equal(G.synthesis(ws, noises=[None] * len(noises)), G.synthesis(ws, noise_mode="const"))  # None: that input follows noise_mode
    with pytest.raises(InputError, match="a list of 5 maps, one per noise input, got 4"):
        G.synthesis(ws, noises=noises[:-1])
    for k, bad, why in ((0, torch.zeros(3, 3), r"noise map 0 must be a float tensor \[1, 1, 4, 4\], got torch.float32 \[3, 3\]"),
                        (1, np.zeros([8, 8]), "noise map 1 must be a float tensor"), (2, torch.zeros(2, 1, 8, 8), r"\[2, 1, 8, 8\]"),
                        (2, torch.zeros(1, 2, 8, 8), r"\[1, 2, 8, 8\]")):
        with pytest.raises(InputError, match=why):
            G.synthesis(ws, noises=[bad if i == k else m for i, m in enumerate(noises)])


def test_truncation_arithmetic(G):
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=0), G.w_avg.expand_as(ws))
    half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(half, G.w_avg + 0.5 * (ws - G.w_avg), atol=1e-6)
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], half[:, :3]) and torch.equal(cut[:, 3:], ws[:, 3:])


def test_w_is_broadcast_to_all_layers_and_generator_equals_mapping_then_synthesis(G):
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    assert torch.equal(G(z, truncation_psi=0.7), G.synthesis(G.mapping(z, truncation_psi=0.7)))


def test_mapping_checks_z(G):
    from stylelift import InputError

    for z in (torch.randn(2, G.z_dim + 1), torch.randn(G.z_dim), torch.randn(1, 2, G.z_dim), np.zeros([1, G.z_dim]), torch.randn(1, G.z_dim, dtype=torch.complex64)):
        with pytest.raises(InputError, match=f"z must be a real tensor of shape \\[N, {G.z_dim}\\]"):
            G.mapping(z, None)


def test_mapping_normalises_z_so_its_scale_does_not_matter(G):
    z = torch.randn(2, G.z_dim)
    assert torch.allclose(G.mapping(z), G.mapping(z * 7.0), atol=1e-5)


def test_each_w_plus_row_reaches_the_layers_nvidia_gives_it(G):
    """Block 4 reads ws[0] (conv1) and ws[1] (toRGB); block 8 ws[1] (conv0), ws[2] (conv1), ws[3] (toRGB); ..."""
    expected = {"b4.conv1": 0, "b4.torgb": 1}
    for k, res in enumerate(G.synthesis.block_resolutions[1:], start=1):
        expected.update({f"b{res}.conv0": 2 * k - 1, f"b{res}.conv1": 2 * k, f"b{res}.torgb": 2 * k + 1})
    assert G.num_ws == max(expected.values()) + 1
    seen = {}
    hooks = [
        module.affine.register_forward_hook(lambda m, inputs, out, name=name: seen.__setitem__(name, inputs[0].clone()))
        for name, module in G.synthesis.named_modules()
        if hasattr(module, "affine")
    ]
    ws = torch.randn(2, G.num_ws, G.w_dim)  # every row different
    G.synthesis(ws)
    for h in hooks:
        h.remove()
    assert set(seen) == set(expected)
    for name, row in expected.items():
        assert torch.equal(seen[name], ws[:, row]), name


# NVIDIA stylegan2-ada-pytorch's own Generator (training/networks.py, force_fp32, noise_mode const,
# resample filter [1, 3, 3, 1]) loaded with tiny_generator(architecture=...)'s weights, z of seed 7, psi 0.8:
# its output image at flat indices 0, 97, 255, 300, 511, 640, 767, and its mean and std. stylelift gave
# the same image bit for bit when these were recorded (benchmarks/parity_reference.py does this at full size).
NVIDIA_OUTPUTS = {
    "skip": ([-0.82975, -3.56601, -3.12093, -1.36486, -1.64405, 0.56526, 0.66219], -1.276505, 1.652671),
    "resnet": ([0.22859, 0.05387, -0.31686, 0.7869, 0.5596, -0.16166, 0.05033], 0.257235, 0.65384),
    "orig": ([0.17429, 0.13372, 0.26541, 0.47429, 0.60561, -0.34024, -0.30238], 0.135076, 0.39602),
}


@pytest.mark.parametrize("architecture", sorted(NVIDIA_OUTPUTS))
def test_generator_matches_numbers_recorded_from_nvidias_code(architecture):
    from stylelift.generation import z_from_seed

    G = tiny_generator(architecture=architecture)
    img = G.synthesis(G.mapping(torch.from_numpy(z_from_seed(7, G.z_dim)), truncation_psi=0.8)).flatten()
    values, mean, std = NVIDIA_OUTPUTS[architecture]
    assert torch.allclose(img[[0, 97, 255, 300, 511, 640, 767]], torch.tensor(values), atol=2e-5)
    assert abs(img.mean().item() - mean) < 2e-6 and abs(img.std().item() - std) < 2e-6


def test_conditional_network_needs_and_uses_the_label():
    G = tiny_generator(c_dim=4)
    z = torch.randn(1, G.z_dim)
    c0, c1 = F.one_hot(torch.tensor([0]), 4).float(), F.one_hot(torch.tensor([1]), 4).float()
    assert not torch.allclose(G(z, c0), G(z, c1))
    assert "mapping.embed.weight" in G.state_dict()
    for c, got in ((None, "none"), (c0[:, :3], r"\(1, 3\)"), (torch.cat([c0, c1]), r"\(2, 4\)")):
        with pytest.raises(InputError, match=rf"conditional: c must be a label tensor of shape \[1, 4\].*got {got}"):
            G(z, c)


def test_conv_clamp_bounds_the_pre_activation_outputs():
    G = tiny_generator(conv_clamp=0.05)
    img = G(torch.randn(2, G.z_dim))
    # The skip image is a sum of clamped toRGB outputs: at most 0.05 per block.
    assert img.abs().max() <= 0.05 * len(G.config.block_resolutions) + 1e-6


def test_bad_ws_shape_is_a_clear_error(G):
    with pytest.raises(ValueError, match=r"ws must be a real tensor of shape \[N, 6, 16\]"):
        G.synthesis(torch.zeros(1, 5, 16))


def test_synthesis_is_differentiable_in_ws_and_noise(G):
    ws = G.mapping(torch.randn(1, G.z_dim)).requires_grad_(True)
    noises = [layer.noise_const.clone().requires_grad_(True) for layer in G.synthesis.noise_layers()]
    G.synthesis(ws, noises=noises).square().mean().backward()
    assert ws.grad.abs().sum() > 0 and all(n.grad is not None and n.grad.abs().sum() > 0 for n in noises)


# --- the primitives against naive implementations -----------------------------------------------


def naive_upfirdn(x: np.ndarray, f: np.ndarray, up: int, pad, gain: float) -> np.ndarray:
    n, c, h, w = x.shape
    u = np.zeros([n, c, h * up, w * up], x.dtype)
    u[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, [(0, 0), (0, 0), (py0, py1), (px0, px1)])
    k = f * gain
    kh, kw = k.shape
    out = np.zeros([n, c, u.shape[2] - kh + 1, u.shape[3] - kw + 1])
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            # true convolution: flipped kernel
            out[:, :, i, j] = (u[:, :, i : i + kh, j : j + kw] * k[::-1, ::-1]).sum(axis=(2, 3))
    return out


def test_fir_filter_is_normalised_outer_product():
    f = fir_filter_2d((1, 3, 3, 1))
    assert f.shape == (4, 4) and abs(f.sum().item() - 1) < 1e-7
    assert torch.allclose(f[0], torch.tensor([1, 3, 3, 1]) / 64.0)


def test_upfirdn2d_matches_a_naive_loop():
    x = torch.randn(1, 2, 5, 6)
    f = torch.rand(4, 4)
    ours = upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4)
    ref = naive_upfirdn(x.numpy().astype(np.float64), f.numpy().astype(np.float64), 2, (2, 1, 2, 1), 4)
    assert ours.shape == (1, 2, 10, 12)
    assert np.abs(ours.numpy() - ref).max() < 1e-5


def test_upsample2d_of_a_constant_is_constant_inside():
    x = torch.full([1, 1, 6, 6], 2.0)
    y = upsample2d(x, fir_filter_2d((1, 3, 3, 1)))
    assert y.shape == (1, 1, 12, 12)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 2.0))


def test_fused_modulated_conv_equals_scaling_activations_then_demodulating():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    fused = modulated_conv2d(x, weight, styles)
    y = F.conv2d(x * styles[:, :, None, None], weight, padding=1)
    d = ((weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8).rsqrt()
    assert torch.allclose(fused, y * d[:, :, None, None], atol=1e-5)
    # demodulation makes each output feature map's weights unit-norm: scale-invariant in styles
    assert torch.allclose(modulated_conv2d(x, weight, styles * 10), fused, atol=1e-5)


def test_upsampling_modulated_conv_equals_transposed_conv_then_blur():
    torch.manual_seed(2)
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    f = fir_filter_2d((1, 3, 3, 1))
    out = modulated_conv2d(x, weight, styles, up=True, filter_2d=f)
    assert out.shape == (2, 3, 10, 10)
    for i in range(2):
        w = weight * styles[i][None, :, None, None]
        w = w * (w.square().sum([1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        y = F.conv_transpose2d(x[i : i + 1], w.transpose(0, 1), stride=2)  # 11x11
        y = upfirdn2d(y, f, pad=(1, 1, 1, 1), gain=4)
        assert torch.allclose(out[i : i + 1], y, atol=1e-5)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_with_style_gradients_matches_the_grouped_conv(up, demodulate):
    # with gradients into the styles but a frozen weight (projection), the unfused form runs;
    # its values and its gradients must be those of the grouped (inference) form
    torch.manual_seed(3)
    x, weight = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3)
    f = fir_filter_2d((1, 3, 3, 1))
    styles = torch.randn(2, 4, requires_grad=True)
    out = modulated_conv2d(x, weight, styles, up=up, demodulate=demodulate, filter_2d=f)
    (grad,) = torch.autograd.grad(out.square().sum(), styles)
    ref_styles = styles.detach().requires_grad_(True)
    ref = modulated_conv2d(x, weight.clone().requires_grad_(True), ref_styles, up=up, demodulate=demodulate, filter_2d=f)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), ref_styles)
    with torch.no_grad():
        inference = modulated_conv2d(x, weight, styles, up=up, demodulate=demodulate, filter_2d=f)
    assert torch.allclose(out, inference, atol=1e-5) and torch.allclose(ref, inference, atol=1e-5)
    assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)
    assert grad.abs().max() > 0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("taps", [(1, 1), (1, 3, 3, 1), (1, 2, 1), (1, 3, 5, 5, 3, 1)])
def test_up_conv_with_the_filter_folded_into_its_kernel_is_the_same_conv(k, taps):
    from stylelift.models.stylegan2 import conv_up2, conv_up2_folded, fold_filter_into_up_kernel

    torch.manual_seed(k)
    f = fir_filter_2d(taps).double()
    weight, x = torch.randn(3, 2, k, k, dtype=torch.float64), torch.randn(2, 2, 5, 6, dtype=torch.float64)
    kernel = fold_filter_into_up_kernel(weight, f)
    if len(taps) % 2:  # lopsided padding: not foldable into one transposed conv
        assert kernel is None
        return
    assert kernel.shape == (3, 2, k + len(taps) - 1, k + len(taps) - 1)
    ref = conv_up2(x, weight, f)
    out = conv_up2_folded(x, kernel)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("op_order", ["nvidia", "rosinality"])
@pytest.mark.parametrize("fold", [False, True])
def test_frozen_layer_caches_its_weight_and_follows_changes_to_it(up, op_order, fold, monkeypatch):
    # a frozen layer under optimisation convolves with a cached copy of its weight (for the up-conv,
    # with fold, as on a GPU: with the filter folded in); values and style gradients must match the
    # unfrozen layer's, also after the weight changes
    from stylelift.models import stylegan2
    from stylelift.models.stylegan2 import SynthesisLayer

    monkeypatch.setattr(stylegan2, "fold_up_filter", lambda device: fold)

    torch.manual_seed(5)
    layer = SynthesisLayer(4, 3, 8, 12 if up else 6, up=up, use_noise=False, conv_clamp=None, op_order=op_order)
    x, f = torch.randn(2, 4, 6, 6), fir_filter_2d((1, 3, 3, 1))
    w = torch.randn(2, 8)

    def run(frozen: bool):
        layer.requires_grad_(not frozen)
        ws = w.clone().requires_grad_(True)
        out = layer(x, ws, f)
        (g,) = torch.autograd.grad(out.square().sum(), ws)
        return out.detach(), g

    with stylegan2.frozen_weights_kept(layer):
        for change in range(2):
            (out, grad), (ref, ref_grad) = run(frozen=True), run(frozen=False)
            assert layer._frozen_cache is not None and layer._frozen_cache[3] == (fold and up)
            assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)
            with torch.no_grad():
                layer.weight.mul_(-0.5)  # in place: the cache must notice
    assert layer._frozen_cache is None and not layer.keep_frozen
    before, _ = run(frozen=True)
    layer.weight.data.mul_(-1)  # through .data, which torch does not count: outside the block nothing was kept to go stale
    out, ref = run(frozen=True)[0], run(frozen=False)[0]
    assert torch.allclose(out, ref, atol=1e-5) and not torch.allclose(out, before, atol=1e-2) and layer._frozen_cache is None


@pytest.mark.parametrize("up", [False, True])
def test_frozen_layer_lays_out_its_weight_for_the_device(up, monkeypatch):
    # oneDNN (CPU) is fastest on channels-last and with the filter as a separate pass, cuDNN on NCHW
    # with it folded into the up-conv's kernel (measured on an H200); the "meta" device stands in
    # for a CUDA one here (shapes only): the non-CPU branch runs forward and backward
    from stylelift.models import stylegan2
    from stylelift.models.stylegan2 import SynthesisLayer

    assert stylegan2.fold_up_filter(torch.device("cuda")) and not stylegan2.fold_up_filter(torch.device("cpu"))
    monkeypatch.setattr(stylegan2, "fold_up_filter", lambda device: device.type in ("cuda", "meta"))

    for device in ("cpu", "meta"):
        layer = SynthesisLayer(4, 3, 8, 12 if up else 6, up=up, use_noise=False, conv_clamp=None).to(device).requires_grad_(False)
        ws = torch.randn(2, 8, device=device, requires_grad=True)
        with stylegan2.frozen_weights_kept(layer):
            out = layer(torch.randn(2, 4, 6, 6, device=device), ws, fir_filter_2d((1, 3, 3, 1)).to(device))
            laid, folded = layer._frozen_cache[1], layer._frozen_cache[3]
        assert out.shape == (2, 3, 12 if up else 6, 12 if up else 6)
        out.sum().backward()
        assert ws.grad.shape == ws.shape
        assert folded == (up and device != "cpu") and laid.shape[-1] == (6 if folded else 3)
        convolved = laid.transpose(0, 1) if up else laid  # conv_transpose2d takes the transpose
        fmt = torch.channels_last if device == "cpu" else torch.contiguous_format
        assert convolved.is_contiguous(memory_format=fmt)
        assert (device == "cpu") == (out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous())


def test_rosinality_op_order_changes_only_the_last_bits():
    G = tiny_generator()
    R = Generator(tiny_config(op_order="rosinality")).eval()
    R.load_state_dict(G.state_dict())
    z = torch.randn(2, G.z_dim)
    a, b = G(z, truncation_psi=0.6), R(z, truncation_psi=0.6)
    assert 0 < (a - b).abs().max() < 1e-4
    with pytest.raises(ValueError, match="op_order"):
        tiny_config(op_order="tensorflow")


@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_with_gradients_matches_the_plain_ops(clamp):
    from stylelift.models.stylegan2 import bias_act

    torch.manual_seed(4)
    x = torch.randn(2, 5, 6, 6, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = bias_act(x, b, lrelu=True, gain=math.sqrt(2), clamp=clamp)
    gx, gb = torch.autograd.grad((y * torch.randn_like(y)).sum(), [x, b])
    x2, b2 = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
    ref = F.leaky_relu(x2 + b2[None, :, None, None], 0.2) * math.sqrt(2)
    if clamp is not None:
        ref = ref.clamp(-clamp, clamp)
    torch.manual_seed(4)
    torch.randn(2, 5, 6, 6), torch.randn(5)  # the same weighting as above
    rx, rb = torch.autograd.grad((ref * torch.randn_like(ref)).sum(), [x2, b2])
    assert torch.equal(y, ref)
    assert torch.allclose(gx, rx, atol=1e-6) and torch.allclose(gb, rb, atol=1e-5)
    if clamp is not None:
        assert (gx == 0).any()  # clipped values pass no gradient


def test_a_network_without_noise_inputs_lists_none_and_its_projections_render(tmp_path):
    # NVIDIA's use_noise=False: noise_layers() listed every conv, so the projector optimised maps
    # the network ignores and rendering its latent file read their (absent) noise_const
    from stylelift import LatentFile, project, save_latents
    from stylelift.generation import item_noises, render_ws

    G = tiny_generator(use_noise=False)
    assert G.synthesis.noise_layers() == [] and not any("noise" in k for k in G.state_dict())
    ws = G.mapping(torch.randn(2, G.z_dim))
    const = G.synthesis(ws)
    assert torch.equal(G.synthesis(ws, noise_mode="random"), const) and torch.equal(G.synthesis(ws, noises=[]), const)
    with pytest.raises(InputError, match="noise"):
        G.synthesis(ws, noises=[torch.zeros(4, 4)])
    result = project(G, const[:1], steps=2, loss="mse")
    assert result.noises is None
    save_latents(tmp_path / "p.npz", LatentFile(w=result.ws.numpy(), meta={}))
    assert item_noises(G, [str(tmp_path / "p.npz"), "0"], "cpu") is None
    assert render_ws(G, result.ws)[0].shape == (16, 16, 3)
    old = {k: np.zeros([r, r], np.float32) for k, r in enumerate([4, 8, 8, 16, 16])}  # what earlier versions saved for it
    save_latents(tmp_path / "old.npz", LatentFile(w=result.ws.numpy(), noises=old, meta={}))
    assert item_noises(G, [str(tmp_path / "old.npz")], "cpu") is None  # left out: they change nothing
    from typer.testing import CliRunner

    from stylelift import save_generator
    from stylelift.cli import app

    save_generator(G, tmp_path / "net.pt")
    from stylelift.editing import Direction, save_direction

    save_direction(tmp_path / "d.npy", Direction(np.ones([1, G.w_dim], np.float32), {}))
    for args in (["truncation-sweep", "--latents", tmp_path / "old.npz", "--psi", "0.5,1", "--out", tmp_path / "t.png"],
                 ["edit", tmp_path / "old.npz", "--direction", tmp_path / "d.npy", "--strength", "0,1", "--out", tmp_path / "e.png"],
                 ["generate", "--latents", tmp_path / "old.npz", "--outdir", tmp_path / "g"]):
        r = CliRunner().invoke(app, [*map(str, args), "--network", str(tmp_path / "net.pt")])
        assert r.exit_code == 0, (args[0], r.output)  # edit and the sweep raised IndexError in noises_by_item
