"""MobileStyleGAN: the torch modules on tiny random weights (always), the OpenVINO IR reader on a
tiny IR written here (always), and the real network from the random-face wheel (skipped, with the
reason, when the wheel is not installed): against numbers recorded once from OpenVINO's fp32 run,
and against OpenVINO itself when the `openvino` package is installed (W and W+)."""

import copy
import errno
import importlib.metadata
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylelift.models import mobilestylegan_wheel as wheel
from stylelift.models.checkpoint import NetworkNotFoundError, estimate_w_avg
from stylelift.models.mobilestylegan import (
    InverseHaarDWT,
    MobileStyleGAN,
    MobileStyleGANConfig,
    ModulatedDWConv2d,
    exported_band_order,
    modulated_pointwise_conv,
)
from stylelift.models.mobilestylegan_wheel import load_mobilestylegan
from stylelift.models.openvino_ir import IRFormatError, read_ir

try:
    WHEEL_FILES = wheel.wheel_files()
    NO_WHEEL = ""
except NetworkNotFoundError as e:
    WHEEL_FILES, NO_WHEEL = None, str(e)
try:
    import openvino

    NO_OPENVINO = ""
except ImportError:
    openvino, NO_OPENVINO = None, "the openvino package is not installed (pip install openvino) for the live parity check"

needs_wheel = pytest.mark.skipif(bool(NO_WHEEL), reason=f"random-face wheel missing: {NO_WHEEL}")
needs_openvino = pytest.mark.skipif(bool(NO_WHEEL or NO_OPENVINO), reason=NO_WHEEL or NO_OPENVINO)


# ----------------------------------------------------------------------------------------------
# Tiny random networks


def tiny_config(**overrides) -> MobileStyleGANConfig:
    base = dict(z_dim=16, w_dim=16, mapping_layers=2, channels=(16, 16, 8))
    base.update(overrides)
    return MobileStyleGANConfig(**base)


def tiny_mobile(seed: int = 0, **overrides) -> MobileStyleGAN:
    """A small MobileStyleGAN with every weight, bias, noise map and w_avg random."""
    torch.manual_seed(seed)
    G = MobileStyleGAN(tiny_config(**overrides))
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith(("bias", "noise_const", "w_avg")):
                t.copy_(torch.randn_like(t) * 0.3 + (1.0 if "affine" in name else 0.0))
    return G.eval().requires_grad_(False)


def haar_dwt(img: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D Haar DWT, [N, C, 2H, 2W] -> [N, 4C, H, W] with bands LL, LH, HL, HH one after
    the other (LH: high-pass along the height, HL: along the width)."""
    a, b = img[:, :, 0::2, 0::2], img[:, :, 0::2, 1::2]
    c, d = img[:, :, 1::2, 0::2], img[:, :, 1::2, 1::2]
    return torch.cat([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], dim=1) / 2


def exported_style_idwt(ll, lh, hl, hh):
    """The inverse DWT as the exported graph computes it: 2-tap grouped transposed convs along the
    height (stride 2, 1), adds, then along the width (stride 1, 2)."""
    lo, hi = torch.tensor([1.0, 1.0], dtype=ll.dtype) / math.sqrt(2), torch.tensor([1.0, -1.0], dtype=ll.dtype) / math.sqrt(2)
    c = ll.shape[1]

    def up(x, taps, axis):
        kernel = taps.reshape(1, 1, 2, 1) if axis == 0 else taps.reshape(1, 1, 1, 2)
        return F.conv_transpose2d(x, kernel.repeat(c, 1, 1, 1), stride=(2, 1) if axis == 0 else (1, 2), groups=c)

    low = up(up(ll, lo, 0) + up(lh, hi, 0), lo, 1)
    high = up(up(hl, lo, 0) + up(hh, hi, 0), hi, 1)
    return low + high


def test_inverse_haar_dwt_inverts_the_haar_dwt_both_ways():
    img = torch.randn(2, 3, 10, 6, dtype=torch.float64)
    assert torch.allclose(InverseHaarDWT()(haar_dwt(img)), img, atol=1e-12)
    bands = torch.randn(2, 12, 5, 3, dtype=torch.float64)
    assert torch.allclose(haar_dwt(InverseHaarDWT()(bands)), bands, atol=1e-12)


def test_inverse_haar_dwt_equals_the_exported_transposed_conv_form():
    bands = torch.randn(2, 4 * 5, 4, 7, dtype=torch.float64)
    ll, lh, hl, hh = bands.chunk(4, dim=1)
    assert torch.allclose(InverseHaarDWT()(bands), exported_style_idwt(ll, lh, hl, hh), atol=1e-12)


def test_inverse_haar_dwt_backward_is_the_forward_dwt():
    bands = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(InverseHaarDWT(), (bands,))
    out = InverseHaarDWT()(bands)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, bands, g)
    assert torch.allclose(grad, haar_dwt(g), atol=1e-12)


def test_exported_band_order_turns_interleaved_high_bands_into_band_major():
    assert exported_band_order(2) == [0, 1, 2, 5, 3, 6, 4, 7]
    c = 3
    exported = torch.randn(1, 4 * c, 4, 4, dtype=torch.float64)  # LL of all c, then (LH, HL, HH) per channel
    high = exported[:, c:].reshape(1, c, 3, 4, 4)
    expected = exported_style_idwt(exported[:, :c], high[:, :, 0], high[:, :, 1], high[:, :, 2])
    assert torch.allclose(InverseHaarDWT()(exported[:, exported_band_order(c)]), expected, atol=1e-12)


def test_modulated_depthwise_separable_conv_matches_modulate_then_two_plain_convs():
    torch.manual_seed(1)
    conv = ModulatedDWConv2d(8, 12, w_dim=16, kernel_size=3)
    x = torch.randn(3, 8, 6, 5, dtype=torch.float64)
    w = torch.randn(3, 16, dtype=torch.float64)
    bias, noise = torch.randn(12, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    conv = conv.double()
    y = conv(x, w, bias, noise=noise, slope=0.2)
    assert y.shape == (3, 12, 6, 5)
    s = conv.affine(w)
    assert s.shape == (3, 8)
    ref = F.conv2d(x * s[:, :, None, None], conv.weight_dw, padding=1, groups=8)
    ref = F.conv2d(ref, conv.weight_permute[:, :, None, None], bias) + noise
    assert torch.allclose(y, F.leaky_relu(ref, 0.2), atol=1e-12)
    assert torch.allclose(conv(x, w), F.conv2d(F.conv2d(x * s[:, :, None, None], conv.weight_dw, padding=1, groups=8), conv.weight_permute[:, :, None, None]), atol=1e-12)


def test_modulated_pointwise_conv_gradients_are_exact():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: modulated_pointwise_conv(*a, noise=noise, slope=0.2), (x, styles, weight, bias))
    assert torch.autograd.gradcheck(lambda *a: modulated_pointwise_conv(*a), (x, styles, weight))


def test_tiny_network_shapes_num_ws_and_layer_resolutions():
    G = tiny_mobile()
    assert (G.num_ws, G.img_resolution, G.img_channels, G.c_dim) == (8, 32, 3, 0)
    assert G.layer_resolutions == [4, 8, 8, 8, 16, 16, 16, 32]
    assert G.synthesis.noise_layers() == []
    ws = G.mapping(torch.randn(3, 16))
    assert ws.shape == (3, 8, 16) and ws.dtype == torch.float32
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 32, 32) and img.is_contiguous() and torch.isfinite(img).all()
    assert torch.equal(G(torch.zeros(1, 16)), G.synthesis(G.mapping(torch.zeros(1, 16))))


def test_style_affines_are_registered_in_ws_order():
    G = tiny_mobile()
    shapes = [tuple(w.shape) for w in G.synthesis.style_affine_weights()]
    # conv1 (16 in), b8 (up: 16 sub-band channels, conv1: 4 in, conv2: 16 in), b16 (16, 4, 8), to_img (8 in)
    assert shapes == [(c, 16) for c in (16, 16, 4, 16, 16, 4, 8, 8)]
    assert G.synthesis.output_resolutions == [16, 32]


def test_half_resolution_output_is_exactly_the_area_downsampled_image():
    G = tiny_mobile()
    ws = G.mapping(torch.randn(2, 16))
    full, half = G.synthesis(ws), G.synthesis(ws, out_res=16)
    assert half.shape == (2, 3, 16, 16)
    assert torch.allclose(half, F.avg_pool2d(full, 2), atol=1e-6)
    assert torch.equal(G.synthesis(ws, out_res=32), full)


def test_w_plus_with_equal_ws_is_w_and_every_ws_reaches_the_image():
    G = tiny_mobile()
    ws = G.mapping(torch.randn(1, 16))
    assert torch.equal(G.synthesis(ws), G.synthesis(ws[:, :1].expand(-1, G.num_ws, -1).clone()))
    ws = torch.randn(2, G.num_ws, 16, requires_grad=True)
    G.synthesis(ws).square().mean().backward()
    assert (ws.grad.abs().sum(dim=2) > 0).all(), "some ws do not affect the image"


def test_batch_gives_the_same_images_as_one_by_one():
    G = tiny_mobile()
    ws = torch.randn(3, G.num_ws, 16)
    batch = G.synthesis(ws)
    singles = torch.cat([G.synthesis(ws[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, singles, atol=1e-5)


def test_renders_and_backpropagates_under_a_callers_autocast():
    # autocast hands the custom pointwise Function half-precision pixels beside float32 weights
    G = tiny_mobile()
    ws = torch.randn(2, G.num_ws, 16)
    expected = G.synthesis(ws)
    ws.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G.synthesis(ws)
    img.float().sum().backward()
    assert (img.float() - expected).abs().max() < 0.1 and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_non_cpu_path_runs_forward_and_backward():
    # The GPU path (no row blocks), checked for shapes on the meta device; no GPU needed.
    G = tiny_mobile().to("meta")
    ws = torch.randn(2, G.num_ws, 16, device="meta", requires_grad=True)
    img = G.synthesis(ws)
    img.sum().backward()
    assert img.shape == (2, 3, 32, 32) and ws.grad.shape == ws.shape
    assert G.synthesis(ws.detach(), out_res=16).shape == (2, 3, 16, 16)


def test_truncation_moves_toward_w_avg():
    G = tiny_mobile()
    z = torch.randn(2, 16)
    assert torch.allclose(G.mapping(z, truncation_psi=0), G.w_avg.expand(2, G.num_ws, -1))
    ws, cut = G.mapping(z), G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], G.w_avg.lerp(ws[:, :3], 0.5)) and torch.equal(cut[:, 3:], ws[:, 3:])


def test_bad_inputs_are_refused_with_clear_messages():
    G = tiny_mobile()
    ws = torch.randn(1, G.num_ws, 16)
    with pytest.raises(ValueError, match=r"\[N, 8, 16\]"):
        G.synthesis(torch.randn(1, 7, 16))
    with pytest.raises(ValueError, match="out_res"):
        G.synthesis(ws, out_res=8)
    with pytest.raises(ValueError, match="noise inputs"):
        G.synthesis(ws, noises=[torch.zeros(4, 4)])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")
    assert torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noises=[]))  # accepted, no noise inputs
    with pytest.raises(ValueError, match="z must"):
        G.mapping(torch.randn(1, 5))


def test_config_round_trips_and_bad_configs_are_refused():
    cfg = tiny_config()
    assert MobileStyleGANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        MobileStyleGANConfig.from_dict({**cfg.to_dict(), "surprise": 1})
    for bad in (dict(channels=(16, 10, 8)), dict(c_dim=3), dict(kernel_size=2)):
        with pytest.raises(ValueError):
            tiny_config(**bad)
    G = tiny_mobile()
    G2 = MobileStyleGAN(MobileStyleGANConfig.from_dict(G.config.to_dict()))
    G2.load_state_dict(G.state_dict(), strict=True)


# ----------------------------------------------------------------------------------------------
# The IR reader, on a tiny IR written here


TINY_IR = """<?xml version="1.0" ?>
<net name="tiny" version="10">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="1, 4" element_type="f32"/>
      <output><port id="0" precision="FP32" names="x"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="1" name="shift" type="Const" version="opset1">
      <data element_type="f32" shape="1, 4" offset="8" size="16"/>
      <output><port id="0" precision="FP32"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="2" name="axis" type="Const" version="opset1">
      <data element_type="i64" shape="1" offset="0" size="8"/>
      <output><port id="0" precision="I64"><dim>1</dim></port></output>
    </layer>
    <layer id="3" name="add" type="Add" version="opset1">
      <data auto_broadcast="numpy"/>
      <input><port id="0"><dim>1</dim><dim>4</dim></port><port id="1"><dim>1</dim><dim>4</dim></port></input>
      <output><port id="2" precision="FP32"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="4" name="out" type="Result" version="opset1">
      <input><port id="0"><dim>1</dim><dim>4</dim></port></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="3" to-port="0"/>
    <edge from-layer="1" from-port="0" to-layer="3" to-port="1"/>
    <edge from-layer="3" from-port="2" to-layer="4" to-port="0"/>
  </edges>
</net>
"""


def write_tiny_ir(tmp_path, xml: str = TINY_IR):
    (tmp_path / "tiny.xml").write_text(xml)
    (tmp_path / "tiny.bin").write_bytes(np.array([7], "<i8").tobytes() + np.array([1.5, -2, 0.25, 3], "<f4").tobytes())
    return tmp_path / "tiny.xml"


def test_ir_reader_reads_layers_edges_and_constants(tmp_path):
    g = read_ir(write_tiny_ir(tmp_path))
    assert (g.name, g.version, len(g.layers), len(g.edges)) == ("tiny", 10, 5, 3)
    add = g.layers[3]
    assert [layer.name for layer in g.inputs(add)] == ["x", "shift"]
    assert g.producer(add, 1).name == "shift" and g.consumers(g.layers[0]) == [add]
    assert np.array_equal(g.const_input(add, 1), np.array([[1.5, -2, 0.25, 3]], np.float32))
    assert g.const(2).dtype == np.int64 and g.const(2).tolist() == [7]
    assert [layer.id for layer in g.topological_order()].index(3) > 1
    assert g.ancestors(4) == {0, 1, 3} and g.descendants(0) == {3, 4}
    assert add.output_shape() == (1, 4) and g.parameters()[0].output_shape() == (1, 4)


def test_ir_reader_refuses_constants_outside_the_bin_and_unknown_versions(tmp_path):
    g = read_ir(write_tiny_ir(tmp_path, TINY_IR.replace('offset="8" size="16"', 'offset="16" size="16"')))
    with pytest.raises(IRFormatError, match="past the end"):
        g.const(1)
    with pytest.raises(IRFormatError, match="version 7"):
        read_ir(write_tiny_ir(tmp_path, TINY_IR.replace('version="10"', 'version="7"')))


# ----------------------------------------------------------------------------------------------
# The missing wheel and the cache


def test_missing_wheel_raises_not_found_with_the_pip_command(monkeypatch):
    def no_such_package(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(wheel.importlib.metadata, "files", no_such_package)
    with pytest.raises(NetworkNotFoundError, match=re.escape("pip install --no-deps random-face==2021.7.21.1")) as info:
        load_mobilestylegan()
    assert isinstance(info.value, FileNotFoundError)


def test_unreadable_or_foreign_cache_files_are_ignored(tmp_path):
    path = tmp_path / "mobile-ffhq-x.pt"
    path.write_bytes(b"not a torch file")
    assert wheel._load_cache(path, "0" * 64) is None
    G = tiny_mobile()
    wheel._save_cache(G, path, {"source sha256": "a" * 64})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written in place, no temporary left
    assert wheel._load_cache(path, "b" * 64) is None  # other source files
    loaded = wheel._load_cache(path, "a" * 64)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), G.state_dict().values()))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # in some weight's bytes: it loaded as other weights
    path.write_bytes(bytes(data))
    assert wheel._load_cache(path, "a" * 64) is None  # converted again


@needs_wheel
def test_a_cache_folder_that_cannot_be_written_costs_a_conversion_not_the_run(mobile, monkeypatch, tmp_path, caplog):
    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache"))

    monkeypatch.setenv("STYLELIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wheel, "_save_cache", read_only)
    G = load_mobilestylegan()
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), mobile.state_dict().values()))
    assert "could not cache the converted network" in caplog.text and "Read-only file system" in caplog.text


@needs_wheel
def test_a_folder_in_the_cache_file_s_place_costs_a_conversion_and_killed_writes_are_cleared(mobile, monkeypatch, tmp_path, caplog):
    import os

    monkeypatch.setenv("STYLELIFT_CACHE", str(tmp_path / "cache"))
    path = wheel.cache_file(wheel.source_digest(wheel.wheel_files()))
    assert path.name.endswith(f"-v{wheel.CACHE_VERSION}.pt")  # two stylelift versions sharing a cache converted over each other's file
    path.mkdir(parents=True)
    killed = path.parent / f".{wheel.SOURCE_NAME}-0123456789abcdef-v1.tmp-99999.pt"  # a run killed outright while writing
    killed.write_bytes(b"half")
    os.utime(killed, (0, 0))
    G = load_mobilestylegan()  # the folder was the run's end: "is a folder; name the file to write"
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), mobile.state_dict().values()))
    assert "could not cache the converted network" in caplog.text and not killed.exists()


@needs_wheel
def test_no_home_folder_for_the_cache_costs_a_conversion_not_the_run(mobile, monkeypatch, caplog):
    from stylelift.errors import InputError
    from stylelift.models import download

    def no_home():
        raise InputError("no cache folder: ~/.cache is in a home folder this machine cannot find; set STYLELIFT_CACHE to a folder")

    monkeypatch.setattr(download, "cache_dir", no_home)
    G = load_mobilestylegan()
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), mobile.state_dict().values()))
    assert "converting the bundled network without caching it" in caplog.text and G.source_info["converted weights"] is None


# ----------------------------------------------------------------------------------------------
# The real network (random-face wheel)

# Recorded once from OpenVINO 2026.4.1, CPU, {'INFERENCE_PRECISION_HINT': 'f32'}, for
# z = np.random.RandomState(2021).randn(1, 512) (float32) through both IR networks.
REF_W_HEAD = [-0.030629, -0.230586, 0.615177, 0.183117, -0.309494, -0.071837]
REF_CHANNEL_MEANS = [-0.046486, -0.219592, -0.222402]
REF_CHANNEL_STDS = [0.598054, 0.490535, 0.548364]
REF_PIXELS = {  # (y, x): RGB
    (0, 0): [-0.027627, 0.1715, 0.407621],
    (1, 1): [-0.101304, 0.136974, 0.424415],
    (100, 900): [-0.799591, -0.819277, -0.868694],
    (511, 512): [0.480117, 0.046705, -0.003162],
    (512, 511): [0.484635, 0.070274, 0.009604],
    (700, 300): [0.339053, -0.0395, -0.153193],
    (1023, 1023): [-0.584671, -0.719039, -0.739218],
    (333, 666): [0.531418, 0.158337, 0.07456],
}


@pytest.fixture(scope="module")
def mobile(tmp_path_factory):
    if NO_WHEEL:
        pytest.skip(f"random-face wheel missing: {NO_WHEEL}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLELIFT_CACHE", str(tmp_path_factory.mktemp("cache")))
        G = load_mobilestylegan()
        yield G


@pytest.fixture(scope="module")
def reference_run(mobile):
    z = torch.from_numpy(np.random.RandomState(2021).randn(1, 512).astype(np.float32))
    with torch.no_grad():
        ws = mobile.mapping(z)
        return z, ws, mobile.synthesis(ws)


@needs_wheel
def test_interface_matches_the_stylegan2_generator(mobile):
    G = mobile
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (512, 0, 512, 23, 1024, 3)
    assert G.w_avg.shape == (512,) and all(p.dtype == torch.float32 for p in G.state_dict().values())
    assert G.layer_resolutions == [4] + [r for r in (8, 16, 32, 64, 128, 256, 512) for _ in range(3)] + [1024]
    assert G.synthesis.noise_layers() == [] and not any(p.requires_grad for p in G.parameters())
    assert (G.source, G.source_format) == ("mobile-ffhq", "openvino-ir") and "licence" in G.source_info
    assert G.config.channels == (512, 512, 512, 512, 512, 256, 128, 64)
    with pytest.raises(dataclasses_frozen_error()):
        G.config.w_dim = 3


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@needs_wheel
def test_matches_numbers_recorded_from_openvino_fp32(reference_run):
    _, ws, img = reference_run
    assert np.allclose(ws[0, 0, :6].numpy(), REF_W_HEAD, atol=1e-5)
    assert np.allclose(img[0].mean(dim=(1, 2)).numpy(), REF_CHANNEL_MEANS, atol=2e-5)
    assert np.allclose(img[0].std(dim=(1, 2)).numpy(), REF_CHANNEL_STDS, atol=2e-5)
    for (y, x), rgb in REF_PIXELS.items():
        assert np.allclose(img[0, :, y, x].numpy(), rgb, atol=2e-4), (y, x)


@needs_wheel
def test_cached_load_does_not_parse_the_ir_again(mobile, monkeypatch):
    def no_parsing(*args):
        raise AssertionError("the IR was parsed although the converted weights are cached")

    monkeypatch.setattr(wheel, "import_mobilestylegan", no_parsing)
    cache = Path(mobile.source_info["converted weights"])
    G = load_mobilestylegan()
    assert Path(G.source_info["converted weights"]) == cache and list(cache.parent.iterdir()) == [cache]
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), mobile.state_dict().values()))


@needs_wheel
def test_w_avg_is_the_mean_of_10000_mapped_z(mobile):
    assert torch.allclose(mobile.w_avg, estimate_w_avg(mobile, n=10_000), atol=1e-6)


def openvino_synthesis(per_affine_inputs: bool):
    """The synthesis IR compiled by OpenVINO in fp32; with `per_affine_inputs`, each style affine
    (MatMul) reads its own new Parameter `style_<k>`, k being its ws index worked out here from the
    exported layer names (independently of the importer's graph walk)."""
    root = ET.parse(WHEEL_FILES["SynthesisNetwork.xml"]).getroot()
    if per_affine_inputs:
        layers = {el.get("id"): el for el in root.iter("layer")}
        (style,) = [el for el in layers.values() if el.get("type") == "Parameter"]
        weight_name = {e.get("to-layer"): layers[e.get("from-layer")].get("name") for e in root.iter("edge") if e.get("to-port") == "1"}
        next_id = max(int(i) for i in layers) + 1
        for edge in root.iter("edge"):
            if edge.get("from-layer") == style.get("id") and layers[edge.get("to-layer")].get("type") == "MatMul":
                k = ws_index_of(weight_name[edge.get("to-layer")])
                param = copy.deepcopy(style)
                param.set("id", str(next_id))
                param.set("name", f"style_{k}")
                for port in param.iter("port"):
                    port.set("names", f"style_{k}")
                root.find("layers").append(param)
                edge.set("from-layer", str(next_id))
                next_id += 1
    core = openvino.Core()
    weights = openvino.Tensor(np.fromfile(WHEEL_FILES["SynthesisNetwork.bin"], dtype=np.uint8))
    model = core.read_model(model=ET.tostring(root, encoding="unicode"), weights=weights)
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def ws_index_of(affine_weight_name: str) -> int:
    """ws index of an affine from its name in the export (the paper's code: m.conv1, m.layers.{i}.{up,conv1,conv2,to_img})."""
    if affine_weight_name == "m.conv1.conv.modulation.weight":
        return 0
    m = re.fullmatch(r"m\.layers\.(\d+)\.(up|conv1\.conv|conv2\.conv|to_img\.conv)\.modulation\.weight", affine_weight_name)
    assert m, affine_weight_name
    i, layer = int(m.group(1)), m.group(2)
    return 22 if layer == "to_img.conv" else 3 * i + {"up": 1, "conv1.conv": 2, "conv2.conv": 3}[layer]


@needs_openvino
def test_matches_openvino_fp32_for_one_w(reference_run):
    z, ws, img = reference_run
    core = openvino.Core()
    mapping = core.compile_model(core.read_model(str(WHEEL_FILES["MappingNetwork.xml"])), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    w_ov = mapping.create_infer_request().infer({0: z.numpy()})[mapping.outputs[0]]
    assert np.abs(ws[0, 0].numpy() - w_ov[0]).max() < 1e-4
    synthesis = openvino_synthesis(per_affine_inputs=False)
    img_ov = synthesis.create_infer_request().infer({0: ws[:, 0].numpy()})[synthesis.outputs[0]]
    assert np.abs(img.numpy() - img_ov).max() <= 1e-3


@needs_openvino
def test_matches_openvino_fp32_with_a_different_w_per_affine(mobile):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ws = mobile.mapping(torch.randn(mobile.num_ws, 512, generator=gen))[:, 0].unsqueeze(0)  # [1, 23, 512], all different
        img = mobile.synthesis(ws)
    synthesis = openvino_synthesis(per_affine_inputs=True)
    feed = {"style": ws[:, 0].numpy()} | {f"style_{k}": ws[:, k].numpy() for k in range(mobile.num_ws)}
    img_ov = synthesis.create_infer_request().infer(feed)[synthesis.outputs[0]]
    assert np.abs(img.numpy() - img_ov).max() <= 1e-3


# OpenVINO 2026.4 running the wheel's own SynthesisNetwork IR in fp32, each style affine fed its own
# w (the input of test_matches_openvino_fp32_with_a_different_w_per_affine): the image's mean over
# each 256x256 tile, per channel [3, 4, 4]. Recorded so that the W+ layer order is checked without
# openvino installed (feeding the ws in reverse order moves these by up to 0.98).
OPENVINO_TILE_MEANS = [
    [[0.3379, -0.4035, -0.2973, 0.5066], [-0.1871, 0.3006, 0.3581, 0.1195], [0.0342, 0.8057, 0.5156, 0.0800], [0.0251, 0.5780, 0.2083, 0.1927]],
    [[0.2627, -0.5073, -0.4718, 0.3121], [-0.2588, -0.0659, -0.0166, -0.0522], [-0.1231, 0.2304, -0.0040, -0.1145], [-0.1561, 0.0679, -0.2194, -0.0197]],
    [[0.1936, -0.5476, -0.5598, 0.0878], [-0.2824, -0.1709, -0.1482, -0.2315], [-0.2066, 0.1269, -0.0967, -0.2636], [-0.2946, -0.1281, -0.3303, -0.1500]],
]


def test_w_plus_rows_reach_the_layers_the_openvino_graph_gives_them(mobile):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ws = mobile.mapping(torch.randn(mobile.num_ws, 512, generator=gen))[:, 0].unsqueeze(0)  # [1, 23, 512], all different
        tiles = F.avg_pool2d(mobile.synthesis(ws), 256)[0]
    assert torch.allclose(tiles, torch.tensor(OPENVINO_TILE_MEANS), atol=5e-4)
