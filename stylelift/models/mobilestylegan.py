"""MobileStyleGAN (Belousov 2021, "MobileStyleGAN: A Lightweight Convolutional Neural Network for
High-Fidelity Image Synthesis") in torch, with the FFHQ weights shipped as OpenVINO IR files in the
PyPI wheel `random-face==2021.7.21.1`.

MobileStyleGAN is a StyleGAN2 distilled into a smaller network with the same mapping network and
w space. Its synthesis network differs from StyleGAN2's in three ways, each a module below:
- **modulated depthwise-separable convs** (`ModulatedDWConv2d`): a per-channel style scales the
  input, a depthwise 3x3 conv and a pointwise 1x1 conv replace the dense 3x3 conv;
- **wavelet up-sampling** (`IDWTUpsample`): a block doubles its resolution by reading its 4C input
  channels as the four Haar sub-bands (LL, LH, HL, HH) of C channels at twice the size and applying
  the inverse DWT (`InverseHaarDWT`), instead of a transposed conv;
- **frequency outputs** (`MultichannelImage`): the image head predicts the 4 Haar sub-bands of the
  RGB image (12 channels at 512 px), and one inverse DWT makes the 1024 px image. In training each
  block had such a head for a per-scale distillation loss; the exported network keeps only the last
  one (the others do not reach the output), so only that one exists here. Its LL band is the image
  at 512 px for free: `synthesis(ws, out_res=512)`.

The exported graph has no noise inputs: each conv adds a fixed noise map (the learned strength
times the noise drawn at export), stored here as `noise_const`. The demodulation of each modulated
conv uses a learned constant vector rather than the style ("style_inv" in the paper's code), so it
is a fixed per-output-channel scale, which the exporter folded into the conv weights; the weights
stored here are those folded weights, and there is no separate demodulation step.

W+ (num_ws = 23). Every style affine (a `MatMul` node in the graph) gets its own w, in the order
the image's data flow reaches them:
    ws[0]                     b4.conv1              (dense 3x3 conv on the 4x4 constant)
    ws[1 + 3i], i = 0..6      b{r}.up   (r = 8 << i) modulation of the 4C sub-band channels before the IDWT
    ws[2 + 3i]                b{r}.conv1            depthwise-separable conv at r px
    ws[3 + 3i]                b{r}.conv2            depthwise-separable conv at r px
    ws[22]                    to_img                the 12 sub-band channels of the 1024 px image
`layer_resolutions` gives r for each (1024 for `to_img`, whose sub-bands make the 1024 image).
(The original code indexes its 23 ws differently, with the dead per-block heads reading some of
them; with one w repeated (W) both agree.)

Names follow the paper's code: `MobileSynthesisBlock` (`up`, `conv1`, `conv2`), `StyledConv2d`
(`conv`, `noise_const`, `bias`), `ModulatedDWConv2d` (`weight_dw`, `weight_permute`), `IDWTUpsample`,
`MultichannelImage` (`to_img`); blocks are named by resolution (`b8` ... `b512`) like stylelift's
StyleGAN2 (the paper's `layers.{i}` is `b{8 << i}`).

Speed (CPU). The exported graph runs each step as a separate pass over memory; here feature
maps live in channels-last memory, where a depthwise conv is fast (oneDNN) and a 1x1 conv is one
matrix product over the pixels. The style of a depthwise-separable conv is folded into its
pointwise weights (a per-channel scale passes through a depthwise conv), and the pointwise conv,
bias, noise and leaky ReLU run as one autograd function over blocks of pixel rows, with a
hand-written backward that needs one matrix product instead of two. The inverse DWT is a pair of
butterflies written straight into the output (the forward DWT is its backward). Two environment
settings, read when torch is imported, matter as much on a shared machine (see
benchmarks/mobile_speed.py): `OMP_WAIT_POLICY=PASSIVE` (idle OpenMP threads sleep instead of
spinning against other processes) and `THP_MEM_ALLOC_ENABLE=1` (huge pages for large tensors, far
fewer page faults).

`import_mobilestylegan` fills the module from the IR files by walking the graph (see
`openvino_ir.py`): each weight is found by its position (the affine feeding the k-th modulation on
the image path, the conv after it, ...), not by name, and every constant the module assumes (the
Haar filters, the 1/sqrt(fan_in) style gains, the leaky-ReLU slopes, the pixel-norm epsilon) is
checked against the graph. `load_mobilestylegan` finds the wheel's files, converts once, and
caches the converted weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
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

from .openvino_ir import IRFormatError, IRGraph, Layer, read_ir

log = logging.getLogger(__name__)

NOISE_MODES = ("const", "random", "none")
WHEEL = "random-face"
WHEEL_VERSION = "2021.7.21.1"
PIP_COMMAND = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
SOURCE_NAME = "mobile-ffhq"
CACHE_FORMAT = "stylelift-mobilestylegan"
CACHE_VERSION = 1


@dataclass(frozen=True)
class MobileStyleGANConfig:
    """Everything needed to rebuild a MobileStyleGAN generator; saved next to its weights."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lrelu_slope: float = 0.2
    mapping_lrelu_gain: float = math.sqrt(2)
    pixel_norm_eps: float = 1e-8
    img_channels: int = 3
    const_resolution: int = 4
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64)  # feature width at 4, 8, ..., 512 px
    kernel_size: int = 3
    lrelu_slope: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.c_dim != 0:
            raise ValueError("MobileStyleGAN has no label input (c_dim must be 0)")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "const_resolution", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if len(self.channels) < 1 or min(self.channels) < 4:
            raise ValueError(f"channels must list at least one width of 4 or more, got {self.channels}")
        if any(c % 4 for c in self.channels[:-1]):
            raise ValueError(f"every width but the last must split into 4 Haar sub-bands (divisible by 4), got {self.channels}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    @property
    def block_resolutions(self) -> list[int]:
        """Feature resolutions: the constant's, then one per up-sampling block."""
        return [self.const_resolution << i for i in range(len(self.channels))]

    @property
    def block_channels(self) -> dict[int, int]:
        return dict(zip(self.block_resolutions, self.channels))

    @property
    def img_resolution(self) -> int:
        return 2 * self.block_resolutions[-1]  # the last inverse DWT doubles the last features' size

    @property
    def num_ws(self) -> int:
        return 1 + 3 * (len(self.channels) - 1) + 1  # base conv, (up, conv1, conv2) per block, image head

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MobileStyleGANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MobileStyleGAN config keys: {sorted(unknown)}")
        return cls(**d)


# Bytes of pixel rows the fused 1x1 conv handles at once: a block stays in the CPU caches between
# the matrix product and the elementwise steps that follow it, and the backward pass's temporaries
# are small enough (< 32 MiB) for the C allocator to recycle them without fresh page faults.
# (Larger blocks mean fewer parallel sections, which matters on a machine shared with other work.)
BLOCK_BYTES = 1 << 24


def _row_blocks(x: Tensor, n_rows: int, width: int) -> list[slice]:
    """Blocks of rows of about BLOCK_BYTES for a CPU tensor; all rows at once on a GPU."""
    if x.device.type != "cpu":
        return [slice(0, n_rows)]
    step = max(64, BLOCK_BYTES // (x.element_size() * width))
    return [slice(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


# ----------------------------------------------------------------------------------------------
# The inverse Haar wavelet transform


def haar_synthesis_matrix() -> Tensor:
    """[4, 4]: row 2a+b gives output pixel (2h+a, 2w+b) from the sub-bands (LL, LH, HL, HH) at (h, w).

    The orthonormal Haar synthesis filters are lo = (1, 1)/sqrt(2) and hi = (1, -1)/sqrt(2); LH is
    high-pass along the height, HL along the width. So pixel (a, b) = (LL + (-1)^a LH + (-1)^b HL
    + (-1)^(a+b) HH) / 2.
    """
    rows = []
    for a in (0, 1):
        for b in (0, 1):
            rows.append([1.0, (-1.0) ** a, (-1.0) ** b, (-1.0) ** (a + b)])
    return torch.tensor(rows) / 2


def exported_band_order(channels: int) -> list[int]:
    """Where each channel of stylelift's sub-band-major order sits in the exported network's order.

    The exported network stores LL of all C channels first, then (LH, HL, HH) of channel 0, of
    channel 1, ... (channel C + 3c + k is high band k of channel c). stylelift stores the four
    bands one after the other (channel jC + c is band j of channel c), so each band is a slice.
    """
    order = list(range(channels))
    for band in range(3):
        order += [channels + 3 * c + band for c in range(channels)]
    return order


def _haar_synthesis(bands: Tensor) -> Tensor:
    """[N, 4C, H, W] band-major sub-bands -> [N, C, 2H, 2W] image, both channels-last.

    Separable butterflies: along the height, r_a = LL +- LH and q_a = HL +- HH (a = 0, 1); along
    the width, pixel (a, b) = (r_a +- q_a) / 2, written straight into its place in the output.
    """
    n, c4, h, w = bands.shape
    c = c4 // 4
    ll, lh, hl, hh = bands.permute(0, 2, 3, 1).reshape(n, h, w, 4, c).unbind(3)  # views of channels-last memory
    out = bands.new_empty([n, h, 2, w, 2, c])  # [N, H, a, W, b, C] = channels-last [N, C, 2H, 2W]
    for a, (r, q) in enumerate(((ll + lh, hl + hh), (ll - lh, hl - hh))):
        torch.add(r, q, out=out[:, :, a, :, 0])
        torch.sub(r, q, out=out[:, :, a, :, 1])
    return out.mul_(0.5).view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _haar_analysis(img: Tensor) -> Tensor:
    """The forward Haar DWT, [N, C, 2H, 2W] -> [N, 4C, H, W] band-major, both channels-last.

    The inverse DWT is orthonormal, so this is also its adjoint: the backward pass of `_haar_synthesis`.
    """
    n, c, h2, w2 = img.shape
    h, w = h2 // 2, w2 // 2
    cells = img.permute(0, 2, 3, 1).reshape(n, h, 2, w, 2, c)  # a view when img is channels-last
    out = img.new_empty([n, h, w, 4, c])
    (p0, m0), (p1, m1) = [(cells[:, :, a, :, 0] + cells[:, :, a, :, 1], cells[:, :, a, :, 0] - cells[:, :, a, :, 1]) for a in (0, 1)]
    torch.add(p0, p1, out=out[:, :, :, 0])  # LL
    torch.sub(p0, p1, out=out[:, :, :, 1])  # LH
    torch.add(m0, m1, out=out[:, :, :, 2])  # HL
    torch.sub(m0, m1, out=out[:, :, :, 3])  # HH
    return out.mul_(0.5).view(n, h, w, 4 * c).permute(0, 3, 1, 2)


class _InverseHaarDWTFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, bands: Tensor) -> Tensor:
        return _haar_synthesis(bands)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _haar_analysis(grad)


class InverseHaarDWT(nn.Module):
    """One level of the inverse 2-D Haar DWT: [N, 4C, H, W] sub-bands -> [N, C, 2H, 2W].

    Input channel jC + c is sub-band j (LL, LH, HL, HH) of channel c. Each 2x2 output cell is a
    fixed linear mix of the 4 sub-bands at one position (`haar_synthesis_matrix`), put in place
    as `pixel_shuffle(2)` would: the same result as the pairs of grouped transposed convs the
    exported graph uses, at a fraction of the cost. Computed as two butterflies on channels-last
    memory (a pixel's sub-bands are one contiguous row) and returned channels-last; the backward
    pass is the forward Haar DWT, the transform being orthonormal.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 4:
            raise ValueError(f"the inverse DWT needs 4 sub-bands per channel, got {x.shape[1]} channels")
        return _InverseHaarDWTFunction.apply(channels_last(x))


def channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------
# Layers. Feature maps are [N, C, H, W] tensors in channels-last memory, where a depthwise conv is
# fast and a 1x1 conv is a plain matrix product over the pixels.


class StyleAffine(nn.Module):
    """The learned affine map A from w to one style per input channel, times a fixed gain.

    The gain is the modulated conv's 1/sqrt(fan_in) weight scale (1 for the up-sampling
    modulation, which scales sub-bands, not conv inputs).
    """

    def __init__(self, w_dim: int, channels: int, gain: float = 1.0):
        super().__init__()
        self.w_dim, self.channels, self.gain = w_dim, channels, gain
        self.weight = nn.Parameter(torch.randn([channels, w_dim]) / math.sqrt(w_dim))
        self.bias = nn.Parameter(torch.ones([channels]))

    def forward(self, w: Tensor) -> Tensor:  # [N, w_dim] -> [N, channels]
        styles = torch.addmm(self.bias.unsqueeze(0), w, self.weight.t())
        return styles * self.gain if self.gain != 1 else styles

    def extra_repr(self) -> str:
        return f"{self.w_dim} -> {self.channels}, gain={self.gain:.4g}"


class _ModulatedPointwiseFunction(torch.autograd.Function):
    """y = act(x @ (W * s)^T + bias + noise) over the pixels, with a backward pass written for it.

    Forward: each block of pixel rows goes through the product, the noise and the activation while
    it is in the cache, instead of each step sweeping the whole image through memory.
    Backward: autograd of the plain expression would run two large matrix products (one for the
    input, one for the per-sample weights W * s). One suffices: with u = x * s (the modulated input
    that the conv sees), dL/du = g @ W; then dL/dx = dL/du * s and dL/ds = sum over pixels of
    dL/du * x, both elementwise, again block by block.
    """

    @staticmethod
    def forward(ctx, pixels, styles, weight, bias, noise, slope):
        # pixels [N, P, I], styles [N, I], weight [O, I], bias [O] | None, noise [P] | None -> [N, P, O]
        n, p, _ = pixels.shape
        modulated = (weight.unsqueeze(0) * styles.unsqueeze(1)).transpose(1, 2)  # [N, I, O]
        y = pixels.new_empty([n, p, weight.shape[0]])
        for i in range(n):
            for rows in _row_blocks(pixels, p, max(weight.shape)):
                out = y[i, rows]
                if bias is None:
                    torch.mm(pixels[i, rows], modulated[i], out=out)
                else:
                    torch.addmm(bias, pixels[i, rows], modulated[i], out=out)
                if noise is not None:
                    out.add_(noise[rows, None])
                if slope is not None:
                    F.leaky_relu_(out, slope)
        ctx.slope = slope
        ctx.save_for_backward(pixels, styles, weight, y if slope is not None else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        pixels, styles, weight, y = ctx.saved_tensors
        need_x, need_s, need_w, need_b, need_noise = ctx.needs_input_grad[:5]
        grad_x = grad_s = grad_w = grad_b = grad_noise = None
        n, p, _ = pixels.shape
        grad = grad.contiguous()

        def act_grad(g, out):  # leaky ReLU's derivative, read from its output (same sign as its input)
            return g if ctx.slope is None else torch.ops.aten.leaky_relu_backward(g, out, ctx.slope, True)

        if need_x or need_s:
            grad_x = torch.empty_like(pixels) if need_x else None
            grad_s = torch.zeros_like(styles) if need_s else None
            for i in range(n):
                for rows in _row_blocks(pixels, p, max(weight.shape)):
                    g = act_grad(grad[i, rows], y[i, rows] if y is not None else None)
                    grad_u = torch.mm(g, weight)  # gradient at the modulated input
                    if need_s:
                        grad_s[i] += torch.linalg.vecdot(grad_u, pixels[i, rows], dim=0)
                    if need_x:
                        torch.mul(grad_u, styles[i], out=grad_x[i, rows])
        if need_w or need_b or need_noise:  # only when the weights themselves are trained
            g = act_grad(grad, y)
            if need_w:
                grad_w = (torch.bmm(g.transpose(1, 2), pixels) * styles.unsqueeze(1)).sum(0)
            if need_b:
                grad_b = g.sum((0, 1))
            if need_noise:
                grad_noise = g.sum((0, 2))
        return grad_x, grad_s, grad_w, grad_b, grad_noise, None


def modulated_pointwise_conv(
    x: Tensor,  # [N, I, H, W]
    styles: Tensor,  # [N, I]: scales the input channels
    weight: Tensor,  # [O, I]
    bias: Optional[Tensor] = None,  # [O]
    *,
    noise: Optional[Tensor] = None,  # [H, W]: added to every output channel
    slope: Optional[float] = None,  # then leaky ReLU with this slope
) -> Tensor:
    """A modulated 1x1 conv, optionally + bias, + noise map, leaky ReLU: [N, O, H, W] channels-last.

    The style is applied to the weights, not the image (per sample: W * s), and the conv is one
    batched matrix product over the pixels of channels-last memory, with the bias riding along in it
    and the noise and the activation applied in place on the product.
    """
    n, i, h, w = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, i)  # a view when x is channels-last
    noise = noise.reshape(h * w) if noise is not None else None
    y = _ModulatedPointwiseFunction.apply(pixels, styles, weight, bias, noise, slope)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)


class ModulatedConv2d(nn.Module):
    """Dense modulated conv: scale the input channels by the style, then convolve.

    `weight` already holds the (fixed) demodulation; `demodulate` records whether there was one.
    A 1x1 conv applies the style to its weights instead of its input (same arithmetic, one pass
    over the image fewer).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int, *, demodulate: bool):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size, self.demodulate = in_channels, out_channels, kernel_size, demodulate
        self.affine = StyleAffine(w_dim, in_channels, gain=1 / math.sqrt(in_channels * kernel_size**2))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))

    def forward(self, x: Tensor, w: Tensor, bias: Optional[Tensor] = None, *, noise: Optional[Tensor] = None, slope: Optional[float] = None) -> Tensor:
        """Adds `bias`, then `noise`, then applies leaky ReLU with `slope`, when given."""
        styles = self.affine(w)  # [N, I]
        if self.kernel_size == 1:
            return modulated_pointwise_conv(x, styles, self.weight[:, :, 0, 0], bias, noise=noise, slope=slope)
        x = F.conv2d(x * styles[:, :, None, None], self.weight, bias, padding=self.kernel_size // 2)
        if noise is not None:
            x = x + noise
        if slope is not None:
            x = F.leaky_relu(x, slope)
        return channels_last(x)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, {self.kernel_size}x{self.kernel_size}, demodulated={self.demodulate}"


class ModulatedDWConv2d(nn.Module):
    """Modulated depthwise-separable conv: style scale, depthwise kxk conv, pointwise 1x1 conv.

    The style scales each input channel; a depthwise conv acts on each channel alone, so the scale
    passes through it and is applied to the pointwise weights instead (per sample): the same
    arithmetic with one pass over the image fewer. `weight_permute` holds the demodulation.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.affine = StyleAffine(w_dim, in_channels, gain=1 / math.sqrt(in_channels * kernel_size**2))
        self.weight_dw = nn.Parameter(torch.randn([in_channels, 1, kernel_size, kernel_size]))
        self.weight_permute = nn.Parameter(torch.randn([out_channels, in_channels]) / math.sqrt(in_channels))

    def forward(self, x: Tensor, w: Tensor, bias: Optional[Tensor] = None, **fused) -> Tensor:
        """`bias` and `fused` (noise, slope) are applied after the pointwise conv, see `modulated_pointwise_conv`."""
        styles = self.affine(w)  # [N, I]
        x = F.conv2d(channels_last(x), self.weight_dw, padding=self.kernel_size // 2, groups=self.in_channels)
        return modulated_pointwise_conv(x, styles, self.weight_permute, bias, **fused)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, depthwise {self.kernel_size}x{self.kernel_size} + pointwise"


class StyledConv2d(nn.Module):
    """A modulated conv, plus the fixed noise map, plus a bias, then leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, cfg: MobileStyleGANConfig, *, depthwise: bool):
        super().__init__()
        self.resolution, self.slope = resolution, cfg.lrelu_slope
        if depthwise:
            self.conv = ModulatedDWConv2d(in_channels, out_channels, w_dim, cfg.kernel_size)
        else:
            self.conv = ModulatedConv2d(in_channels, out_channels, w_dim, cfg.kernel_size, demodulate=True)
        self.register_buffer("noise_const", torch.zeros([resolution, resolution]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w, self.bias, noise=self.noise_const, slope=self.slope)

    def extra_repr(self) -> str:
        return f"at {self.resolution}px, leaky ReLU {self.slope:g}"


class IDWTUpsample(nn.Module):
    """Double the resolution: style-scale the 4C channels, read them as Haar sub-bands, inverse DWT.

    Channel jC + c is sub-band j (LL, LH, HL, HH) of output channel c (the importer reorders the
    exported network's channels into this order; see `exported_band_order`).
    """

    def __init__(self, in_channels: int, w_dim: int):
        super().__init__()
        self.in_channels = in_channels
        self.affine = StyleAffine(w_dim, in_channels, gain=1.0)
        self.idwt = InverseHaarDWT()

    def forward(self, x: Tensor, w: Tensor) -> Tensor:  # [N, 4C, H, W] -> [N, C, 2H, 2W]
        return self.idwt(x * self.affine(w)[:, :, None, None])

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.in_channels // 4} channels, 2x"


class MultichannelImage(nn.Module):
    """The frequency head: a modulated 1x1 conv (no demodulation) to the 4 Haar sub-bands x RGB, plus a bias.

    Output channel jC + c is sub-band j of colour c, as `InverseHaarDWT` reads them.
    """

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 4 * img_channels, w_dim, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros([4 * img_channels]))

    def forward(self, x: Tensor, w: Tensor, *, ll_only: bool = False) -> Tensor:
        """All 4 sub-bands, or with `ll_only` just the LL band (the first `img_channels` outputs)."""
        if not ll_only:
            return self.conv(x, w, self.bias)
        c = self.bias.shape[0] // 4
        styles = self.conv.affine(w)
        return modulated_pointwise_conv(x, styles, self.conv.weight[:c, :, 0, 0], self.bias[:c])


class MobileSynthesisBlock(nn.Module):
    """One resolution: wavelet up-sampling, then two modulated depthwise-separable convs."""

    num_ws = 3

    def __init__(self, in_channels: int, out_channels: int, resolution: int, cfg: MobileStyleGANConfig):
        super().__init__()
        self.resolution = resolution
        self.up = IDWTUpsample(in_channels, cfg.w_dim)
        self.conv1 = StyledConv2d(in_channels // 4, out_channels, cfg.w_dim, resolution, cfg, depthwise=True)
        self.conv2 = StyledConv2d(out_channels, out_channels, cfg.w_dim, resolution, cfg, depthwise=True)

    def forward(self, x: Tensor, ws: list[Tensor]) -> Tensor:  # ws: 3 x [N, w_dim]
        x = self.up(x, ws[0])
        x = self.conv1(x, ws[1])
        return self.conv2(x, ws[2])


class MobileSynthesisNetwork(nn.Module):
    """ws [N, 23, w_dim] -> image [N, 3, 1024, 1024], roughly in [-1, 1]."""

    def __init__(self, cfg: MobileStyleGANConfig):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        res = cfg.block_resolutions
        ch = cfg.channels
        self.const = nn.Parameter(torch.randn([ch[0], res[0], res[0]]))
        self.conv1 = StyledConv2d(ch[0], ch[0], cfg.w_dim, res[0], cfg, depthwise=False)
        self.block_resolutions = res[1:]
        for i, r in enumerate(self.block_resolutions):
            setattr(self, f"b{r}", MobileSynthesisBlock(ch[i], ch[i + 1], r, cfg))
        self.to_img = MultichannelImage(ch[-1], cfg.img_channels, cfg.w_dim)
        self.idwt = InverseHaarDWT()

    def blocks(self) -> list[MobileSynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def noise_layers(self) -> list:
        """No noise inputs: the exported network's noise maps are fixed constants."""
        return []

    @property
    def output_resolutions(self) -> list[int]:
        """Sizes `forward(out_res=...)` can return natively (the half-size one costs less)."""
        return [self.img_resolution // 2, self.img_resolution]

    def style_affine_weights(self) -> list[Tensor]:
        """For each ws index, the weight [C, w_dim] of its style affine (registration order = ws order)."""
        weights = [m.weight * m.gain for m in self.modules() if isinstance(m, StyleAffine)]
        assert len(weights) == self.num_ws, (len(weights), self.num_ws)
        return weights

    @property
    def layer_resolutions(self) -> list[int]:
        res = [self.conv1.resolution]
        for block in self.blocks():
            res += [block.resolution] * block.num_ws
        return res + [self.img_resolution]

    def forward(self, ws: Tensor, noise_mode: str = "const", noises: Optional[list] = None, out_res: Optional[int] = None) -> Tensor:
        check_ws(ws, self.num_ws, self.w_dim)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noises:
            raise ValueError("MobileStyleGAN has no noise inputs (noise_layers() is empty); pass noises=None")
        if out_res not in (None, self.img_resolution, self.img_resolution // 2):
            raise ValueError(f"out_res must be None, {self.img_resolution} or {self.img_resolution // 2}, got {out_res}")
        w = ws.to(torch.float32).unbind(1)
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.conv1(x, w[0])
        for i, block in enumerate(self.blocks()):
            x = block(x, w[1 + 3 * i : 4 + 3 * i])
        if out_res == self.img_resolution // 2:
            # The LL band of an orthonormal Haar DWT is twice the mean of each 2x2 cell, so LL / 2 is
            # exactly the full image area-downsampled by 2; the other bands need not be computed.
            return (self.to_img(x, w[-1], ll_only=True) * 0.5).contiguous()
        bands = self.to_img(x, w[-1])  # [N, 4 x img_channels, R/2, R/2], sub-band-major
        return self.idwt(bands).contiguous()


class MobileMappingNetwork(nn.Module):
    """z -> w: pixel norm, then `mapping_layers` dense layers with leaky ReLU; w broadcast to [N, num_ws, w_dim].

    The dense weights are stored with the equalised-learning-rate gain already applied (as exported).
    """

    def __init__(self, cfg: MobileStyleGANConfig):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws
        self.eps, self.slope, self.gain = cfg.pixel_norm_eps, cfg.mapping_lrelu_slope, cfg.mapping_lrelu_gain
        features = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.num_layers = cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", nn.Linear(features[i], features[i + 1]))
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {shape}")
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + self.eps).rsqrt()
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), self.slope) * self.gain
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def check_ws(ws: Tensor, num_ws: int, w_dim: int) -> None:
    if not isinstance(ws, Tensor) or ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim) or ws.shape[0] < 1:
        shape = tuple(ws.shape) if isinstance(ws, Tensor) else type(ws).__name__
        raise ValueError(f"ws must have shape [N, {num_ws}, {w_dim}] for this network, got {shape}")


class MobileStyleGAN(nn.Module):
    """MobileStyleGAN generator with the StyleGAN2 generator's interface: `mapping(z) -> ws`, `synthesis(ws) -> img`."""

    def __init__(self, cfg: MobileStyleGANConfig = MobileStyleGANConfig()):
        super().__init__()
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        self.mapping = MobileMappingNetwork(cfg)
        self.synthesis = MobileSynthesisNetwork(cfg)

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    @property
    def layer_resolutions(self) -> list[int]:
        """The resolution each ws index acts at (for coarse/middle/fine style ranges)."""
        return self.synthesis.layer_resolutions

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None, noise_mode: str = "const") -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.img_resolution}, num_ws={self.num_ws}, w_dim={c.w_dim}, channels={list(c.channels)}"


# ----------------------------------------------------------------------------------------------
# Importing the OpenVINO IR files


class _Walker:
    """Helpers to step along the image path of an IR graph, checking what is found on the way."""

    def __init__(self, graph: IRGraph):
        self.g = graph

    def fail(self, layer: Layer, what: str):
        raise IRFormatError(f"{self.g.name}: at layer {layer.name!r} ({layer.type}): {what}")

    def next(self, layer: Layer, type_: Optional[str] = None) -> Layer:
        """The one consumer of `layer` that does real work (shape queries are ignored)."""
        users = [u for u in self.g.consumers(layer) if u.type not in ("ShapeOf", "Result")]
        if len(users) != 1:
            self.fail(layer, f"expected one consumer, found {[u.type for u in users]}")
        if type_ is not None and users[0].type != type_:
            self.fail(users[0], f"expected a {type_} after {layer.name!r}")
        return users[0]

    def const_operand(self, layer: Layer) -> tuple[Optional[np.ndarray], Optional[Layer]]:
        """For a binary op: (value of its constant operand, its other operand) or (None, None)."""
        ins = self.g.inputs(layer)
        consts = [i for i in ins if i.type == "Const"]
        others = [i for i in ins if i.type != "Const"]
        if len(consts) != 1 or len(others) != 1:
            return None, None
        return self.g.const(consts[0]), others[0]

    def scalar(self, layer: Layer) -> float:
        value, _ = self.const_operand(layer)
        if value is None or value.size != 1:
            self.fail(layer, "expected a scalar constant operand")
        return float(value.reshape(()))

    def add_const(self, layer: Layer) -> np.ndarray:
        if layer.type != "Add":
            self.fail(layer, "expected an Add of a constant")
        value, _ = self.const_operand(layer)
        if value is None:
            self.fail(layer, "expected an Add of a constant")
        return value

    def check_close(self, layer: Layer, found: float, expected: float, what: str) -> None:
        if not math.isclose(found, expected, rel_tol=1e-5, abs_tol=1e-12):
            self.fail(layer, f"{what} is {found!r}, expected {expected!r}")


def _check_pixel_norm(walk: _Walker, z: Layer, first_matmul: Layer) -> float:
    """The ops between z and the first dense layer must be x * (mean(x^2) + eps)^-1/2; returns eps."""
    g = walk.g
    ops = [g.layers[i] for i in sorted(g.ancestors(first_matmul) - {z.id}) if g.layers[i].type != "Const"]
    types = sorted(op.type for op in ops)
    if types != sorted(["Power", "ReduceMean", "Add", "Power", "Power", "Multiply", "Multiply"]):
        walk.fail(first_matmul, f"unexpected ops before the first dense layer: {types}")
    powers = sorted(walk.scalar(op) for op in ops if op.type == "Power")
    if not np.allclose(powers, [-1.0, 0.5, 2.0]):
        walk.fail(first_matmul, f"pixel norm powers are {powers}, expected (2, 0.5, -1)")
    for op in ops:
        if op.type == "Multiply" and walk.const_operand(op)[0] is not None:
            walk.check_close(op, walk.scalar(op), 1.0, "pixel norm numerator")
    (add,) = [op for op in ops if op.type == "Add"]
    return walk.scalar(add)


def _import_mapping(g: IRGraph, cfg_kw: dict) -> dict[str, Tensor]:
    walk = _Walker(g)
    (z,) = g.parameters()
    z_dim = z.output_shape()[-1]
    matmuls = [layer for layer in g.topological_order() if layer.type == "MatMul"]
    if not matmuls:
        raise IRFormatError(f"{g.name}: no dense layers")
    cfg_kw["pixel_norm_eps"] = _check_pixel_norm(walk, z, matmuls[0])
    state, slopes, gains = {}, set(), set()
    for i, mm in enumerate(matmuls):
        if mm.data.get("transpose_b") != "true" or mm.data.get("transpose_a") == "true":
            walk.fail(mm, "expected x @ W^T")
        weight = g.const_input(mm, 1)  # [out, in]
        add = walk.next(mm, "Add")
        bias_src = [s for s in g.inputs(add) if s.id != mm.id][0]
        bias = g.const(bias_src) if bias_src.type == "Const" else g.const(g.producer(bias_src, 0))  # Reshape(Const)
        act = walk.next(add, "PReLU")
        slopes.add(walk.scalar(act))
        gain_op = walk.next(act, "Multiply")
        gains.add(walk.scalar(gain_op))
        state[f"mapping.fc{i}.weight"] = torch.from_numpy(weight)
        state[f"mapping.fc{i}.bias"] = torch.from_numpy(bias.reshape(-1))
        if i + 1 < len(matmuls) and walk.next(gain_op) is not matmuls[i + 1]:
            walk.fail(gain_op, "the dense layers are not a chain")
    if len(slopes) != 1 or len(gains) != 1:
        raise IRFormatError(f"{g.name}: the dense layers disagree on slope {slopes} or gain {gains}")
    cfg_kw.update(z_dim=z_dim, w_dim=matmuls[-1].output_shape()[-1], mapping_layers=len(matmuls),
                  mapping_lrelu_slope=slopes.pop(), mapping_lrelu_gain=gains.pop())
    return state


def _haar_mix_from_graph(walk: _Walker, split: Layer, end: Layer, channels: int) -> np.ndarray:
    """Trace the exported inverse DWT (a split into LL and the high bands, 1-D transposed convs along
    the height and the width, adds) from `split` to `end` and return its [4, 4] synthesis matrix in
    `haar_synthesis_matrix` order (rows: output pixel 2a+b; columns: LL, LH, HL, HH).

    Every value on the way is linear in the bands, and each transposed conv applies a 2-tap filter
    along one axis, so a value is represented as {band: (height filter, width filter)}.
    """
    g = walk.g
    sizes = g.const_input(split, 2).tolist()
    if split.type != "VariadicSplit" or int(g.const_input(split, 1)) != 1 or sizes != [channels, 3 * channels]:
        walk.fail(split, f"expected a split of the channels into {channels} + {3 * channels}")
    values: dict[tuple[int, int], dict[int, list]] = {}  # (layer id, output port) -> {band: [hfilt, wfilt]}
    out_ports = [p.id for p in split.outputs]
    values[(split.id, out_ports[0])] = {0: [None, None]}
    high = (split.id, out_ports[1])
    inside = (g.ancestors(end) | {end.id}) & g.descendants(split)
    for layer in (layer for layer in g.topological_order() if layer.id in inside):
        src = g.source(layer, layer.inputs[0].id)
        outs = [p.id for p in layer.outputs]
        if layer.type == "Reshape":
            if src != high or list(layer.output_shape())[1:3] != [channels, 3]:
                walk.fail(layer, "expected the high bands reshaped to [N, C, 3, H, W]")
            values[(layer.id, outs[0])] = "high"
        elif layer.type == "VariadicSplit":
            if values.get(src) != "high" or int(g.const_input(layer, 1)) != 2 or g.const_input(layer, 2).tolist() != [1, 1, 1]:
                walk.fail(layer, "expected the three high bands split apart along dim 2")
            for k, port in enumerate(outs):
                values[(layer.id, port)] = {1 + k: [None, None]}
        elif layer.type == "Squeeze":
            if int(np.asarray(g.const_input(layer, 1)).reshape(-1)[0]) != 2:
                walk.fail(layer, "expected a squeeze of dim 2")
            values[(layer.id, outs[0])] = values[src]
        elif layer.type == "GroupConvolutionBackpropData":
            kernel = g.const_input(layer, 1)  # [groups, 1, 1, kh, kw]
            strides = layer.attr("strides", "ints")
            if layer.attr("pads_begin", "ints") != (0, 0) or layer.attr("pads_end", "ints") != (0, 0) or any(layer.attr("output_padding", "ints")):
                walk.fail(layer, "expected an unpadded transposed conv")
            if not np.all(kernel == kernel[:1]):
                walk.fail(layer, "expected the same filter for every channel")
            axis = {(2, 1): 0, (1, 2): 1}.get(strides)
            taps = kernel[0, 0, 0].reshape(-1)
            if axis is None or taps.size != 2 or kernel.shape[3 + axis] != 2:
                walk.fail(layer, f"expected a 2-tap stride-2 filter along one axis, got strides {strides}, kernel {kernel.shape}")
            new = {}
            for band, filt in values[src].items():
                if filt[axis] is not None:
                    walk.fail(layer, "two filters along the same axis")
                filt = list(filt)
                filt[axis] = taps
                new[band] = filt
            values[(layer.id, outs[0])] = new
        elif layer.type == "Add":
            a, b = (values[g.source(layer, p.id)] for p in layer.inputs)
            if set(a) & set(b):
                walk.fail(layer, "a band reaches an add twice")
            values[(layer.id, outs[0])] = {**a, **b}
        elif layer.type in ("Const", "ShapeOf", "Gather", "Unsqueeze", "Concat"):
            continue  # shape arithmetic
        else:
            walk.fail(layer, f"unexpected {layer.type} inside the inverse DWT")
    final = values.get((end.id, end.outputs[0].id))
    if not isinstance(final, dict) or sorted(final) != [0, 1, 2, 3] or any(f[0] is None or f[1] is None for f in final.values()):
        walk.fail(end, "the inverse DWT does not combine all four bands along both axes")
    mix = np.zeros([4, 4])
    for band, (hf, wf) in final.items():
        for a in (0, 1):
            for b in (0, 1):
                mix[2 * a + b, band] = hf[a] * wf[b]
    return mix


def _check_haar(walk: _Walker, split: Layer, end: Layer, channels: int) -> None:
    mix = _haar_mix_from_graph(walk, split, end, channels)
    expected = haar_synthesis_matrix().numpy()
    if not np.allclose(mix, expected, atol=1e-6):
        walk.fail(end, f"the inverse DWT is not the Haar transform this port implements: {mix.tolist()}")


def _find_affines(walk: _Walker, style: Layer) -> list[dict]:
    """Each style affine: w @ W^T + b, reshaped to [N, C, 1, 1], maybe times a gain, then multiplied
    into a feature map (the modulation). Returned in the order the image path reaches them, each
    with `modulate` (that Multiply) and `features` (its feature-map operand)."""
    g = walk.g
    affines = []
    for mm in g.consumers(style):
        if mm.type != "MatMul":
            continue
        if mm.data.get("transpose_b") != "true" or mm.data.get("transpose_a") == "true":
            walk.fail(mm, "expected w @ W^T")
        weight = g.const_input(mm, 1)
        add = walk.next(mm, "Add")
        bias = walk.add_const(add).reshape(-1)
        styles = walk.next(add, "Reshape")
        node = walk.next(styles, "Multiply")
        gain = 1.0
        value, _ = walk.const_operand(node)
        if value is not None:  # the conv's 1/sqrt(fan_in) gain
            gain = float(value.reshape(()))
            styles, node = node, walk.next(node, "Multiply")
        features = [i for i in g.inputs(node) if i.id != styles.id]
        if len(features) != 1:
            walk.fail(node, "expected a style times a feature map")
        affines.append(dict(weight=weight, bias=bias, gain=gain, modulate=node, features=features[0]))
    order = {layer.id: k for k, layer in enumerate(g.topological_order())}
    affines.sort(key=lambda a: order[a["modulate"].id])
    for prev, cur in zip(affines, affines[1:]):  # a strict chain: data-flow order is unique
        if prev["modulate"].id not in g.ancestors(cur["modulate"]):
            walk.fail(cur["modulate"], "the style modulations are not on one path")
    return affines


def _styled_conv(walk: _Walker, modulate: Layer, resolution: int, depthwise: bool) -> tuple[dict, Layer]:
    """Read modulate -> [GroupConvolution ->] Convolution -> Add noise -> Add bias -> PReLU."""
    g = walk.g
    p: dict = {}
    node = walk.next(modulate)
    if depthwise:
        if node.type != "GroupConvolution":
            walk.fail(node, "expected the depthwise conv")
        dw = g.const_input(node, 1)  # [groups, 1, 1, k, k]
        if dw.shape[1:3] != (1, 1):
            walk.fail(node, f"expected a depthwise kernel, got {dw.shape}")
        k = dw.shape[-1]
        if node.attr("pads_begin", "ints") != (k // 2, k // 2) or node.attr("strides", "ints") != (1, 1):
            walk.fail(node, "expected a same-padded stride-1 depthwise conv")
        p["weight_dw"] = dw.reshape(dw.shape[0], 1, k, k)
        node = walk.next(node, "Convolution")
        pw = g.const_input(node, 1)
        if pw.shape[2:] != (1, 1):
            walk.fail(node, "expected the pointwise 1x1 conv")
        p["weight_permute"] = pw[:, :, 0, 0]
    else:
        if node.type != "Convolution":
            walk.fail(node, "expected a conv")
        weight = g.const_input(node, 1)
        k = weight.shape[-1]
        if node.attr("pads_begin", "ints") != (k // 2, k // 2) or node.attr("strides", "ints") != (1, 1):
            walk.fail(node, "expected a same-padded stride-1 conv")
        p["weight"] = weight
    out_channels = node.output_shape()[1]
    for _ in range(2):  # the noise map and the bias, in either order
        node = walk.next(node, "Add")
        value = walk.add_const(node)
        if value.shape == (1, 1, resolution, resolution):
            p["noise_const"] = value[0, 0]
        elif value.shape == (1, out_channels, 1, 1):
            p["bias"] = value.reshape(-1)
        else:
            walk.fail(node, f"unexpected added constant of shape {value.shape}")
    if set(p) & {"noise_const", "bias"} != {"noise_const", "bias"}:
        walk.fail(node, "expected a noise map and a bias")
    act = walk.next(node, "PReLU")
    p["slope"] = walk.scalar(act)
    p["kernel_size"] = k
    return p, act


def _import_synthesis(g: IRGraph, cfg_kw: dict) -> dict[str, Tensor]:
    walk = _Walker(g)
    (style,) = g.parameters()
    affines = _find_affines(walk, style)
    state: dict[str, np.ndarray] = {}

    def put_affine(prefix: str, a: dict, expected_gain: float) -> None:
        walk.check_close(a["modulate"], a["gain"], expected_gain, f"{prefix} style gain")
        state[f"{prefix}.weight"] = a["weight"]
        state[f"{prefix}.bias"] = a["bias"]

    # The 4x4 constant and the dense conv on it.
    first = affines[0]
    x0 = first["features"]
    consts = [g.layers[i] for i in g.ancestors(x0) | {x0.id} if g.layers[i].type == "Const" and len(g.layers[i].output_shape()) == 4]
    if len(consts) != 1:
        walk.fail(first["modulate"], "cannot find the constant input")
    const = g.const(consts[0])[0]  # [C, r, r]
    channels, res = [const.shape[0]], [const.shape[-1]]
    state["synthesis.const"] = const
    p, node = _styled_conv(walk, first["modulate"], res[0], depthwise=False)
    k = p["kernel_size"]
    if p["weight"].shape[:2] != (channels[0], channels[0]):
        walk.fail(first["modulate"], f"expected a {channels[0]} -> {channels[0]} conv on the constant, got {p['weight'].shape}")
    put_affine("synthesis.conv1.conv.affine", first, 1 / math.sqrt(channels[0] * k * k))
    state["synthesis.conv1.conv.weight"] = p["weight"]
    state["synthesis.conv1.noise_const"], state["synthesis.conv1.bias"] = p["noise_const"], p["bias"]
    slopes = {p["slope"]}

    # The blocks: (up, conv1, conv2) x n, then the image head.
    rest = affines[1:]
    if len(rest) % 3 != 1:
        raise IRFormatError(f"{g.name}: {len(affines)} style affines do not fit 1 + 3 x blocks + 1")
    for i in range(len(rest) // 3):
        up, c1, c2 = rest[3 * i : 3 * i + 3]
        r = res[-1] * 2
        prefix = f"synthesis.b{r}"
        if up["features"] is not node:
            walk.fail(up["modulate"], "the up-sampling does not read the previous layer")
        c_in = up["weight"].shape[0]
        split = walk.next(up["modulate"], "VariadicSplit")
        end = c1["features"]
        _check_haar(walk, split, end, c_in // 4)
        put_affine(f"{prefix}.up.affine", up, 1.0)
        for name, a in (("conv1", c1), ("conv2", c2)):
            p, node = _styled_conv(walk, a["modulate"], r, depthwise=True)
            k = p["kernel_size"]
            fan_in = p["weight_dw"].shape[0]
            put_affine(f"{prefix}.{name}.conv.affine", a, 1 / math.sqrt(fan_in * k * k))
            for key in ("weight_dw", "weight_permute"):
                state[f"{prefix}.{name}.conv.{key}"] = p[key]
            state[f"{prefix}.{name}.noise_const"], state[f"{prefix}.{name}.bias"] = p["noise_const"], p["bias"]
            slopes.add(p["slope"])
            if name == "conv1" and c2["features"] is not node:
                walk.fail(c2["modulate"], "conv2 does not read conv1")
        res.append(r)
        channels.append(state[f"{prefix}.conv2.bias"].shape[0])

    # The image head: modulated 1x1 conv to 4 sub-bands x RGB, a bias, the inverse DWT.
    head = rest[-1]
    if head["features"] is not node:
        walk.fail(head["modulate"], "the image head does not read the last layer")
    conv = walk.next(head["modulate"], "Convolution")
    weight = g.const_input(conv, 1)
    if weight.shape[2:] != (1, 1) or weight.shape[0] % 4:
        walk.fail(conv, f"expected a 1x1 conv to 4 x image channels, got {weight.shape}")
    img_channels = weight.shape[0] // 4
    put_affine("synthesis.to_img.conv.affine", head, 1 / math.sqrt(weight.shape[1]))
    state["synthesis.to_img.conv.weight"] = weight
    add = walk.next(conv, "Add")
    state["synthesis.to_img.bias"] = walk.add_const(add).reshape(-1)
    split = walk.next(add, "VariadicSplit")
    (result,) = g.results()
    _check_haar(walk, split, g.producer(result), img_channels)
    if g.producer(result).output_shape()[-1] != 2 * res[-1]:
        walk.fail(result, "the output is not twice the size of the last features")

    # Sub-band channels into stylelift's band-major order (see `exported_band_order`): the rows of
    # the layer making them, of its bias, and of the style affine scaling them.
    prev = "synthesis.conv1"
    for r, c_in in zip(res[1:], channels[:-1]):
        order = exported_band_order(c_in // 4)
        weight = f"{prev}.conv.weight" if prev == "synthesis.conv1" else f"{prev}.conv.weight_permute"
        for key in (weight, f"{prev}.bias", f"synthesis.b{r}.up.affine.weight", f"synthesis.b{r}.up.affine.bias"):
            state[key] = state[key][order]
        prev = f"synthesis.b{r}.conv2"
    order = exported_band_order(img_channels)
    for key in ("synthesis.to_img.conv.weight", "synthesis.to_img.bias"):
        state[key] = state[key][order]

    if len(slopes) != 1:
        raise IRFormatError(f"{g.name}: the convs disagree on the leaky ReLU slope: {slopes}")
    cfg_kw.update(channels=tuple(channels), const_resolution=res[0], kernel_size=k, lrelu_slope=slopes.pop(), img_channels=img_channels)
    if style.output_shape()[-1] != cfg_kw.get("w_dim", style.output_shape()[-1]):
        walk.fail(style, "the synthesis w does not match the mapping's output")
    return {key: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for key, v in state.items()}


def import_mobilestylegan(mapping_xml: Union[str, os.PathLike], synthesis_xml: Union[str, os.PathLike]) -> tuple[MobileStyleGANConfig, dict[str, Tensor]]:
    """Read the mapping and synthesis IR files into a config and a state dict (without w_avg).

    The `.bin` files are expected next to the `.xml` files.
    """
    cfg_kw: dict = {}
    state = _import_mapping(read_ir(mapping_xml), cfg_kw)
    state.update(_import_synthesis(read_ir(synthesis_xml), cfg_kw))
    # Scalars read from float32 constants, written back in their shortest float32 form (0.2, not 0.2000000029...).
    cfg_kw = {k: float(str(np.float32(v))) if isinstance(v, float) else v for k, v in cfg_kw.items()}
    cfg = MobileStyleGANConfig(**cfg_kw)
    return cfg, state


# ----------------------------------------------------------------------------------------------
# Finding the wheel's files, converting once, caching


def build_mobilestylegan(cfg: MobileStyleGANConfig, state: dict[str, Tensor]) -> MobileStyleGAN:
    """The module for `cfg` holding exactly `state` (strict), frozen, in eval mode.

    Built on the meta device and given the state's tensors, so no random initialisation is run
    and no weights are copied.
    """
    with torch.device("meta"):
        G = MobileStyleGAN(cfg)
    G.load_state_dict(state, strict=True, assign=True)
    return G.eval().requires_grad_(False)


def wheel_files() -> dict[str, Path]:
    """The IR files inside the installed `random-face` wheel, found through its file list (never imported)."""
    from .checkpoint import NetworkNotFoundError

    hint = f"MobileStyleGAN's weights come in the PyPI wheel {WHEEL}=={WHEEL_VERSION}; install it with: {PIP_COMMAND}"
    try:
        listed = importlib.metadata.files(WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        raise NetworkNotFoundError(f"{WHEEL} is not installed. {hint}") from None
    wanted = {f"{net}.{ext}": None for net in ("MappingNetwork", "SynthesisNetwork") for ext in ("xml", "bin")}
    for entry in listed:
        if entry.parent.name == "data" and entry.name in wanted:
            wanted[entry.name] = Path(entry.locate())
    missing = [name for name, path in wanted.items() if path is None or not path.is_file()]
    if missing:
        raise NetworkNotFoundError(f"the installed {WHEEL} lacks {', '.join(missing)}. {hint}")
    return wanted


def source_digest(files: dict[str, Path]) -> str:
    """sha256 over the names and contents of the source files: the cache key."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        with open(files[name], "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def convert_mobilestylegan(files: dict[str, Path]) -> MobileStyleGAN:
    """Build the module from the IR files and compute its w_avg (10,000 mapped z, fixed seed)."""
    from .checkpoint import estimate_w_avg

    cfg, state = import_mobilestylegan(files["MappingNetwork.xml"], files["SynthesisNetwork.xml"])
    state["mapping.w_avg"] = torch.zeros([cfg.w_dim])
    G = build_mobilestylegan(cfg, state)
    G.mapping.w_avg.copy_(estimate_w_avg(G))
    return G


def _save_cache(G: MobileStyleGAN, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "config": G.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()},
        "meta": meta,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old file, no file, or the whole new one
    finally:
        tmp.unlink(missing_ok=True)


def _load_cache(path: Path, digest: str) -> Optional[MobileStyleGAN]:
    """The cached network, or None when the file is missing, unreadable or for other sources."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION or data["meta"]["source sha256"] != digest:
            return None
        G = build_mobilestylegan(MobileStyleGANConfig.from_dict(data["config"]), data["state_dict"])
    except Exception as e:  # a damaged cache file is rebuilt, not fatal
        log.warning("ignoring the unreadable cache file %s (%s)", path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    return G


def load_mobilestylegan(device: Union[str, torch.device] = "cpu") -> MobileStyleGAN:
    """MobileStyleGAN FFHQ 1024 from the installed `random-face` wheel, frozen, in eval mode.

    The first call converts the IR files (about a second) and writes the result to
    `cache_dir()/mobilestylegan/`, named by the sha256 of the source files; later calls load that.
    Raises NetworkNotFoundError (saying which pip command to run) when the wheel is missing.
    """
    from .download import cache_dir

    files = wheel_files()
    digest = source_digest(files)
    path = cache_dir() / "mobilestylegan" / f"{SOURCE_NAME}-{digest[:16]}.pt"
    G = _load_cache(path, digest)
    if G is None:
        log.info("converting MobileStyleGAN from %s (once; cached at %s)", files["SynthesisNetwork.xml"].parent, path)
        G = convert_mobilestylegan(files)
        meta = {"source sha256": digest, "source": f"{WHEEL}=={WHEEL_VERSION}", "files": sorted(files)}
        _save_cache(G, path, meta)
    G.eval().requires_grad_(False)
    G.source = SOURCE_NAME
    G.source_format = "openvino-ir"
    G.source_info = {
        "model": "MobileStyleGAN (Belousov 2021), FFHQ",
        "weights": f"PyPI wheel {WHEEL}=={WHEEL_VERSION} (OpenVINO IR v10), converted by stylelift",
        "licence": "non-commercial use (derived from StyleGAN2 and FFHQ)",
        "source sha256": digest[:16],
        "converted weights": str(path),
    }
    return G.to(device)
