"""StyleGAN2 generator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

A pure-torch port written to reproduce NVIDIA's stylegan2-ada-pytorch networks bit for bit on
the CPU: the order of floating-point operations in the inference path follows the reference
implementation (its reference, non-CUDA code path), so the same weights and the same w give the
same image. Parameter names follow NVIDIA's (`mapping.fc0.weight`, `synthesis.b8.conv0.affine.bias`,
...), so a state dict from an NVIDIA pickle loads with `load_state_dict(strict=True)`.

Stored weights are unscaled; the equalised-learning-rate gain is applied at run time, as in the
paper. Everything is computed in float32 (NVIDIA runs the top resolutions in fp16 on a GPU, which
no fp32 port can match bit for bit; on the CPU its outputs and stylelift's are identical).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import is_real
from .base import MAX_LR_MULTIPLIER, MAX_TAP, MappedGenerator, broadcast_truncated, check_feature_maps, check_int_fields, check_c, check_noise_mode, check_placed, checked_resolution, check_noises, check_ws, check_z

ARCHITECTURES = ("orig", "skip", "resnet")
OP_ORDERS = ("nvidia", "rosinality")
LRELU_GAIN = math.sqrt(2)


# integer settings and the range a real network can have (a file's config is checked against them
# before anything is built from it)
_INT_FIELDS = (
    ("z_dim", 1, 1 << 14), ("c_dim", 0, 1 << 16), ("w_dim", 1, 1 << 14), ("img_channels", 1, 16),
    ("mapping_layers", 1, 64), ("mapping_layer_features", 1, 1 << 14), ("embed_features", 1, 1 << 14),
    ("channel_base", 1, 1 << 22), ("channel_max", 1, 1 << 14), ("num_fp16_res", 0, 16),
)  # fmt: skip


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything needed to rebuild a StyleGAN2 generator; saved next to its weights."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_layer_features: Optional[int] = None  # hidden width of the mapping MLP; None = w_dim
    embed_features: Optional[int] = None  # label embedding width; None = w_dim (when c_dim > 0)
    channel_base: int = 32768
    channel_max: int = 512
    channels: Optional[tuple[int, ...]] = None  # per block resolution 4, 8, ...; overrides base/max
    architecture: str = "skip"
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    use_noise: bool = True
    num_fp16_res: int = 0  # recorded for information; stylelift always computes in float32
    # Where the weight gains and the truncation are applied: "nvidia" (stylegan2-ada-pytorch) or
    # "rosinality" (stylegan2-pytorch). Mathematically the same; it only decides the last bits, so
    # each format's networks reproduce their own reference code exactly.
    op_order: str = "nvidia"

    def __post_init__(self):
        object.__setattr__(self, "img_resolution", checked_resolution(self.img_resolution))
        if self.op_order not in OP_ORDERS:
            raise ValueError(f"op_order must be one of {OP_ORDERS}, got {self.op_order!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        check_int_fields(self, _INT_FIELDS, optional=("mapping_layer_features", "embed_features"))
        if self.channels is not None:
            if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in self.channels):  # (int() of inf raised OverflowError, of 3.7 gave 3)
                raise ValueError(f"channels must be whole numbers, got {list(self.channels)!r:.80}")
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if len(self.channels) != len(self.block_resolutions) or not all(1 <= c <= 1 << 14 for c in self.channels):
                raise ValueError(
                    f"channels must list {len(self.block_resolutions)} positive widths "
                    f"(one per block resolution), got {self.channels}"
                )
        check_feature_maps(self.block_channels)
        f = self.resample_filter
        # taps, and their sum, of at least 1/MAX_TAP in size (but 0): the 2-D filter is the taps'
        # outer product over its sum squared, and tinier ones underflow float32 into 0/0
        if (not isinstance(f, (tuple, list)) or not 1 <= len(f) <= 16 or not all(is_real(v) and (v == 0 or 1 / MAX_TAP <= abs(v) <= MAX_TAP) for v in f)
                or abs(sum(f)) < 1 / MAX_TAP):
            raise ValueError(f"resample_filter must list 1 to 16 numbers, each 0 or within 1/{MAX_TAP} and {MAX_TAP} in size, with a sum as large, got {f!r:.40}")
        object.__setattr__(self, "resample_filter", tuple(f))
        if not is_real(self.mapping_lr_multiplier) or not 0 < self.mapping_lr_multiplier <= MAX_LR_MULTIPLIER:
            raise ValueError(f"mapping_lr_multiplier must be a number above 0 and at most {MAX_LR_MULTIPLIER:g}, got {self.mapping_lr_multiplier!r:.40}")
        if self.conv_clamp is not None and (not is_real(self.conv_clamp) or self.conv_clamp <= 0):
            raise ValueError(f"conv_clamp must be a positive number or None, got {self.conv_clamp!r:.40}")
        if not isinstance(self.use_noise, bool):
            raise ValueError(f"use_noise must be true or false, got {self.use_noise!r:.40}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def block_channels(self) -> dict[int, int]:
        if self.channels is not None:
            return dict(zip(self.block_resolutions, self.channels))
        return {r: min(self.channel_base // r, self.channel_max) for r in self.block_resolutions}

    @property
    def num_ws(self) -> int:
        # Two convs per block (one in the 4x4 block) plus the last toRGB.
        return 2 * len(self.block_resolutions)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels) if self.channels is not None else None
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN2Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config keys: {sorted(unknown)}")
        d = dict(d)
        if d.get("channels") is not None:
            d["channels"] = tuple(d["channels"])
        if "resample_filter" in d:
            d["resample_filter"] = tuple(d["resample_filter"])
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# Primitive ops. Each follows the operation order of NVIDIA's reference (non-CUDA) kernels.


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Pixel norm of the input latent: x / sqrt(mean(x^2) + eps)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(x: Tensor, b: Optional[Tensor], *, lrelu: bool, gain: float = 1.0, clamp: Optional[float] = None) -> Tensor:
    """Add a bias along dim 1, optionally leaky-ReLU (slope 0.2), scale by `gain`, clamp to +-clamp."""
    if lrelu and b is not None and x.requires_grad and torch.is_grad_enabled():
        return _BiasLeakyReLU.apply(x, b, gain, clamp)
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if lrelu:
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class _BiasLeakyReLU(torch.autograd.Function):
    """bias_act's leaky-ReLU case with a lean backward: the same values, computed in place on one
    new tensor, and only the output kept for the backward pass (its sign gives the slope, reaching
    +-clamp marks a clipped value). On large feature maps this is memory-bound; the backward is
    two fused passes (leaky-ReLU's and, with a clamp, hardtanh's gradient kernels) and a scale,
    instead of the five or six a chain of autograd ops makes (projection at 512-1024 px)."""

    @staticmethod
    def forward(ctx, x: Tensor, b: Tensor, gain: float, clamp: Optional[float]) -> Tensor:
        y = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
        F.leaky_relu(y, 0.2, inplace=True)
        if gain != 1:
            y.mul_(gain)
        clamp = clamp if clamp is not None and clamp >= 0 else None
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.gain, ctx.clamp = gain, clamp
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        gx = torch.ops.aten.leaky_relu_backward(grad, y, 0.2, True)  # y has the sign of x + b
        if ctx.clamp is not None:
            gx = torch.ops.aten.hardtanh_backward(gx, y, -ctx.clamp, ctx.clamp)  # 0 where clipped
        if ctx.gain != 1:
            gx.mul_(ctx.gain)
        gb = gx.sum(dim=[i for i in range(gx.ndim) if i != 1]) if ctx.needs_input_grad[1] else None
        return gx, gb, None, None


def fir_filter_2d(taps: tuple[int, ...]) -> Tensor:
    """The separable low-pass filter as a normalised 2-D kernel, e.g. [1,3,3,1] -> 4x4 summing to 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, *, up: int = 1, pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Upsample by inserting zeros, pad (x0, x1, y0, y1; negative crops), then FIR-filter per channel.

    `f` is the normalised 2-D kernel; it is scaled by `gain` (up**2 keeps the mean when upsampling).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = _depthwise_kernel(f, gain, c, x.dtype)
    return F.conv2d(x, kernel, groups=c)


def _depthwise_kernel(f: Tensor, gain: float, channels: int, dtype: torch.dtype) -> Tensor:
    f = f * (gain ** (f.ndim / 2))
    f = f.to(dtype).flip([0, 1])
    return f[None, None].repeat(channels, 1, 1, 1)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling with the FIR filter (used on the skip image and in the resnet shortcut)."""
    k = f.shape[-1]
    p0, p1 = (k + 1) // 2, (k - 2) // 2
    return upfirdn2d(x, f, up=2, pad=(p0, p1, p0, p1), gain=4)


def _up2_pads(k: int, fk: int) -> tuple[int, int]:
    """The FIR filter's padding after a stride-2 transposed kxk conv, so that the output is 2x the input."""
    return (fk + 1) // 2 - (k - 1) + k // 2, (fk - 2) // 2 - (k - 2) + k // 2


def conv_up2(x: Tensor, weight: Tensor, f: Tensor, groups: int = 1) -> Tensor:
    """A 3x3 (or kxk) conv that doubles the resolution: a stride-2 transposed conv, then the FIR filter.

    `weight` is [O, I/groups, k, k] in conv2d layout; no spatial flip (NVIDIA's and rosinality's
    PyTorch weights agree on this).
    """
    o, i, kh, kw = weight.shape
    if groups == 1:
        w = weight.transpose(0, 1)
    else:
        w = weight.reshape(groups, o // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, o // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)
    p0, p1 = _up2_pads(kw, f.shape[-1])
    return upfirdn2d(x, f, pad=(p0, p1, p0, p1), gain=4)


def fold_filter_into_up_kernel(weight: Tensor, f: Tensor) -> Optional[Tensor]:
    """The kernel [O, I, k+fk-1, k+fk-1] of one stride-2 transposed conv that equals conv_up2(x, weight, f)
    (`conv_up2_folded`): each kxk kernel convolved with the filter (times 4, its up-sampling gain).
    None for an odd-length filter, whose padding is lopsided: one transposed conv cannot crop that."""
    o, i, k, _ = weight.shape
    fk = f.shape[-1]
    p0, p1 = _up2_pads(k, fk)
    if p0 != p1:
        return None
    kernel = F.conv2d(weight.reshape(o * i, 1, k, k), (4 * f).flip([0, 1]).to(weight.dtype)[None, None], padding=fk - 1)
    return kernel.reshape(o, i, k + fk - 1, k + fk - 1)


def conv_up2_folded(x: Tensor, kernel: Tensor) -> Tensor:
    """conv_up2 with a kernel from fold_filter_into_up_kernel: one convolution instead of a conv and
    a per-channel filter pass over the doubled feature map."""
    return F.conv_transpose2d(x, kernel.transpose(0, 1), stride=2, padding=(kernel.shape[-1] - 2) // 2)


def optimising_styles_only(styles: Tensor, weight: Tensor) -> bool:
    """True when gradients flow into the styles but not the weight: a frozen generator under
    optimisation (projection, encoder training), where the non-fused modulated conv runs."""
    return torch.is_grad_enabled() and styles.requires_grad and not weight.requires_grad


def modulated_conv2d(
    x: Tensor,  # [N, I, H, W]
    weight: Tensor,  # [O, I, k, k]
    styles: Tensor,  # [N, I]
    *,
    demodulate: bool = True,
    up: bool = False,
    filter_2d: Optional[Tensor] = None,
) -> Tensor:
    """Modulate the weights by the styles, demodulate, and convolve each sample with its own weights.

    Without gradients (generation) this runs as one grouped convolution over the batch, as the
    reference does at inference, so images match it bit for bit. When gradients flow into the
    styles but not into the weights (projection, encoder training: a frozen generator) it runs
    the equivalent "non-fused" form: scale the input by the styles, convolve with the shared
    weights, scale the output by the demodulation coefficients. Its backward pass needs only the
    input gradient of a plain convolution, not the gradient of N per-sample weight tensors, which
    is several times cheaper; the results agree to float rounding.
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    if optimising_styles_only(styles, weight):
        return _modulated_conv2d_unfused(x, weight, styles, demodulate=demodulate, up=up, filter_2d=filter_2d)
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, i, kh, kw)
    if up:
        x = conv_up2(x, w, filter_2d, groups=n)
    else:
        x = F.conv2d(x, w, padding=kw // 2, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


def conv_layout(device: torch.device) -> torch.memory_format:
    """The memory layout the unfused modulated conv runs in: channels-last, oneDNN's fast one, on the
    CPU; NCHW elsewhere. On a GPU, with channels-last tensors cuDNN spent 15% of a 1024-px batch-8
    step on layout transforms and the depthwise blur ran at half speed (H200, one machine: 0.148 ->
    0.108 s per step NCHW, 0.037 -> 0.028 at batch 1)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def fold_up_filter(device: torch.device) -> bool:
    """Whether the unfused up-conv folds the FIR filter into its kernel (`conv_up2_folded`): on CUDA,
    where one 6x6 transposed conv beat the 3x3 one plus the per-channel filter pass (H200, forward +
    backward, batch 8: 15.0 -> 6.1 ms at 1024 px, 64 -> 32 channels; 0.96 -> 0.52 at 8 px; 4-10%
    slower at 64-128 px, 512 channels; a 1024-px step 0.108 -> 0.092 s), but not on the CPU, where
    oneDNN took 1.8-10x as long. Other devices (MPS, XPU) were not measured and keep the separate
    filter pass; both give the same result."""
    return device.type == "cuda"


def _modulated_conv2d_unfused(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, up: bool, filter_2d: Optional[Tensor], weight_sq: Optional[Tensor] = None, folded: bool = False) -> Tensor:
    """The non-fused modulated conv; with `folded`, `weight` is the up-conv's kernel with the filter
    folded in (`up` and `filter_2d` are then not used, and `weight_sq` must be the 3x3 weight's)."""
    assert not (folded and demodulate and weight_sq is None), "a folded kernel's own sum of squares is not the weight's"
    x = (x * styles[:, :, None, None]).contiguous(memory_format=conv_layout(x.device))
    if folded:
        x = conv_up2_folded(x, weight)
    else:
        x = conv_up2(x, weight, filter_2d) if up else F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # sum over I, k, k of (weight * style)^2 = styles^2 @ (sum over k, k of weight^2)^T
        if weight_sq is None:
            weight_sq = weight.square().sum(dim=[2, 3])
        dcoefs = (styles.square() @ weight_sq.t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs[:, :, None, None]
    return x


# ----------------------------------------------------------------------------------------------
# Layers


class FullyConnected(nn.Module):
    """Dense layer with equalised learning rate: weight * lr_mul / sqrt(fan_in), bias * lr_mul."""

    def __init__(self, in_features: int, out_features: int, *, lrelu: bool = False, lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.lrelu = in_features, out_features, lrelu
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, lrelu={self.lrelu}, lr_mul={self.bias_gain:g}"


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to [N, num_ws, w_dim], with truncation toward w_avg."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws
        hidden = cfg.mapping_layer_features or cfg.w_dim
        embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim > 0 else 0
        if cfg.c_dim > 0:
            self.embed = FullyConnected(cfg.c_dim, embed)
        features = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for idx in range(cfg.mapping_layers):
            layer = FullyConnected(features[idx], features[idx + 1], lrelu=True, lr_multiplier=cfg.mapping_lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.num_layers = cfg.mapping_layers
        self.op_order = cfg.op_order
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None) -> Tensor:
        x = None
        if self.z_dim > 0:
            check_z(z, self.z_dim)
            x = normalize_2nd_moment(z.to(torch.float32))
        check_c(c, self.c_dim, z.shape[0] if self.z_dim > 0 else None)
        check_placed(self, z=z, c=c)
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return broadcast_truncated(x, self.num_ws, truncation_psi, truncation_cutoff, self._truncate)

    def _truncate(self, x: Tensor, psi: float) -> Tensor:
        if self.op_order == "rosinality":
            return self.w_avg + psi * (x - self.w_avg)
        return self.w_avg.lerp(x, psi)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x) + per-pixel noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool, use_noise: bool, conv_clamp: Optional[float], op_order: str = "nvidia"):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.up, self.use_noise, self.conv_clamp = up, use_noise, conv_clamp
        # rosinality scales the weight by 1/sqrt(fan_in) before modulating; NVIDIA leaves it to demodulation.
        self.weight_scale = 1 / math.sqrt(in_channels * 9) if op_order == "rosinality" else None
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self._frozen_cache: Optional[tuple] = None
        self.keep_frozen = False  # set by `frozen_weights_kept` for the steps of one optimisation

    def _frozen_weight(self, filter_2d: Tensor) -> tuple[Tensor, Tensor, bool]:
        """The weight as the non-fused modulated conv wants it, its sum of squares over the kernel
        ([O, I], for demodulation), and whether the up-conv's filter is folded into it
        (`fold_up_filter`). Laid out as `conv_layout` says for its device; for the up-conv, the
        transpose that conv_transpose2d convolves with is. Within `frozen_weights_kept` they are
        kept while weight and filter are unchanged (a new tensor, device or in-place update changes
        the key), so optimisation steps do not redo them, at the cost of one copy of the weight (4x
        as large when folded)."""
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in (self.weight, filter_2d))
        if self._frozen_cache is not None and self._frozen_cache[0] == key:
            return self._frozen_cache[1:]
        w = self.weight.detach()
        if self.weight_scale is not None:
            w = self.weight_scale * w
        layout = conv_layout(w.device)
        folded = fold_filter_into_up_kernel(w, filter_2d) if self.up and fold_up_filter(w.device) else None
        if self.up:
            laid = (w if folded is None else folded).transpose(0, 1).contiguous(memory_format=layout).transpose(0, 1)
        else:
            laid = w.contiguous(memory_format=layout)
        frozen = (laid, w.square().sum(dim=[2, 3]), folded is not None)
        if self.keep_frozen:
            self._frozen_cache = (key, *frozen)
        return frozen

    def forward(self, x: Tensor, w: Tensor, filter_2d: Tensor, *, noise_mode: str = "const", noise: Optional[Tensor] = None, gain: float = 1) -> Tensor:
        styles = self.affine(w)
        if self.use_noise:
            if noise is not None:  # [N, 1, r, r] or [r, r]: an explicit map (the projector's)
                noise = noise * self.noise_strength
            elif noise_mode == "random":
                noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
            elif noise_mode == "const":
                noise = self.noise_const * self.noise_strength
        if optimising_styles_only(styles, self.weight):
            weight, weight_sq, folded = self._frozen_weight(filter_2d)
            x = _modulated_conv2d_unfused(x, weight, styles, demodulate=True, up=self.up, filter_2d=filter_2d, weight_sq=weight_sq, folded=folded)
        else:
            weight = self.weight if self.weight_scale is None else self.weight_scale * self.weight
            x = modulated_conv2d(x, weight, styles, up=self.up, filter_2d=filter_2d)
        if self.use_noise and noise is not None:
            x = x.add_(noise)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), lrelu=True, gain=LRELU_GAIN * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels} @ {self.resolution}px, up={self.up}, noise={self.use_noise}"


@contextlib.contextmanager
def frozen_weights_kept(G: nn.Module) -> Iterator[None]:
    """Within it, G's synthesis layers keep the copies of their frozen weights that each step of an
    optimisation through them would make again (projection, encoder training; a loop of one's own:
    `with stylelift.models.frozen_weights_kept(G): ...`). Outside it nothing is kept: a weight
    written through `.data`, which torch does not count as a change, would be read stale by a kept
    copy. Frees the copies on the way out."""
    layers = [m for m in G.modules() if isinstance(m, SynthesisLayer)]
    before = [layer.keep_frozen for layer in layers]
    for layer in layers:
        layer.keep_frozen, layer._frozen_cache = True, None
    try:
        yield
    finally:
        for layer, keep in zip(layers, before):
            layer.keep_frozen, layer._frozen_cache = keep, None


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, conv_clamp: Optional[float], op_order: str = "nvidia"):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.op_order = op_order
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.op_order == "rosinality":  # the gain on the weight, not on the styles
            x = modulated_conv2d(x, (1 / math.sqrt(self.in_channels)) * self.weight, self.affine(w), demodulate=False)
        else:
            x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), lrelu=False, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}"


class Skip(nn.Module):
    """The resnet shortcut: 1x1 conv (no bias) and 2x FIR upsampling, scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x: Tensor, filter_2d: Tensor, gain: float) -> Tensor:
        w = self.weight * self.weight_gain
        x = F.conv2d(x, w.to(x.dtype))
        x = upsample2d(x, filter_2d)
        return x * gain if gain != 1 else x


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (up)] -> conv1 -> [toRGB], plus the skip image or the resnet shortcut."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, cfg: StyleGAN2Config):
        super().__init__()
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, cfg.architecture
        is_last = resolution == cfg.img_resolution
        kw = dict(use_noise=cfg.use_noise, conv_clamp=cfg.conv_clamp, op_order=cfg.op_order)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, cfg.w_dim, resolution, up=True, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, resolution, up=False, **kw)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if (is_last or cfg.architecture == "skip") else 0
        if self.num_torgb:
            self.torgb = ToRGB(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp, op_order=cfg.op_order)
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Skip(in_channels, out_channels)

    def forward(self, x: Optional[Tensor], img: Optional[Tensor], ws: Tensor, filter_2d: Tensor, *, noise_mode: str, noises: list) -> tuple[Tensor, Tensor]:
        w_iter = iter(ws.unbind(1))
        n_iter = iter(noises)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), filter_2d, noise_mode=noise_mode, noise=next(n_iter))
        elif self.architecture == "resnet":
            y = self.skip(x, filter_2d, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), filter_2d, noise_mode=noise_mode, noise=next(n_iter))
            x = self.conv1(x, next(w_iter), filter_2d, noise_mode=noise_mode, noise=next(n_iter), gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), filter_2d, noise_mode=noise_mode, noise=next(n_iter))
            x = self.conv1(x, next(w_iter), filter_2d, noise_mode=noise_mode, noise=next(n_iter))
        if img is not None:
            img = upsample2d(img, filter_2d)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], roughly in [-1, 1]."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.block_resolutions, self.use_noise = cfg.block_resolutions, cfg.use_noise
        channels = cfg.block_channels
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], res, cfg)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB
        self.register_buffer("filter_2d", fir_filter_2d(cfg.resample_filter), persistent=False)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The conv layers in ws order (noise index k = position in this list); none when the
        network was made without noise inputs (use_noise=False)."""
        layers = []
        for block in self.blocks() if self.use_noise else ():
            layers += [block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1]
        return layers

    def style_affine_weights(self) -> list[Tensor]:
        """For each ws index, the weight [C, w_dim] of the style affine SeFa factorises: that of the
        conv layer the ws styles, and for the last ws, which styles only the final toRGB, that
        toRGB's. The toRGBs in between, which read the ws of the next block's first conv, are left
        out, as in SeFa's own code (their colour styles are not what an edit is sought in)."""
        convs = [layer for block in self.blocks() for layer in ([block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1])]
        layers = convs + [self.blocks()[-1].torgb] * (self.num_ws - len(convs))
        return [layer.affine.weight * layer.affine.weight_gain for layer in layers]

    def forward(self, ws: Tensor, noise_mode: str = "const", noises: Optional[list[Tensor]] = None) -> Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R] in [-1, 1]. Noise inputs: the network's stored
        maps ('const'), new ones drawn from torch's global random stream ('random', as NVIDIA's code
        does), or zeros ('none'); `noises` (one [1 or N, 1, r, r] map per input, None to follow
        noise_mode) gives maps of your own, made with a torch.Generator for a seeded result."""
        check_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        layers = self.noise_layers()
        if noises is not None:
            check_noises(noises, [layer.resolution for layer in layers], ws.shape[0])
        check_placed(self, ws=ws, noises=noises)
        if noises is None or not layers:
            noises = [None] * sum(block.num_conv for block in self.blocks())
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            block_noises = noises[n_idx : n_idx + block.num_conv]
            x, img = block(x, img, block_ws, self.filter_2d, noise_mode=noise_mode, noises=block_noises)
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img


class Generator(MappedGenerator):
    """StyleGAN2 generator: `mapping(z, c) -> ws`, `synthesis(ws) -> img`, `G(z, c) = synthesis(mapping(z, c))`.

    Block r reads ws[2k-2] (conv1) and ws[2k-1] (toRGB, and the next block's conv0), k = log2(r) - 1:
    two ws per block, so ws 0-1 are 4x4, 2-3 are 8x8, ... (`layer_resolutions`).
    """

    family = "stylegan2"

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self.mapping = MappingNetwork(cfg)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, architecture={self.config.architecture}"
