"""What every generator in stylelift shares (StyleGAN2, StyleGAN, MobileStyleGAN): z -> `mapping`
-> ws [N, num_ws, w_dim] -> `synthesis` -> image [N, C, R, R], and the checks at that boundary."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..errors import InputError, describe, is_real, is_whole

NOISE_MODES = ("const", "random", "none")
MAX_TAP = 1 << 16  # resampling/blur filter taps beyond this would only overflow float32 (real filters: 1, 2, 3)
MAX_LR_MULTIPLIER = 100.0  # mapping learning-rate multipliers of real networks: 0.01 (NVIDIA) or 1


def rng_untouched():
    """Build modules in this context when their weights are loaded next: the layers' default inits
    draw from torch's global RNG, and a library call should leave the caller's random stream alone."""
    return torch.random.fork_rng(devices=[])


MAX_TORCH_SEED = 2**64 - 1  # torch.Generator.manual_seed takes seeds below 2**64


def check_seed(seed, name: str = "seed") -> int:
    """A seed for a torch.Generator: a whole number (numpy's too) from 0 to 2**64 - 1, as an int."""
    if not is_whole(seed) or not 0 <= seed <= MAX_TORCH_SEED:
        raise InputError(f"{name} must be a whole number from 0 to 2**64 - 1, got {seed!r:.30}")
    return int(seed)


def check_ws(ws: Tensor, num_ws: int, w_dim: int) -> None:
    if not isinstance(ws, Tensor) or ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim) or ws.is_complex():
        shape = f"{'a complex tensor ' if isinstance(ws, Tensor) and ws.is_complex() else ''}{tuple(ws.shape)}" if isinstance(ws, Tensor) else type(ws).__name__
        raise InputError(f"ws must be a real tensor of shape [N, {num_ws}, {w_dim}] for this network, got {shape}")
    if ws.shape[0] < 1:
        raise InputError("ws holds no latents (N = 0); give at least one")


def check_noises(noises, resolutions: list[int], n: int) -> None:
    """Noise maps for a synthesis call: one per noise input, a float tensor [1 or N, 1, r, r] (or
    [r, r] / [1, r, r]) at that input's resolution r, or None for one that follows noise_mode."""
    if not isinstance(noises, (list, tuple)) or len(noises) != len(resolutions):
        got = len(noises) if isinstance(noises, (list, tuple)) else type(noises).__name__
        raise InputError(f"noises must be a list of {len(resolutions)} maps, one per noise input, got {got}")
    for k, (m, r) in enumerate(zip(noises, resolutions)):
        if m is None:  # that input follows noise_mode
            continue
        shape = tuple(m.shape) if isinstance(m, Tensor) else ()
        if not isinstance(m, Tensor) or not m.is_floating_point() or shape not in ((r, r), (1, r, r), (1, 1, r, r), (n, 1, r, r)):
            got = f"{m.dtype} {list(m.shape)}" if isinstance(m, Tensor) else type(m).__name__
            batch = "1" if n == 1 else f"1 or {n}"
            raise InputError(f"noise map {k} must be a float tensor [{batch}, 1, {r}, {r}], got {got}")


def check_images(images, channels: int, name: str, reader: str) -> Tensor:
    """Images handed to `reader` (a target, an encoder's input): [N, channels, R, R] float in [-1, 1]
    (not 0..255), at least one, finite. Returns them as float32."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != channels:
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"{name} must be [N, {channels}, H, W] in [-1, 1], got {shape}")
    if images.shape[2] != images.shape[3]:
        raise InputError(f"{name} must be square, got {images.shape[2]}x{images.shape[3]}")
    if images.shape[0] < 1 or images.shape[2] < 1:
        raise InputError(f"{name} holds no image, got shape {list(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"{name} must be float in [-1, 1], got {images.dtype} (pixels p in 0..255 are p / 127.5 - 1)")
    if images.is_meta:
        raise InputError(f"{name} is on the meta device: it holds no numbers")
    if not torch.isfinite(images).all():
        raise InputError(f"{name} holds NaN or infinite values")
    # (the range is not checked as such: generated images overshoot [-1, 1], random networks' by far,
    # but on both sides; an image of 0..255 values never goes below 0)
    if images.min() >= 0 and images.max() > 2:
        raise InputError(f"{name} looks like pixels in 0..255 (all >= 0, the largest {float(images.max()):g}); {reader} takes [-1, 1]: p / 127.5 - 1")
    return images.float()


def check_z(z: Tensor, z_dim: int) -> None:
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != z_dim or z.is_complex():
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise InputError(f"z must be a real tensor of shape [N, {z_dim}], got {shape}")


def check_placed(network: nn.Module, **inputs: Any) -> None:
    """A network in float32 (stylelift's arithmetic: a G.half() or G.double() would fail in torch's
    own words), and its tensor inputs (z=z, ws=ws, ...: a list's tensors too) on its device."""
    weight = next(network.parameters(), None)
    if weight is None:
        return
    if weight.dtype != torch.float32:
        raise InputError(f"the network's weights are {str(weight.dtype).removeprefix('torch.')}; stylelift computes in float32: convert it with G.float()")
    for name, value in inputs.items():
        for k, x in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(x, Tensor) and x.numel() and x.device != weight.device:  # (NVIDIA's empty label [N, 0] is made anywhere)
                what = f"{name}[{k}]" if isinstance(value, (list, tuple)) else name
                raise InputError(f"{what} is on {x.device} but the network is on {weight.device}: move it there with .to(G.w_avg.device)")


def check_c(c: Optional[Tensor], c_dim: int, n: Optional[int]) -> None:
    """A network's label: for a conditional one a real tensor [N, c_dim] (one-hot for a class), one
    row per z (`n`; None for a network without z); for an unconditional one None or an empty
    [N, 0] (NVIDIA's code passes that)."""
    if c_dim == 0:
        if c is not None and not (isinstance(c, Tensor) and c.ndim == 2 and c.shape[1] == 0):
            got = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
            raise InputError(f"this network is unconditional: it takes no class label (c=None), got {got}")
        return
    if not isinstance(c, Tensor) or c.ndim != 2 or c.shape[1] != c_dim or c.shape[0] != (n or c.shape[0]) or c.is_complex():
        got = "none" if c is None else tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
        raise InputError(f"this network is conditional: c must be a label tensor of shape [{n or 'N'}, {c_dim}] (one-hot for a class), got {got}")


def check_truncation_cutoff(num_ws: int, cutoff: Optional[int]) -> None:
    """A truncation cutoff counts ws from the first: 0 to num_ws, or None for all of them."""
    if cutoff is not None and not (is_whole(cutoff) and 0 <= cutoff <= num_ws):
        raise InputError(f"the truncation cutoff must be a whole number between 0 and num_ws={num_ws}, got {cutoff!r:.20}")


FLOAT32_MAX = 3.4028234663852886e38


def check_psi(psi) -> float:
    """A truncation psi: a finite number float32 can hold (1e39 would overflow the lerp)."""
    if isinstance(psi, Tensor) and psi.numel() == 1:
        psi = psi.item()
    if not is_real(psi) or abs(psi) > FLOAT32_MAX:
        raise InputError(f"the truncation psi must be a finite number within float32's range, got {psi!r:.20}")
    return psi


def broadcast_truncated(w: Tensor, num_ws: int, psi: float, cutoff: Optional[int], truncate: Callable[[Tensor, float], Tensor]) -> Tensor:
    """A mapping network's w [N, w_dim] -> ws [N, num_ws, w_dim], the first `cutoff` ws (all when
    None) moved toward w_avg by `truncate(ws, psi)` (each network keeps its reference's arithmetic)."""
    psi = check_psi(psi)
    check_truncation_cutoff(num_ws, cutoff)  # also at psi 1, where it changes nothing: a wrong one is still a mistake
    x = w.unsqueeze(1).repeat([1, num_ws, 1])
    if psi != 1:
        n = num_ws if cutoff is None else int(cutoff)
        x[:, :n] = truncate(x[:, :n], psi)
        if torch.isinf(x).any() and torch.isfinite(w).all() and not torch.isnan(x).any():  # (NaN, from a damaged w_avg, is said by who reads the ws)
            raise InputError(f"truncation psi {psi:g} takes the ws beyond float32's range: ask for a truncation psi (--trunc) nearer 0")
    return x


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r:.30}")


MAX_FEATURE_MAP_BYTES = 1 << 30  # one image's largest feature map; NVIDIA's 1024-px networks: 128 MiB (32 channels at 1024 px)


def check_feature_maps(block_channels: dict[int, int]) -> None:
    """Refuse channel widths whose feature maps no real network has (a damaged or hostile file): a
    few numbers in a config could otherwise ask for tens of GB to render one image."""
    res, ch = max(block_channels.items(), key=lambda item: item[0] ** 2 * item[1])
    size = res * res * ch * 4
    if size > MAX_FEATURE_MAP_BYTES:
        raise ValueError(f"{ch} channels at {res}x{res} px make one image's feature map {size / 2**20:,.0f} MiB, "
                         f"beyond any real network's ({MAX_FEATURE_MAP_BYTES / 2**20:,.0f} MiB at most; NVIDIA's 1024-px ones: 128)")


def checked_resolution(value) -> int:
    """A generator's img_resolution as an int: a whole number (numpy's too; not a bool, a float or a
    tensor) that is a power of two from 4 to 1024."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"img_resolution must be a whole number (a power of two from 4 to 1024), got {value!r:.40}")
    if int(value) not in [2**i for i in range(2, 11)]:
        raise ValueError(f"img_resolution must be a power of two from 4 to 1024, got {int(value)}")
    return int(value)


def check_int_fields(config, fields: tuple[tuple[str, int, int], ...], *, optional: tuple[str, ...] = ()) -> None:
    """Each named field of a config is an int (not a bool) within [low, high]; `optional` ones may be None."""
    for name, low, high in fields:
        value = getattr(config, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r:.40}")


class MappedGenerator(nn.Module):
    """The generator interface: `mapping(z, c) -> ws`, `synthesis(ws) -> img`, `G(z, c)` both.
    Subclasses set `self.mapping` and `self.synthesis` (in the order their state dicts expect) and
    name their `family` (the prefix of `network_id`, the architecture in stylelift's file format)."""

    family: str
    mapping: nn.Module
    synthesis: nn.Module

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    @property
    def layer_resolutions(self) -> list[int]:
        """The resolution each ws index acts at (for coarse/middle/fine style ranges): two per
        block, 4, 4, 8, 8, ... (Karras et al. 2019, §3.1: coarse 4-8 px, middle 16-32, fine 64-1024), unless the network says otherwise."""
        return [r for r in self.synthesis.block_resolutions for _ in range(2)]

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None, noise_mode: str = "const") -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def extra_repr(self) -> str:
        return f"resolution={self.img_resolution}, num_ws={self.num_ws}, w_dim={self.w_dim}"


def check_generator(G, call: str) -> None:
    """A generator where `call` (`project(G, target)`) wants one: a slip such as G.synthesis or the
    arguments swapped would fail further in with an AttributeError."""
    if not isinstance(G, MappedGenerator):
        raise InputError(f"{call}: G is a generator (what load_generator returns), got {describe(G)}")


def native_output(G, at_least: Optional[int]) -> Optional[int]:
    """The smallest of the network's own smaller outputs (MobileStyleGAN's `output_resolutions`)
    that is at least `at_least` px, to pass as `out_res`; None for the full size."""
    offered = [r for r in getattr(G.synthesis, "output_resolutions", ()) if at_least and at_least <= r < G.img_resolution]
    return min(offered) if offered else None


def synthesize_at(G, ws: Tensor, resolution: int, *, noises=None) -> Tensor:
    """Images [N, C, r, r] for ws, r = `resolution` or the network's own when that is smaller: from
    its cheapest output at least that large (`native_output`), shrunk by averaging."""
    out_res = native_output(G, resolution)
    img = G.synthesis(ws, noises=noises, **({"out_res": out_res} if out_res else {}))
    return torch.nn.functional.interpolate(img, size=(resolution, resolution), mode="area") if img.shape[-1] > resolution else img
