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

import torch
from torch import Tensor

from ..errors import CheckpointError, StyleliftError, first_line
from .reading import check_shapes, checked_config, to_float32
from .raw import RawNetwork
from .stylegan import StyleGANConfig
from .torch_files import check_storage_extent

NOISE_SEED = 0


def is_stylegan_checkpoint(ckpt: dict) -> bool:
    return "g_running" in ckpt or "generator.progression.0.conv1.input" in ckpt


def read_stylegan_checkpoint(source: str, ckpt: dict) -> RawNetwork:
    sd = ckpt["g_running"] if "g_running" in ckpt else ckpt
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{source}: {'g_running' if 'g_running' in ckpt else 'the file'} is not a state dict of generator tensors")
    for k, v in sd.items():
        check_storage_extent(source, k, v)  # before any tensor is read: no zero-stride giants
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


def _tensor(source: str, sd: dict[str, Tensor], name: str, shape: tuple) -> Tensor:
    """sd[name] as float32, checked against `shape` (None = any size along that dimension)."""
    if name not in sd:
        raise CheckpointError(f"{source}: tensor {name} is missing from the generator")
    t = sd[name]
    if t.ndim != len(shape) or any(want is not None and have != want for have, want in zip(t.shape, shape)):
        raise CheckpointError(f"{source}: tensor {name} has shape {list(t.shape)}")
    return to_float32(source, name, t.detach())


def _expected_keys(n_mlp: int, fused: list[bool]) -> tuple[set[str], set[str]]:
    """The tensors a StyledGenerator with this mapping depth and these blocks holds: (required,
    optional). The blur kernels are optional (derived; stylelift makes its own)."""
    required = {f"style.{2 * j + 1}.linear.{p}" for j in range(n_mlp) for p in ("weight_orig", "bias")}
    optional = set()
    for i, f in enumerate(fused):
        b = f"generator.progression.{i}"
        if i == 0:
            required.add(f"{b}.conv1.input")
        else:
            conv, blur = (f"{b}.conv1.0", f"{b}.conv1.1") if f else (f"{b}.conv1.1.conv", f"{b}.conv1.2")
            required |= {f"{conv}.{'weight' if f else 'weight_orig'}", f"{conv}.bias"}
            optional |= {f"{blur}.weight", f"{blur}.weight_flip"}
        required |= {f"{b}.noise1.weight_orig", f"{b}.noise2.weight_orig", f"{b}.conv2.conv.weight_orig", f"{b}.conv2.conv.bias"}
        required |= {f"{b}.adain{k}.style.linear.{p}" for k in (1, 2) for p in ("weight_orig", "bias")}
        required |= {f"generator.to_rgb.{i}.conv.{p}" for p in ("weight_orig", "bias")}
    return required, optional


def _config(source: str, sd: dict[str, Tensor]) -> tuple[StyleGANConfig, int]:
    blocks = 0
    while f"generator.to_rgb.{blocks}.conv.bias" in sd:
        blocks += 1
    n_mlp = 0
    while f"style.{2 * n_mlp + 1}.linear.weight_orig" in sd:
        n_mlp += 1
    if n_mlp == 0 or blocks == 0:
        raise CheckpointError(f"{source}: no {'mapping layers (style.1.linear)' if n_mlp == 0 else 'to_rgb layers'}: not a rosinality StyleGAN generator")
    fused = [False] + [f"generator.progression.{i}.conv1.0.weight" in sd for i in range(1, blocks)]
    required, optional = _expected_keys(n_mlp, fused)
    extra = sorted(set(sd) - required - optional)
    if extra:
        raise CheckpointError(f"{source}: unexpected tensors for a rosinality StyleGAN generator: {', '.join(extra[:3])}")
    missing = sorted(required - set(sd))
    if missing:
        raise CheckpointError(f"{source}: tensor {missing[0]} is missing from the generator")
    # to_rgb biases start at zero and only the one in use is trained (a NaN counts as trained: refused later)
    trained = [i for i in range(blocks) if bool((sd[f"generator.to_rgb.{i}.conv.bias"] != 0).any())]
    if not trained:
        raise CheckpointError(f"{source}: no trained resolution (every to_rgb bias is zero: an untrained generator?)")
    step = trained[-1]
    if step > 8:
        raise CheckpointError(f"{source}: a generator beyond 1024 px (block {step}) is not supported")
    hidden, z_dim = _tensor(source, sd, "style.1.linear.weight_orig", (None, None)).shape
    w_dim = _tensor(source, sd, f"style.{2 * n_mlp - 1}.linear.weight_orig", (None, None)).shape[0]
    channels = [_tensor(source, sd, f"generator.progression.{i}.conv2.conv.weight_orig", (None, None, 3, 3)).shape[0] for i in range(step + 1)]
    first_fused = next((i for i in range(1, step + 1) if fused[i]), None)
    if first_fused is not None and not all(fused[first_fused : step + 1]):
        raise CheckpointError(f"{source}: fused and separate up-sampling blocks alternate; stylelift expects fused ones from some size on")
    cfg = checked_config(
        source,
        StyleGANConfig,
        z_dim=z_dim, w_dim=w_dim, img_resolution=4 * 2**step, mapping_layers=n_mlp, mapping_layer_features=hidden,
        mapping_lr_multiplier=1.0, channels=tuple(channels),
        fused_min_resolution=4 * 2**first_fused if first_fused is not None else 2048,
        instance_norm_eps=1e-5, bias_before_blur=True,
    )  # fmt: skip
    return cfg, step


def _state(source: str, cfg: StyleGANConfig, step: int, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    def get(name: str, *shape) -> Tensor:
        return _tensor(source, sd, name, shape)

    state: dict[str, Tensor] = {}
    for j in range(cfg.mapping_layers):
        state[f"mapping.fc{j}.weight"] = get(f"style.{2 * j + 1}.linear.weight_orig", None, None)
        state[f"mapping.fc{j}.bias"] = get(f"style.{2 * j + 1}.linear.bias", None)
    gen = torch.Generator().manual_seed(NOISE_SEED)
    for i, r in enumerate(cfg.block_resolutions):
        src, dst = f"generator.progression.{i}", f"synthesis.b{r}"
        c = cfg.block_channels[r]
        if i == 0:
            state[f"{dst}.const"] = get(f"{src}.conv1.input", 1, c, 4, 4)[0]
            state[f"{dst}.conv0.bias"] = torch.zeros([c])  # rosinality's constant layer has no bias
        elif r >= cfg.fused_min_resolution:
            state[f"{dst}.conv0.weight"] = get(f"{src}.conv1.0.weight", None, c, 3, 3).transpose(0, 1) / 4  # [in, out] -> [out, in]
            state[f"{dst}.conv0.bias"] = get(f"{src}.conv1.0.bias", c)
        else:
            state[f"{dst}.conv0.weight"] = get(f"{src}.conv1.1.conv.weight_orig", c, None, 3, 3)
            state[f"{dst}.conv0.bias"] = get(f"{src}.conv1.1.conv.bias", c)
        state[f"{dst}.conv1.weight"] = get(f"{src}.conv2.conv.weight_orig", c, c, 3, 3)
        state[f"{dst}.conv1.bias"] = get(f"{src}.conv2.conv.bias", c)
        noise = torch.randn([r, r], generator=gen)  # one map for the block's two layers, as rosinality's forward
        for k, layer in ((1, "conv0"), (2, "conv1")):
            state[f"{dst}.{layer}.noise_strength"] = get(f"{src}.noise{k}.weight_orig", 1, c, 1, 1).reshape(-1) * math.sqrt(2 / c)
            state[f"{dst}.{layer}.noise_const"] = noise
            style_w, style_b = get(f"{src}.adain{k}.style.linear.weight_orig", 2 * c, None), get(f"{src}.adain{k}.style.linear.bias", 2 * c)
            state[f"{dst}.{layer}.affine.weight"] = style_w * math.sqrt(2)
            state[f"{dst}.{layer}.affine.bias"] = torch.cat([style_b[:c] - 1, style_b[c:]])  # gamma = scale + 1
    state["synthesis.torgb.weight"] = get(f"generator.to_rgb.{step}.conv.weight_orig", None, None, 1, 1) * math.sqrt(2)
    state["synthesis.torgb.bias"] = get(f"generator.to_rgb.{step}.conv.bias", None)
    return {k: v.clone().contiguous() for k, v in state.items()}
