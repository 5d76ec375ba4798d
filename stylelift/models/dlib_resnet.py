"""dlib's face descriptor network (`dlib_face_recognition_resnet_model_v1.dat`) in torch.

The network (King 2017; defined in dlib's `examples/dnn_face_recognition_ex.cpp`) maps a 150x150
RGB face chip, cut by `dlib.get_face_chip(img, shape5, size=150, padding=0.25)`, to a 128-D
descriptor; two faces whose descriptors are closer than 0.6 (Euclidean) are the same person by
dlib's convention. It is a small ResNet whose batch norms were frozen into per-channel `affine`
layers:

    input   150 px, (pixel - channel mean) / 256          [N, 3, 150, 150]
    stem    conv 7x7/2 (no padding), affine, relu, max-pool 3x3/2   -> [N,  32, 35, 35]
    stage1  3 residual blocks                                       -> [N,  32, 35, 35]
    stage2  1 down-sampling + 3 residual blocks                     -> [N,  64, 17, 17]
    stage3  1 down-sampling + 2 residual blocks                     -> [N, 128,  8,  8]
    stage4  1 down-sampling + 2 residual blocks                     -> [N, 256,  4,  4]
    stage5  1 down-sampling block                                   -> [N, 256,  2,  2]
    head    global average pool, fully connected 256 -> 128, no bias -> [N, 128]

(dlib's names: stage1 = `alevel4` ... stage5 = `alevel0`.) A residual block is conv 3x3, affine,
relu, conv 3x3, affine, plus the shortcut, then relu. A down-sampling block's first conv has
stride 2 and no padding, and its shortcut is a 2x2/2 average pool of the input. The two branches
do not always have the same shape (more channels after the conv; at stage4 the conv gives 3x3 while
the pool gives 4x4): dlib's `add_prev` then adds them as if the smaller were zero-padded at the end
of each axis, which `add_zero_padded` reproduces.

The file is dlib's own serialization (`dlib/serialize.h`, `dlib/dnn/core.h`, `layers.h`), read
by `read_dlib_net` without dlib:
- integers: one control byte (low 4 bits: how many bytes follow; bit 7: negative), then that
  many bytes of the magnitude, little-endian; a string is its length as such an integer, then
  its bytes; a bool is the character '1' or '0'; a float is two integers, a mantissa and an
  exponent (value = mantissa * 2**exponent; exponents 32000-32002 mean inf, -inf, nan);
- a tensor: version 2, then num_samples, k, nr, nc, then the values as little-endian float32;
  an `alias_tensor` (a view's shape): version 1 and the four sizes;
- a network is nested layers, outermost first: the loss layer (version 1, its details), then each
  `add_layer` writes its version and its sub-network *before* its own details, so all the
  version numbers come first (outermost to innermost: 2 for a layer, 1 for a tag or skip, 3 for
  the layer on the input), then the input layer, then every layer's details in forward order,
  each followed by the layer's saved state (three bools and three or four tensors, empty here).
  Tags and skips store nothing but their version, so which tag a skip or add_prev refers to is
  not in the file: it comes from the architecture, which `dlib_architecture` lists and the reader
  checks against the file layer by layer.

`load_dlib_face_resnet` reads the .dat shipped by the PyPI package `face-recognition-models`. The
descriptor matches `dlib.face_recognition_model_v1.compute_face_descriptor` to about 1e-6.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import usable_device
from ..errors import CheckpointError, MissingFileError
from .base import rng_untouched

log = logging.getLogger(__name__)

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150  # input_rgb_image_sized<150>
CHIP_PADDING = 0.25  # what dlib's face recognition uses with get_face_chip
DESCRIPTOR_DIM = 128

# (channels, blocks, first block down-samples) per stage; dlib's alevel4 ... alevel0
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
STEM_CHANNELS = 32


class DlibFormatError(CheckpointError):
    """A .dat file that is not (this version of) dlib's face descriptor network."""


# ----------------------------------------------------------------------------------------------
# Reading dlib's serialization


class _Reader:
    """Cursor over the bytes of a dlib-serialized object."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} (at byte {self.pos}); is it dlib's {MODEL_FILE}?")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"the file ends early: wanted {n} more bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in specials:
            return specials[exponent]
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        n = self.int()
        if not 0 <= n < 1 << 16:
            raise self.fail(f"implausible string length {n}")
        return self.take(n).decode("latin-1")

    def bool(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {c!r}")
        return c == b"1"

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        v = self.int()
        if v not in allowed:
            raise self.fail(f"{what} has version {v}, expected {' or '.join(map(str, allowed))}")
        return v

    def tensor(self) -> np.ndarray:  # [num_samples, k, nr, nc] float32
        self.version((2,), "a tensor")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "an alias_tensor")
        return tuple(self.int() for _ in range(4))


@dataclass
class DlibLayer:
    """One layer of the file, in forward order: its kind and what it stores."""

    kind: str  # input, con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc, loss_metric
    arg: int = 0  # tag / skip / add_prev number, or the number of filters / outputs
    params: Optional[dict] = None  # numbers and numpy arrays, depending on the kind

    def __repr__(self) -> str:
        shapes = {k: (v.shape if isinstance(v, np.ndarray) else v) for k, v in (self.params or {}).items()}
        return f"{self.kind}{self.arg or ''}{shapes if shapes else ''}"


def dlib_architecture() -> list[tuple[str, int]]:
    """The face network as (kind, arg) in forward order, written the way dlib's templates nest.

    `ares<N>` = relu<add_prev1<block<N, stride 1, tag1<x>>>>; `ares_down<N>` =
    relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<N, stride 2, tag1<x>>>>>>>; `block` =
    affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride, x>>>>>.
    """
    layers: list[tuple[str, int]] = [("input", CHIP_SIZE), ("con", STEM_CHANNELS), ("affine", 0), ("relu", 0), ("max_pool", 0)]
    conv_pair = [("con", 0), ("affine", 0), ("relu", 0), ("con", 0), ("affine", 0)]
    for channels, blocks, down in STAGES:
        for i in range(blocks):
            body = [(kind, channels if kind == "con" else 0) for kind, _ in conv_pair]
            if down and i == 0:
                layers += [("tag", 1), *body, ("tag", 2), ("skip", 1), ("avg_pool", 2), ("add_prev", 2), ("relu", 0)]
            else:
                layers += [("tag", 1), *body, ("add_prev", 1), ("relu", 0)]
    layers += [("avg_pool", 0), ("fc", DESCRIPTOR_DIM)]
    return layers


def _read_details(r: _Reader, kind: str) -> tuple[str, dict]:
    """One layer's own serialization (the `details` of an add_layer); returns (kind, params)."""
    version = r.string()
    if kind == "con" and version in ("con_4", "con_5", "con_6"):
        p = {"params": r.tensor().reshape(-1), "num_filters": r.int(), "nr": r.int(), "nc": r.int()}
        p.update(stride_y=r.int(), stride_x=r.int(), padding_y=r.int(), padding_x=r.int())
        p["filters"], p["biases"] = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        p["use_bias"] = r.bool() if version in ("con_5", "con_6") else True
        if version == "con_6":
            p["use_relu"] = r.bool()
        return kind, p
    if kind == "affine" and version in ("affine_", "affine_2"):
        p = {"params": r.tensor().reshape(-1), "gamma": r.alias_tensor(), "beta": r.alias_tensor(), "mode": r.int()}
        if version == "affine_2":
            p["disabled"] = r.bool()
        return kind, p
    if kind == "relu" and version in ("relu_", "relu_2"):
        return kind, {"disabled": r.bool() if version == "relu_2" else False}
    if kind in ("max_pool", "avg_pool") and version == f"{kind}_2":
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return kind, {k: r.int() for k in keys}
    if kind == "add_prev" and version == "add_prev_":
        return kind, {}
    if kind == "fc" and version in ("fc_2", "fc_3"):
        p = {"num_outputs": r.int(), "num_inputs": r.int(), "params": r.tensor().reshape(-1)}
        p["weights"], p["biases"], p["bias_mode"] = r.alias_tensor(), r.alias_tensor(), r.int()
        for _ in range(4):
            r.float()
        if version == "fc_3":
            p["use_bias"] = r.bool()
        return kind, p
    raise r.fail(f"expected a {kind} layer here, found {version!r}")


def read_dlib_net(path: Union[str, os.PathLike]) -> list[DlibLayer]:
    """Parse the face network file into its layers in forward order (input first, loss last)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path.name)
    arch = dlib_architecture()

    # loss layer: version, its details, then the network
    r.version((1,), "the loss layer")
    loss_version = r.string()
    if loss_version == "loss_metric_2":
        loss = DlibLayer("loss_metric", params={"margin": r.float(), "distance_threshold": r.float()})
    elif loss_version == "loss_metric_":
        loss = DlibLayer("loss_metric", params={"margin": 0.1, "distance_threshold": 0.75})
    else:
        raise r.fail(f"expected dlib's metric loss (loss_metric_), found {loss_version!r}")

    # every wrapper's version, outermost first (the input layer is arch[0], inside them all)
    outer_to_inner = arch[1:][::-1]
    for i, (kind, _) in enumerate(outer_to_inner[:-1]):
        r.version((1,) if kind in ("tag", "skip") else (1, 2), f"layer {len(outer_to_inner) - i} ({kind})")
    # the layer on the input (a conv here) is a different add_layer: version 3 adds one field
    input_on_v3 = r.version((2, 3), "the first layer") == 3

    if r.string() != "input_rgb_image_sized":
        raise r.fail("expected the input layer input_rgb_image_sized")
    mean = [r.float(), r.float(), r.float()]
    nr, nc = r.int(), r.int()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"expected {CHIP_SIZE}x{CHIP_SIZE} input, found {nr}x{nc}")
    layers = [DlibLayer("input", CHIP_SIZE, {"mean_rgb": mean})]

    for i, (kind, arg) in enumerate(arch[1:]):
        if kind in ("tag", "skip"):
            layers.append(DlibLayer(kind, arg))
            continue
        _, params = _read_details(r, kind)
        layers.append(DlibLayer(kind, arg, params))
        # the add_layer's own state: setup flag, stale flag, disabled flag, x_grad, cached output, ...
        for _ in range(3):
            r.bool()
        r.tensor()
        r.tensor()
        r.tensor()  # params_grad (version 2) or grad_final (version 3, on the input)
        if i == 0 and input_on_v3:
            r.int()  # sample expansion factor
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left after the last layer")
    layers.append(loss)
    return layers


# ----------------------------------------------------------------------------------------------
# The network


class ChannelAffine(nn.Module):
    """dlib's `affine` layer: a batch norm frozen into a per-channel scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}"


def add_zero_padded(a: Tensor, b: Tensor) -> Tensor:
    """a + b where the smaller is zero-padded at the end of each axis (dlib's `add_prev`)."""
    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]  # [C, H, W]

    def grow(t: Tensor) -> Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """conv 3x3, affine, relu, conv 3x3, affine, + shortcut, relu (dlib's `ares` / `ares_down`)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)  # dlib pads only stride-1 convs
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.bn1 = ChannelAffine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = ChannelAffine(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2) if self.downsample else x
        return F.relu(add_zero_padded(y, shortcut))

    def extra_repr(self) -> str:
        return f"{self.conv1.in_channels} -> {self.conv1.out_channels}" + (", down-sampling" if self.downsample else "")


class DlibFaceResNet(nn.Module):
    """The descriptor network. `forward(img)` takes 150x150 RGB chips in [-1, 1] -> [N, 128]."""

    FEATURE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5")

    def __init__(self, mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(3, STEM_CHANNELS, 7, stride=2))
        self.stem.add_module("bn", ChannelAffine(STEM_CHANNELS))
        self.stem.add_module("relu", nn.ReLU())
        self.stem.add_module("pool", nn.MaxPool2d(3, stride=2))
        channels = STEM_CHANNELS
        for s, (out, blocks, down) in enumerate(STAGES, start=1):
            stage = nn.Sequential()
            for i in range(blocks):
                stage.add_module(f"block{i + 1}", ResidualBlock(channels, out, down and i == 0))
                channels = out
            self.add_module(f"stage{s}", stage)
        self.fc = nn.Linear(channels, DESCRIPTOR_DIM, bias=False)

    def normalize(self, img: Tensor) -> Tensor:
        """[-1, 1] RGB -> dlib's input: (pixel value in 0..255 - channel mean) / 256."""
        return ((img + 1) * 127.5 - self.mean_rgb) / 256.0

    def features(self, img: Tensor, upto: int = len(FEATURE_NAMES)) -> list[Tensor]:
        """Outputs of the stem and of each stage (the first `upto` of FEATURE_NAMES)."""
        x = self.normalize(img)
        outs = []
        for name in self.FEATURE_NAMES[:upto]:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def head(self, last: Tensor) -> Tensor:  # stage5 output [N, 256, h, w] -> [N, 128]
        return self.fc(last.mean(dim=[2, 3]))

    def forward(self, img: Tensor) -> Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected RGB chips [N, 3, {CHIP_SIZE}, {CHIP_SIZE}] in [-1, 1], got {list(img.shape)}")
        return self.head(self.features(img)[-1])

    def parameter_layers(self) -> list[tuple[str, nn.Module]]:
        """The convs, affines and the fc in dlib's forward order (the order of the file)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, (nn.Conv2d, ChannelAffine, nn.Linear))]


def state_dict_from_dlib(layers: list[DlibLayer], model: DlibFaceResNet) -> dict[str, Tensor]:
    """Map the file's layers onto the module's parameters, checking every shape and stride."""
    with_params = [layer for layer in layers if layer.kind in ("con", "affine", "fc")]
    targets = model.parameter_layers()
    if len(with_params) != len(targets):
        raise DlibFormatError(f"the file has {len(with_params)} layers with weights, the network {len(targets)}")
    state: dict[str, Tensor] = {"mean_rgb": torch.tensor(layers[0].params["mean_rgb"], dtype=torch.float32).reshape(1, 3, 1, 1)}
    for layer, (name, module) in zip(with_params, targets):
        p = layer.params
        if layer.kind == "con":
            if not isinstance(module, nn.Conv2d):
                raise DlibFormatError(f"{name}: the file has a conv where the network has {type(module).__name__}")
            filters = p["filters"]  # (out, in, kh, kw)
            expected = (module.out_channels, module.in_channels, *module.kernel_size)
            geometry = (p["stride_y"], p["stride_x"], p["padding_y"], p["padding_x"])
            if tuple(filters) != expected or geometry != (*module.stride, *module.padding) or not p["use_bias"]:
                raise DlibFormatError(f"{name}: the file's conv {filters} stride/padding {geometry} does not match {module}")
            n = int(np.prod(filters))
            w = p["params"]
            if w.size != n + filters[0]:
                raise DlibFormatError(f"{name}: {w.size} conv parameters, expected {n + filters[0]}")
            state[f"{name}.weight"] = torch.from_numpy(w[:n].reshape(filters).copy())
            state[f"{name}.bias"] = torch.from_numpy(w[n:].copy())
        elif layer.kind == "affine":
            c = int(np.prod(p["gamma"]))
            if not isinstance(module, ChannelAffine) or c != module.weight.numel() or p["params"].size != 2 * c or p["mode"] != 0:
                raise DlibFormatError(f"{name}: the file's affine layer ({c} channels, mode {p['mode']}) does not fit {module}")
            state[f"{name}.weight"] = torch.from_numpy(p["params"][:c].copy())
            state[f"{name}.bias"] = torch.from_numpy(p["params"][c:].copy())
        else:  # fc: dlib computes x @ W with W [num_inputs, num_outputs]
            shape = (p["num_inputs"], p["num_outputs"])
            if not isinstance(module, nn.Linear) or shape != (module.in_features, module.out_features) or p["params"].size != shape[0] * shape[1]:
                raise DlibFormatError(f"{name}: the file's fc {shape} does not fit {module}")
            state[f"{name}.weight"] = torch.from_numpy(p["params"].reshape(shape).T.copy())
    for layer in layers:
        if layer.kind in ("max_pool", "avg_pool") and layer.params["padding_y"] + layer.params["padding_x"] != 0:
            raise DlibFormatError(f"a {layer.kind} layer has padding {layer.params['padding_y']}; the network assumes none")
        if layer.kind == "relu" and layer.params["disabled"]:
            raise DlibFormatError("a relu layer is disabled in the file; the network assumes all are active")
    return state


# ----------------------------------------------------------------------------------------------
# Loading


def convert_dlib_face_resnet(path: Union[str, os.PathLike]) -> DlibFaceResNet:
    """Read the .dat and fill the module."""
    with rng_untouched():
        model = DlibFaceResNet()
    model.load_state_dict(state_dict_from_dlib(read_dlib_net(path), model), strict=True)
    return model.eval().requires_grad_(False)


def load_dlib_face_resnet(path: Optional[Union[str, os.PathLike]] = None, *, device: Union[str, torch.device] = "cpu") -> DlibFaceResNet:
    """dlib's face descriptor network in torch, frozen, in eval mode.

    `path` defaults to the file shipped by `face-recognition-models` (FileNotFoundError naming the
    pip package when it is missing). Reading the 22 MB file takes about 0.1 s and building the
    module 0.2 s, so the converted weights are not cached.
    """
    device = usable_device(device)
    if path is None:
        from .dlib_files import model_path

        path = model_path(MODEL_FILE)
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file (dlib's {MODEL_FILE})")
    return convert_dlib_face_resnet(path).to(device)


# Where dlib's chip lies in an FFHQ-aligned image, so chips are cut by slicing (no landmarks needed)
CHIP_CENTER = (0.500, 0.605)  # (x, y) of dlib's chip centre in an FFHQ-aligned image, fractions of its side
CHIP_SIDE = 0.69


def chip_box(resolution: int, side_fraction: float = CHIP_SIDE) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the face-chip square in an aligned image of this size."""
    side = round(side_fraction * resolution)
    left = round(CHIP_CENTER[0] * resolution - side / 2)
    top = round(CHIP_CENTER[1] * resolution - side / 2)
    return left, top, side


def face_chip(img: Tensor, *, size: int = CHIP_SIZE, side_fraction: float = CHIP_SIDE) -> Tensor:
    """FFHQ-aligned images [N, 3, R, R] -> dlib-style face chips [N, 3, size, size] (differentiable)."""
    if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != img.shape[3]:
        raise ValueError(f"the face terms need square RGB images [N, 3, R, R], got {list(img.shape)}")
    left, top, side = chip_box(img.shape[-1], side_fraction)
    crop = img[:, :, top : top + side, left : left + side]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)


@functools.lru_cache(maxsize=4)
def face_network(device: torch.device) -> DlibFaceResNet:
    """The frozen network, read once per device and shared by every term."""
    return load_dlib_face_resnet(device=device)
