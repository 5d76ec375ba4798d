"""rosinality/style-based-gan-pytorch checkpoints: StyleGAN (v1) trained with rosinality's port
(`stylegan-1024px-new.model` and the like), rebuilt as stylelift's `StyleGAN`.

Layouts: the training checkpoint `{generator, discriminator, g_optimizer, d_optimizer, g_running}`
(`g_running` is the running average used for sampling) or a bare `g_running` state dict.
Names in it (`StyledGenerator`): `style.{2j+1}.linear.*` the mapping layers;
`generator.progression.{i}` the block at 4 * 2**i px with `conv1` (the constant, the up-sampling
conv `conv1.1.conv` followed by a blur, or from 128 px the fused `conv1.0` [in, out, 3, 3]),
`noise1|2`, `adain1|2.style.linear`, `conv2.conv`; `generator.to_rgb.{i}.conv` per resolution.

The file holds every block up to 1024 px whatever resolution training reached; the trained
resolution is that of the last `to_rgb` whose bias is not zero (they start at zero and only the
`to_rgb` in use is trained). Weights are stored as rosinality's equalised-lr `weight_orig`; each
layer's runtime scale differs from NVIDIA's by a constant that is folded into the weights here:
the style affines, toRGB and the noise strengths (sqrt(2), sqrt(2), sqrt(2 / C)), the fused conv
(1/4, and its in/out order), the AdaIN scale (gamma = stylelift's scale + 1). The mapping keeps
rosinality's learning-rate multiplier of 1; the instance-norm epsilon (1e-5) and the up-sampling
conv's bias (added before the blur) are kept in the config. rosinality's generator draws noise
at every call and shares one map between a block's two layers; stylelift's "const" maps for these
networks are drawn once with a fixed seed, the same map for both layers of a block.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from ..errors import CheckpointError, StyleliftError, first_line
from .nvidia import check_shapes, to_float32
from .raw import RawNetwork
from .stylegan import StyleGANConfig

NOISE_SEED = 0
_KNOWN = re.compile(
    r"style\.\d+\.linear\.(weight_orig|bias)"
    r"|generator\.progression\.\d+\.(conv1\.input|conv1\.[0-2]\.(conv\.)?(weight_orig|weight|weight_flip|bias)"
    r"|noise[12]\.weight_orig|adain[12]\.style\.linear\.(weight_orig|bias)|conv2\.conv\.(weight_orig|bias))"
    r"|generator\.to_rgb\.\d+\.conv\.(weight_orig|bias)"
)


def is_stylegan_checkpoint(ckpt: dict) -> bool:
    return isinstance(ckpt.get("g_running"), dict) or "generator.progression.0.conv1.input" in ckpt


def read_stylegan_checkpoint(source: str, ckpt: dict) -> RawNetwork:
    sd = ckpt["g_running"] if isinstance(ckpt.get("g_running"), dict) else ckpt
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{source}: g_running is not a state dict of tensors")
    unknown = sorted(k for k in sd if not _KNOWN.fullmatch(k))
    if unknown:
        raise CheckpointError(f"{source}: unexpected tensors for a rosinality StyleGAN generator: {', '.join(unknown[:3])}")
    sd = {k: to_float32(v.detach()) for k, v in sd.items()}
    try:
        cfg, step = _config(source, sd)
        state = _state(source, cfg, step, sd)
    except StyleliftError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: unexpected checkpoint layout ({type(e).__name__}: {first_line(e)})") from None
    check_shapes(source, cfg, {k: tuple(v.shape) for k, v in state.items()})
    info = {
        "source": "rosinality/style-based-gan-pytorch",
        "checkpoint": "training" if "g_running" in ckpt else "g_running",
        "trained resolution": cfg.img_resolution,
    }
    return RawNetwork(cfg, state, format="rosinality", has_w_avg=False, info=info)


def _tensor(source: str, sd: dict[str, Tensor], name: str, ndim: int) -> Tensor:
    if name not in sd:
        raise CheckpointError(f"{source}: tensor {name} is missing from the generator")
    t = sd[name]
    if t.ndim != ndim:
        raise CheckpointError(f"{source}: tensor {name} has shape {list(t.shape)}")
    return t


def _config(source: str, sd: dict[str, Tensor]) -> tuple[StyleGANConfig, int]:
    blocks = 0
    while f"generator.to_rgb.{blocks}.conv.bias" in sd:
        blocks += 1
    trained = [i for i in range(blocks) if _tensor(source, sd, f"generator.to_rgb.{i}.conv.bias", 1).abs().max() > 0]
    if not trained:
        raise CheckpointError(f"{source}: no trained resolution (every to_rgb bias is zero: an untrained generator?)")
    step = trained[-1]
    if step > 8:
        raise CheckpointError(f"{source}: a generator beyond 1024 px (block {step}) is not supported")
    n_mlp = 0
    while f"style.{2 * n_mlp + 1}.linear.weight_orig" in sd:
        n_mlp += 1
    if n_mlp == 0:
        raise CheckpointError(f"{source}: the generator has no mapping layers (style.1.linear)")
    w_dim, z_dim = _tensor(source, sd, f"style.{2 * n_mlp - 1}.linear.weight_orig", 2).shape[0], _tensor(source, sd, "style.1.linear.weight_orig", 2).shape[1]
    hidden = _tensor(source, sd, "style.1.linear.weight_orig", 2).shape[0]
    channels = [_tensor(source, sd, f"generator.progression.{i}.conv2.conv.weight_orig", 4).shape[0] for i in range(step + 1)]
    fused = [f"generator.progression.{i}.conv1.0.weight" in sd for i in range(1, step + 1)]
    first_fused = next((i + 1 for i, f in enumerate(fused) if f), None)
    if first_fused is not None and not all(fused[first_fused - 1 :]):
        raise CheckpointError(f"{source}: fused and separate up-sampling blocks alternate; stylelift expects fused ones from some size on")
    try:
        cfg = StyleGANConfig(
            z_dim=z_dim, w_dim=w_dim, img_resolution=4 * 2**step, mapping_layers=n_mlp, mapping_layer_features=hidden,
            mapping_lr_multiplier=1.0, channels=tuple(channels),
            fused_min_resolution=4 * 2**first_fused if first_fused is not None else 2048,
            instance_norm_eps=1e-5, bias_before_blur=True,
        )  # fmt: skip
    except ValueError as e:
        raise CheckpointError(f"{source}: unsupported generator settings ({first_line(e)})") from None
    return cfg, step


def _state(source: str, cfg: StyleGANConfig, step: int, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    def get(name: str, ndim: int) -> Tensor:
        return _tensor(source, sd, name, ndim)

    state: dict[str, Tensor] = {}
    for j in range(cfg.mapping_layers):
        state[f"mapping.fc{j}.weight"] = get(f"style.{2 * j + 1}.linear.weight_orig", 2)
        state[f"mapping.fc{j}.bias"] = get(f"style.{2 * j + 1}.linear.bias", 1)
    gen = torch.Generator().manual_seed(NOISE_SEED)
    for i, r in enumerate(cfg.block_resolutions):
        src, dst = f"generator.progression.{i}", f"synthesis.b{r}"
        c = cfg.block_channels[r]
        if i == 0:
            state[f"{dst}.const"] = get(f"{src}.conv1.input", 4)[0]
            state[f"{dst}.conv0.bias"] = torch.zeros([c])  # rosinality's constant layer has no bias
        elif r >= cfg.fused_min_resolution:
            state[f"{dst}.conv0.weight"] = get(f"{src}.conv1.0.weight", 4).transpose(0, 1) / 4  # [in, out] -> [out, in]
            state[f"{dst}.conv0.bias"] = get(f"{src}.conv1.0.bias", 1)
        else:
            state[f"{dst}.conv0.weight"] = get(f"{src}.conv1.1.conv.weight_orig", 4)
            state[f"{dst}.conv0.bias"] = get(f"{src}.conv1.1.conv.bias", 1)
        state[f"{dst}.conv1.weight"] = get(f"{src}.conv2.conv.weight_orig", 4)
        state[f"{dst}.conv1.bias"] = get(f"{src}.conv2.conv.bias", 1)
        noise = torch.randn([r, r], generator=gen)  # one map for the block's two layers, as rosinality's forward
        for k, layer in ((1, "conv0"), (2, "conv1")):
            state[f"{dst}.{layer}.noise_strength"] = get(f"{src}.noise{k}.weight_orig", 4).reshape(-1) * math.sqrt(2 / c)
            state[f"{dst}.{layer}.noise_const"] = noise
            style_w, style_b = get(f"{src}.adain{k}.style.linear.weight_orig", 2), get(f"{src}.adain{k}.style.linear.bias", 1)
            state[f"{dst}.{layer}.affine.weight"] = style_w * math.sqrt(2)
            state[f"{dst}.{layer}.affine.bias"] = torch.cat([style_b[:c] - 1, style_b[c:]])  # gamma = scale + 1
    state["synthesis.torgb.weight"] = get(f"generator.to_rgb.{step}.conv.weight_orig", 4) * math.sqrt(2)
    state["synthesis.torgb.bias"] = get(f"generator.to_rgb.{step}.conv.bias", 1)
    return {k: v.clone().contiguous() for k, v in state.items()}
