"""The projector's distance terms, by name, combined with weights: `lpips=1,mse=0.1`.

Every term is built once per projection from the target images (so target features are computed
once) and then maps synthesised images [N, 3, R, R] in [-1, 1] to a per-sample distance [N].
Per-sample (never batch-averaged) values keep a batch of N photos independent: each photo's
gradient is the one it would get alone.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..models.perceptual import VGG16Features, build_lpips

log = logging.getLogger(__name__)

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights, as named in torch's cache


class MissingWeightsError(InputError):
    """A loss term whose pretrained weights are not on this machine (LPIPS's ImageNet VGG, dlib's models)."""


@dataclass
class LossContext:
    device: torch.device
    perceptual_weights: Optional[Path] = None  # torchvision VGG16 state dict (ImageNet)


Term = Callable[[Tensor], Tensor]  # synth [N, 3, R, R] -> [N]
Builder = Callable[[Tensor, LossContext], Term]  # (target [N, 3, R, R], context) -> term

REGISTRY: dict[str, Builder] = {}


def register(name: str):
    def wrap(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        return builder

    return wrap


def parse_loss_spec(spec: str) -> dict[str, float]:
    """'lpips=1,mse=0.1' -> {'lpips': 1.0, 'mse': 0.1}; a bare name has weight 1."""
    if not spec.strip():
        raise InputError("the loss needs at least one term, e.g. mse=1")
    weights: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:  # as a seed list's: the file's record would keep it, and "mse=1,l1=1" count as other options
            raise InputError(f"loss {spec!r:.80} has an empty item (a comma too many?)")
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in REGISTRY:
            raise InputError(f"unknown loss term {name!r}; known: {', '.join(sorted(REGISTRY))}")
        if name in weights:
            raise InputError(f"loss term {name!r} is named twice in {spec!r}")
        try:
            weight = float(value) if sep else 1.0  # "mse=" is a weight left out, not 1
        except ValueError:
            weight = None
        if weight is None or not math.isfinite(weight) or weight <= 0:
            raise InputError(f"loss weight for {name!r} must be a positive number, got {value!r}")
        weights[name] = weight
    return weights


def same_loss(recorded, given: str) -> bool:
    """Whether a recorded loss spec names the terms and weights `given` does ('mse' is 'mse=1.0',
    'mse,l1' is 'l1,mse'), reading past the empty items older versions took ('mse,')."""

    def weights(spec: str) -> Optional[dict[str, float]]:
        try:
            return parse_loss_spec(",".join(part for part in spec.split(",") if part.strip()))
        except InputError:
            return None

    if not isinstance(recorded, str) or recorded == given:
        return recorded == given
    return weights(recorded) is not None and weights(recorded) == weights(given)


class CombinedLoss:
    """Weighted sum of named terms; `last` holds each term's batch mean from the latest call, as a
    0-d tensor on the loss's device (reading it as a number waits for the GPU: the projector reads
    all of a step's numbers at once, after the step)."""

    def __init__(self, weights: dict[str, float], target: Tensor, ctx: LossContext):
        self.weights = weights
        self.terms = {name: REGISTRY[name](target, ctx) for name in weights}
        self.last: dict[str, Tensor] = {}

    def __call__(self, synth: Tensor) -> Tensor:  # -> [N]
        total = 0.0
        for name, term in self.terms.items():
            value = term(synth)
            self.last[name] = value.detach().float().mean()
            total = total + self.weights[name] * value
        return total

    def __repr__(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.weights.items())


# ----------------------------------------------------------------------------------------------
# Pixel terms


@register("mse")
def _mse(target: Tensor, ctx: LossContext) -> Term:
    return lambda synth: (synth - target).square().mean(dim=[1, 2, 3])


@register("l1")
def _l1(target: Tensor, ctx: LossContext) -> Term:
    return lambda synth: (synth - target).abs().mean(dim=[1, 2, 3])


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def _ssim_parts(x: Tensor, y: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample SSIM and contrast-structure term for images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    ch = x.shape[1]
    k = window.numel()
    wx = window.reshape(1, 1, 1, k).repeat(ch, 1, 1, 1)
    wy = window.reshape(1, 1, k, 1).repeat(ch, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim.mean(dim=[1, 2, 3]), cs.mean(dim=[1, 2, 3])


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Single-scale SSIM per sample for images in [-1, 1] (11x11 Gaussian window, sigma 1.5)."""
    window = _gaussian_window(min(11, x.shape[-1]), 1.5, x.device)
    return _ssim_parts((x + 1) / 2, (y + 1) / 2, window)[0]


@functools.lru_cache(maxsize=None)
def _ms_ssim_weights(scales: int, device: torch.device) -> Tensor:
    """The first `scales` weights, normalised; made once per device: a host-to-GPU copy waits for
    the GPU, which in a projection step would stall the forward pass."""
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=device)
    return weights / weights.sum()


def ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """Multi-scale SSIM per sample for images in [-1, 1]; as many of the 5 scales as the size allows."""
    x, y = (x + 1) / 2, (y + 1) / 2
    window = _gaussian_window(min(11, x.shape[-1]), 1.5, x.device)
    scales = max(1, min(5, int(math.log2(x.shape[-1] / window.numel())) + 1))
    weights = _ms_ssim_weights(scales, x.device)
    values = []
    for i in range(scales):
        s, cs = _ssim_parts(x, y, window)
        values.append(torch.relu(s if i == scales - 1 else cs))
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-8)  # [N, scales]
    return torch.prod(stacked ** weights, dim=1)


@register("ms-ssim")
def _ms_ssim(target: Tensor, ctx: LossContext) -> Term:
    return lambda synth: 1 - ms_ssim(synth, target)


# ----------------------------------------------------------------------------------------------
# Perceptual terms on ImageNet VGG16 (need weights that cannot be downloaded at run time here)


LIBRARY_ADVICE = "or pass perceptual_weights=PATH (or a loss without lpips and vgg16: 'mse=1,ms-ssim=1' needs no weights)"  # what project()'s caller can do
CLI_ADVICE = "or pass --perceptual-weights PATH (or use --loss auto for the offline losses)"  # what a user of `stylelift project` can do


def find_vgg16_weights(explicit: Optional[Path], *, otherwise: str = LIBRARY_ADVICE) -> Path:
    """The VGG16 weights file: `explicit`, else torch's cache; when there are none, the error ends
    with `otherwise`, what the caller's user can do instead."""
    if explicit is not None:
        if not Path(explicit).is_file():
            why = "a folder, not a file" if Path(explicit).is_dir() else "not a regular file" if Path(explicit).exists() else "no such file"  # (a named pipe, /dev/null)
            raise MissingWeightsError(f"perceptual weights {explicit}: {why}")
        return Path(explicit)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    if cached.is_file():
        return cached
    raise MissingWeightsError(
        f"the lpips/vgg16 losses need torchvision's ImageNet VGG16 weights: put {VGG16_FILE} (from "
        f"https://download.pytorch.org/models/{VGG16_FILE}) in {cached.parent}/ {otherwise}"
    )


def vgg16_weights_available(explicit: Optional[Path] = None) -> bool:
    try:
        find_vgg16_weights(explicit)
        return True
    except MissingWeightsError:
        return False


_VGG16_STATES: dict[tuple, dict[str, Tensor]] = {}  # the last file read: checks, the loss and the metric all need it


def _load_vgg16_state(path: Path) -> dict[str, Tensor]:
    """The conv weights of a torchvision VGG16 state dict file, checked; read once per file version."""
    from ..models.torch_files import load_torch_file

    try:
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    except OSError:
        key = None
    if key in _VGG16_STATES:
        return _VGG16_STATES[key]
    try:
        state = load_torch_file(path)
    except (CheckpointError, OSError) as e:
        why = str(e).splitlines()[0].removeprefix(f"cannot read {path.name}: ")
        raise MissingWeightsError(f"cannot read VGG16 weights {path}: {why}") from None
    if not isinstance(state, dict) or "features.0.weight" not in state:
        raise MissingWeightsError(f"{path} is not a torchvision VGG16 state dict (no features.0.weight)")
    for name, shape in VGG16Features.conv_shapes().items():  # the convs the features use, nothing else (the classifier is not needed)
        t = state.get(name)
        if not isinstance(t, Tensor) or not t.is_floating_point() or tuple(t.shape) != shape:
            got = "missing" if name not in state else f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else f"a {type(t).__name__}"
            raise MissingWeightsError(f"{path} is not torchvision's VGG16: its {name} is {got}, not float {list(shape)}")
    _VGG16_STATES.clear()
    _VGG16_STATES[key] = {name: state[name] for name in VGG16Features.conv_shapes()}
    return _VGG16_STATES[key]


def unit_channels(t: Tensor) -> Tensor:
    """Features [N, C, H, W] scaled to unit length along C at each position (LPIPS' normalisation)."""
    return t * (t.square().sum(dim=1, keepdim=True) + 1e-10).rsqrt()


@register("vgg16")
def _vgg16(target: Tensor, ctx: LossContext) -> Term:
    """NVIDIA-style: squared distance of channel-normalised VGG16 features, summed over layers."""
    net = _frozen_net("vgg16", ctx, lambda path: VGG16Features(_load_vgg16_state(path)).to(ctx.device))
    with torch.no_grad():
        target_feats = [unit_channels(f) for f in net(target)]

    def term(synth: Tensor) -> Tensor:
        return sum((unit_channels(f) - t).square().mean(dim=[2, 3]).sum(dim=1) for f, t in zip(net(synth), target_feats))

    return term


@register("lpips")
def _lpips(target: Tensor, ctx: LossContext) -> Term:
    """The lpips package's VGG LPIPS (its learned linear layers), backbone loaded from local weights."""
    model = load_lpips(ctx)
    return lambda synth: model(synth, target).reshape(-1)


# Frozen, so one per kind, weights file and device serves every call: a term is built for each
# target, and encoder training builds one every step (the vgg16 term read 528 MB from disk each time).
_FROZEN_NETS: dict[str, tuple[tuple, nn.Module]] = {}


def _frozen_net(kind: str, ctx: LossContext, build: Callable[[Path], nn.Module]) -> nn.Module:
    path = find_vgg16_weights(ctx.perceptual_weights)
    key = (str(torch.device(ctx.device)), str(path.resolve()), path.stat().st_mtime_ns)
    if kind not in _FROZEN_NETS or _FROZEN_NETS[kind][0] != key:  # one of each kind: a 1024 projection does not need last run's copy
        _FROZEN_NETS.pop(kind, None)
        _FROZEN_NETS[kind] = (key, build(path))
    return _FROZEN_NETS[kind][1]


def load_lpips(ctx: LossContext) -> nn.Module:
    """lpips.LPIPS(net='vgg') with its backbone filled from local torchvision VGG16 weights."""
    return _frozen_net("lpips", ctx, lambda path: build_lpips(_load_vgg16_state(path), ctx.device))


def read_vgg16_weights(explicit: Optional[Path] = None, *, otherwise: str = LIBRARY_ADVICE) -> dict[str, Tensor]:
    """The VGG16 conv weights, from `explicit` or torch's cache, checked (MissingWeightsError when absent or damaged)."""
    return _load_vgg16_state(find_vgg16_weights(explicit, otherwise=otherwise))


def check_weights_for(weights: dict[str, float], explicit: Optional[Path] = None, *, otherwise: str = LIBRARY_ADVICE) -> None:
    """Before any work: the ImageNet weights (and the lpips package) the named terms need are here."""
    if "lpips" in weights or "vgg16" in weights:
        read_vgg16_weights(explicit, otherwise=otherwise)  # a damaged file, too
    if "lpips" in weights:
        try:
            import lpips  # noqa: F401
        except ImportError:
            raise MissingWeightsError("the lpips loss needs the lpips package: pip install lpips") from None


def lpips_problem(explicit: Optional[Path] = None) -> Optional[str]:
    """Why LPIPS cannot be used (no lpips package, no VGG16 weights, a damaged weights file), or None."""
    try:
        check_weights_for({"lpips": 1.0}, explicit)
    except MissingWeightsError as e:
        return str(e)
    return None


def lpips_available(explicit: Optional[Path] = None) -> bool:
    """The lpips package is installed and the VGG16 weights are there and readable."""
    return lpips_problem(explicit) is None


# The offline face terms (dlib's face-recognition ResNet in torch) register themselves here.
from . import face_loss  # noqa: E402,F401
