"""StyleGAN generator (Karras et al. 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks"): the first StyleGAN, as in NVIDIA's `karras2019stylegan-*.pkl` files.

What sets it apart from StyleGAN2 (`stylegan2.py`): styles act through AdaIN, not weight
modulation. Each of the 2 * log2(R) - 2 layers ends with the same epilogue,

    x = x + noise * noise_strength[c]      per-channel noise strength, one map per layer
    x = leaky_relu(x + bias)               no gain after the activation (it is in the weights)
    x = instance_norm(x)                   per feature map: mean 0, mean square 1
    x = x * (scale + 1) + shift            (scale, shift) = affine(w_i), the "style"

The 4x4 block starts from a learned constant (layer 0: the epilogue alone, then a 3x3 conv,
layer 1). Every later block doubles the size with a 3x3 conv that up-samples (nearest neighbour
then conv; from 128 px on, NVIDIA's "fused" transposed 4x4 conv instead, which equals nearest
neighbour then the conv with its kernel flipped in space), blurs with [1, 2, 1], and adds a
plain 3x3 conv. A 1x1 conv turns the last features into RGB. ws index i is layer i, at
resolution 4 * 2 ** (i // 2), so a 1024-px network reads 18 ws, as StyleGAN2 does.

Stored weights are unscaled (equalised learning rate): dense and conv weights are multiplied at
run time by gain / sqrt(fan_in) (gain sqrt(2), 1 for the style affines and toRGB) times the
mapping's lr multiplier, biases by that multiplier. Names: `mapping.fc{i}`,
`synthesis.b{r}.conv0|conv1` (conv0 of b4 is the constant's epilogue, with no conv weight),
`synthesis.torgb`; the noise maps of NVIDIA's files are kept as `noise_const` buffers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import is_real
from .base import MAX_LR_MULTIPLIER, MAX_TAP, MappedGenerator, broadcast_truncated, check_feature_maps, check_int_fields, check_c, check_noise_mode, check_placed, checked_resolution, check_noises, check_ws, check_z
from .stylegan2 import normalize_2nd_moment

LRELU_SLOPE = 0.2
CONV_GAIN = math.sqrt(2)

_INT_FIELDS = (
    ("z_dim", 1, 1 << 14), ("w_dim", 1, 1 << 14), ("img_channels", 1, 16), ("mapping_layers", 1, 64),
    ("mapping_layer_features", 1, 1 << 14), ("fused_min_resolution", 8, 1 << 11),
)  # fmt: skip


@dataclass(frozen=True)
class StyleGANConfig:
    """Everything needed to rebuild a StyleGAN (v1) generator; saved next to its weights."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_layer_features: int = 512
    mapping_lr_multiplier: float = 0.01
    channels: tuple[int, ...] = (512, 512, 512, 512, 256, 128, 64, 32, 16)  # per block resolution 4, 8, ...
    fused_min_resolution: int = 128  # blocks at this size and above up-sample with one transposed conv
    blur_filter: tuple[int, ...] = (1, 2, 1)  # () = no blur after up-sampling
    use_noise: bool = True
    c_dim: int = 0  # StyleGAN's label input (LabelConcat) is not supported
    # rosinality's port (style-based-gan-pytorch) differs from NVIDIA's in two details that change
    # the numbers: torch's InstanceNorm2d epsilon, and the up-sampling conv's bias added before the
    # blur (which the zero padding then weakens at the borders).
    instance_norm_eps: float = 1e-8
    bias_before_blur: bool = False

    def __post_init__(self):
        object.__setattr__(self, "img_resolution", checked_resolution(self.img_resolution))
        check_int_fields(self, _INT_FIELDS)
        if self.c_dim != 0:
            raise ValueError("StyleGAN networks with a label input are not supported (c_dim must be 0)")
        m = self.mapping_lr_multiplier
        if not is_real(m) or not 0 < m <= MAX_LR_MULTIPLIER:
            raise ValueError(f"mapping_lr_multiplier must be a number above 0 and at most {MAX_LR_MULTIPLIER:g}, got {m!r:.40}")
        channels = tuple(self.channels) if isinstance(self.channels, (tuple, list)) else ()
        if len(channels) != len(self.block_resolutions) or not all(type(c) is int and 1 <= c <= 1 << 14 for c in channels):
            raise ValueError(f"channels must list {len(self.block_resolutions)} positive widths (one per block resolution), got {self.channels!r:.60}")
        object.__setattr__(self, "channels", channels)
        check_feature_maps({r: max(c, channels[i - 1] if i else c) for i, (r, c) in enumerate(zip(self.block_resolutions, channels))})  # (below fused_min_resolution the previous block's maps are up-sampled to r before the conv)
        f = tuple(self.blur_filter) if isinstance(self.blur_filter, (tuple, list)) else None
        if f is None or len(f) > 16 or not all(type(t) is int and 0 <= t <= MAX_TAP for t in f) or (f and sum(f) == 0):
            raise ValueError(f"blur_filter must list up to 16 integer taps from 0 to {MAX_TAP} with a positive sum, got {self.blur_filter!r:.40}")
        object.__setattr__(self, "blur_filter", f)
        for name in ("use_noise", "bias_before_blur"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r:.40}")
        eps = self.instance_norm_eps
        if not is_real(eps) or not 0 < eps <= 1:
            raise ValueError(f"instance_norm_eps must be a number above 0 and at most 1, got {eps!r:.40}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def block_channels(self) -> dict[int, int]:
        return dict(zip(self.block_resolutions, self.channels))

    @property
    def num_ws(self) -> int:
        return 2 * len(self.block_resolutions)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"], d["blur_filter"] = list(self.channels), list(self.blur_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGANConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown StyleGAN config keys: {sorted(unknown)}")
        return cls(**d)


def expected_shapes(cfg: StyleGANConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of a generator with this config, and its shape."""
    shapes: dict[str, tuple[int, ...]] = {"mapping.w_avg": (cfg.w_dim,)}
    features = [cfg.z_dim] + [cfg.mapping_layer_features] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    for i in range(cfg.mapping_layers):
        shapes[f"mapping.fc{i}.weight"] = (features[i + 1], features[i])
        shapes[f"mapping.fc{i}.bias"] = (features[i + 1],)
    ch = cfg.block_channels
    shapes["synthesis.b4.const"] = (ch[4], 4, 4)
    for r in cfg.block_resolutions:
        for j, name in enumerate(("conv0", "conv1")):
            prefix = f"synthesis.b{r}.{name}"
            if not (r == 4 and j == 0):
                shapes[f"{prefix}.weight"] = (ch[r], ch[r] if j == 1 else ch.get(r // 2, ch[r]), 3, 3)
            shapes[f"{prefix}.bias"] = (ch[r],)
            shapes[f"{prefix}.affine.weight"] = (2 * ch[r], cfg.w_dim)
            shapes[f"{prefix}.affine.bias"] = (2 * ch[r],)
            if cfg.use_noise:
                shapes[f"{prefix}.noise_strength"] = (ch[r],)
                shapes[f"{prefix}.noise_const"] = (r, r)
    shapes["synthesis.torgb.weight"] = (cfg.img_channels, ch[cfg.img_resolution], 1, 1)
    shapes["synthesis.torgb.bias"] = (cfg.img_channels,)
    return shapes


# ----------------------------------------------------------------------------------------------
# Ops


def blur_kernel(taps: tuple[int, ...]) -> Tensor:
    """The normalised 2-D low-pass filter [k, k] made from 1-D taps (outer product)."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise correlation with 'same' zero padding (one more zero after than before for an even
    kernel), as TF's depthwise_conv2d with padding SAME."""
    k = kernel.shape[-1]
    if k == 1:
        return x * kernel.reshape([])
    weight = kernel.to(x.dtype).expand(x.shape[1], 1, k, k)
    lo = (k - 1) // 2
    if k % 2:
        return F.conv2d(x, weight, padding=lo, groups=x.shape[1])
    return F.conv2d(F.pad(x, [lo, k - 1 - lo, lo, k - 1 - lo]), weight, groups=x.shape[1])


def fused_up_weight(weight: Tensor) -> Tensor:
    """[O, I, 3, 3] -> the [I, O, 4, 4] kernel of NVIDIA's fused up-sampling conv (transposed,
    stride 2): each 4x4 tap sums four 3x3 taps. The result equals nearest-neighbour up-sampling
    followed by the 3x3 conv with the kernel flipped in space (a transposed conv convolves where
    conv2d correlates)."""
    w = F.pad(weight, [1, 1, 1, 1])
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    return w.transpose(0, 1)


# ----------------------------------------------------------------------------------------------
# Layers


class Dense(nn.Module):
    """Dense layer, equalised learning rate: weight * gain * lr_mul / sqrt(fan_in), bias * lr_mul."""

    def __init__(self, in_features: int, out_features: int, *, gain: float, lr_multiplier: float = 1.0, lrelu: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.lrelu = in_features, out_features, lrelu
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        x = torch.addmm(self.bias * self.bias_gain, x, (self.weight * self.weight_gain).t())
        return F.leaky_relu(x, LRELU_SLOPE) if self.lrelu else x

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, lrelu={self.lrelu}, lr_mul={self.bias_gain:g}"


class MappingNetwork(nn.Module):
    """z -> pixel norm -> `mapping_layers` dense layers with leaky ReLU -> w, broadcast to
    [N, num_ws, w_dim], with truncation toward w_avg on the first `truncation_cutoff` ws."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws
        self.num_layers = cfg.mapping_layers
        features = [cfg.z_dim] + [cfg.mapping_layer_features] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", Dense(features[i], features[i + 1], gain=CONV_GAIN, lr_multiplier=cfg.mapping_lr_multiplier, lrelu=True))
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None) -> Tensor:
        check_z(z, self.z_dim)
        check_c(c, 0, None)  # unconditional
        check_placed(self, z=z)
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return broadcast_truncated(x, self.num_ws, truncation_psi, truncation_cutoff, self.w_avg.lerp)


class SynthesisLayer(nn.Module):
    """One layer: an optional 3x3 conv (`up`: up-sampling by 2, then blur), then the epilogue
    noise -> bias -> leaky ReLU -> instance norm -> AdaIN with the style of its w."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, cfg: StyleGANConfig, *, conv: str, fused: bool = False):
        super().__init__()
        assert conv in ("none", "same", "up"), conv
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.conv, self.use_noise, self.fused = conv, cfg.use_noise, fused
        self.eps = cfg.instance_norm_eps
        self.bias_before_blur = cfg.bias_before_blur and conv == "up"
        if conv != "none":
            self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
            self.weight_gain = CONV_GAIN / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        if cfg.use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([out_channels]))
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.affine = Dense(w_dim, 2 * out_channels, gain=1.0)

    def forward(self, x: Tensor, w: Tensor, blur_filter: Optional[Tensor], *, noise_mode: str = "const", noise: Optional[Tensor] = None) -> Tensor:
        # The bias goes into the conv call wherever that gives the same sum: always, except before
        # NVIDIA's blur (its zero padding would weaken a bias added first, which is what rosinality does).
        blurred = self.conv == "up" and blur_filter is not None
        bias_in_conv = self.conv != "none" and (self.bias_before_blur or not blurred)
        if self.conv != "none":
            weight = self.weight * self.weight_gain
            conv_bias = self.bias if bias_in_conv else None
            if self.conv == "up" and self.fused:
                x = F.conv_transpose2d(x, fused_up_weight(weight), conv_bias, stride=2, padding=1)
            else:
                if self.conv == "up":
                    x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = F.conv2d(x, weight, conv_bias, padding=1)
            if blurred:
                x = blur(x, blur_filter)
        if self.use_noise:
            if noise is None and noise_mode == "random":
                noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            elif noise is None and noise_mode == "const":
                noise = self.noise_const
            if noise is not None:  # [N, 1, r, r] or [r, r]
                x = torch.addcmul(x, noise, self.noise_strength.reshape(-1, 1, 1))
        if not bias_in_conv:
            x = x + self.bias.reshape(-1, 1, 1)
        x = F.instance_norm(F.leaky_relu(x, LRELU_SLOPE), eps=self.eps)  # mean 0, mean square 1 per map
        scale, shift = self.affine(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # [N, C, 1, 1] each
        return torch.addcmul(shift, x, scale + 1)

    def extra_repr(self) -> str:
        conv = {"none": "no conv", "same": "3x3 conv", "up": "up-sampling 3x3 conv" + (" (fused)" if self.fused else "")}[self.conv]
        return f"{self.in_channels} -> {self.out_channels} @ {self.resolution}px, {conv}, noise={self.use_noise}"


class ToRGB(nn.Module):
    """1x1 conv to the image channels, equalised learning rate with gain 1, and a bias."""

    def __init__(self, in_channels: int, img_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, resolution: int, cfg: StyleGANConfig):
        super().__init__()
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([out_channels, 4, 4]))
            self.conv0 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, 4, cfg, conv="none")
        else:
            fused = resolution >= cfg.fused_min_resolution
            self.conv0 = SynthesisLayer(in_channels, out_channels, cfg.w_dim, resolution, cfg, conv="up", fused=fused)
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, resolution, cfg, conv="same")


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], roughly in [-1, 1]."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.block_resolutions = cfg.block_resolutions
        ch = cfg.block_channels
        for r in self.block_resolutions:
            setattr(self, f"b{r}", SynthesisBlock(ch.get(r // 2, 0), ch[r], r, cfg))
        self.torgb = ToRGB(ch[cfg.img_resolution], cfg.img_channels)
        self.num_ws = cfg.num_ws
        kernel = blur_kernel(cfg.blur_filter) if cfg.blur_filter else None
        self.register_buffer("blur_filter", kernel, persistent=False)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def layers(self) -> list[SynthesisLayer]:
        """Every layer in ws order (layer i reads ws[i])."""
        return [layer for block in self.blocks() for layer in (block.conv0, block.conv1)]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers with a noise input, in ws order (noise index k = position in this list)."""
        return [layer for layer in self.layers() if layer.use_noise]

    def style_affine_weights(self) -> list[Tensor]:
        """For each ws index, the weight [2C, w_dim] of its style affine (scales, then shifts)."""
        return [layer.affine.weight * layer.affine.weight_gain for layer in self.layers()]

    def forward(self, ws: Tensor, noise_mode: str = "const", noises: Optional[list[Tensor]] = None) -> Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R] in [-1, 1]. Noise inputs: the network's stored
        maps ('const'), new ones drawn from torch's global random stream ('random', as NVIDIA's code
        does), or zeros ('none'); `noises` (one [1 or N, 1, r, r] map per input, None to follow
        noise_mode) gives maps of your own, made with a torch.Generator for a seeded result."""
        check_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        layers = self.layers()
        n_noise = len(self.noise_layers())
        if noises is not None:
            check_noises(noises, [layer.resolution for layer in self.noise_layers()], ws.shape[0])
        check_placed(self, ws=ws, noises=noises)
        noises = iter(noises if noises is not None else [None] * n_noise)
        ws = ws.to(torch.float32)
        x = self.b4.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(layers):
            noise = next(noises) if layer.use_noise else None
            x = layer(x, ws[:, i], self.blur_filter, noise_mode=noise_mode, noise=noise)
        return self.torgb(x)


class StyleGAN(MappedGenerator):
    """StyleGAN (v1) generator with the StyleGAN2 generator's interface: `mapping(z) -> ws`, `synthesis(ws) -> img`."""

    family = "stylegan"

    def __init__(self, cfg: StyleGANConfig):
        super().__init__(cfg)
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channels={list(self.config.channels)}"
