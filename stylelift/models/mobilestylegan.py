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

The weights come from the wheel's OpenVINO IR files: `mobilestylegan_ir.py` reads them into
this module's state dict, `mobilestylegan_wheel.py` finds the wheel, converts once and caches.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import MappedGenerator, broadcast_truncated, check_c, check_noise_mode, check_placed, check_ws, check_z


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
    # the product runs in the weights' dtype: under a caller's autocast x and the styles come in half
    # precision, which the out= products below refuse beside float32 weights (a no-op otherwise)
    pixels, styles = pixels.to(weight.dtype), styles.to(weight.dtype)
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
        check_noise_mode(noise_mode)
        if noises:
            raise InputError("MobileStyleGAN has no noise inputs (noise_layers() is empty); pass noises=None")
        check_placed(self, ws=ws)
        if out_res not in (None, self.img_resolution, self.img_resolution // 2):
            raise InputError(f"out_res must be None, {self.img_resolution} or {self.img_resolution // 2}, got {out_res}")
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
        check_z(z, self.z_dim)
        check_c(c, 0, None)  # unconditional
        check_placed(self, z=z)
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + self.eps).rsqrt()
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), self.slope) * self.gain
        return broadcast_truncated(x, self.num_ws, truncation_psi, truncation_cutoff, self.w_avg.lerp)


class MobileStyleGAN(MappedGenerator):
    """MobileStyleGAN generator with the StyleGAN2 generator's interface: `mapping(z) -> ws`, `synthesis(ws) -> img`."""

    family = "mobilestylegan"

    def __init__(self, cfg: MobileStyleGANConfig = MobileStyleGANConfig()):
        super().__init__(cfg)
        self.mapping = MobileMappingNetwork(cfg)
        self.synthesis = MobileSynthesisNetwork(cfg)

    @property
    def layer_resolutions(self) -> list[int]:
        """The resolution each ws index acts at (for coarse/middle/fine style ranges)."""
        return self.synthesis.layer_resolutions

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channels={list(self.config.channels)}"
