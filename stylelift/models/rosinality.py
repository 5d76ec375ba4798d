"""rosinality/stylegan2-pytorch checkpoints (`.pt`), read without unsafe `torch.load` (and, handed
to `rosinality_stylegan`, StyleGAN (v1) checkpoints of rosinality/style-based-gan-pytorch).

Two layouts: training checkpoints `{g, d, g_ema, g_optim, d_optim, args, ada_aug_p}` (`args` is
an `argparse.Namespace`) and converted ones `{g_ema, latent_avg, ...}`; a bare `g_ema` state
dict is read too. The file is first scanned with `safe_pickle.scan` (a clear refusal for any
global outside a short list), then loaded with `torch.load(weights_only=True)`, which admits
plain containers and tensors plus, here, `argparse.Namespace`.

rosinality's generator is always the 'skip' architecture, unconditional, with z_dim = w_dim; its
mapping learning-rate multiplier (0.01) is not stored. Widths and depths come from tensor shapes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import CheckpointError, StyleliftError, first_line
from .nvidia import taps_from_kernel
from .reading import a_type, check_floating, check_shapes, checked_config, to_float32
from .raw import RawNetwork
from .rosinality_stylegan import is_stylegan_checkpoint, read_stylegan_checkpoint
from .stylegan2 import StyleGAN2Config
from .torch_files import TORCH_SAVE_PICKLE, check_storage_extent, load_torch_file

MAPPING_LR_MULTIPLIER = 0.01  # rosinality's default `lr_mlp`; not saved in checkpoints

# What a rosinality checkpoint's pickle may name: torch.save's list and the training arguments.
ROSINALITY_PICKLE = dataclasses.replace(
    TORCH_SAVE_PICKLE,
    globals={**TORCH_SAVE_PICKLE.globals, ("argparse", "Namespace"): None},
    buildable=TORCH_SAVE_PICKLE.buildable | {("argparse", "Namespace")},
)


def read_rosinality(path: Path) -> RawNetwork:
    """Read a rosinality checkpoint: StyleGAN2 `.pt` (its `g_ema` generator) or StyleGAN (v1)
    `.model` (its `g_running`, `rosinality_stylegan`).

    Raises FileNotFoundError, UnsafeCheckpointError (the file asks to run code) or CheckpointError.
    """
    path = Path(path)
    source = path.name
    ckpt = _load(path)
    try:
        return _convert(source, ckpt)
    except StyleliftError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{source}: unexpected checkpoint layout ({type(e).__name__}: {first_line(e)})") from None


# ----------------------------------------------------------------------------------------------
# Loading


def _load(path: Path) -> Any:
    return load_torch_file(path, allow=ROSINALITY_PICKLE, safe_globals=(argparse.Namespace,))


# ----------------------------------------------------------------------------------------------
# Conversion


def _convert(source: str, ckpt: Any) -> RawNetwork:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source} is a torch file but not a rosinality checkpoint (it holds {a_type(ckpt)})")
    if ckpt.get("format") == "stylelift-encoder":  # models.encoder.FORMAT_TAG
        raise CheckpointError(f"{source} is a stylelift encoder, not a network: give it as `project --init` or `encoder run --encoder`, with the network it was made for")
    if is_stylegan_checkpoint(ckpt):  # rosinality's StyleGAN (v1) port
        return read_stylegan_checkpoint(source, ckpt)
    args = ckpt.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else {}
    if args.get("arch", "stylegan2") != "stylegan2":
        raise CheckpointError(f"{source}: rosinality architecture {str(args['arch'])[:20]!r} is not supported (only stylegan2)")
    if isinstance(ckpt.get("g_ema"), dict):
        sd = ckpt["g_ema"]
    elif "input.input" in ckpt:
        sd = ckpt  # a bare generator state dict
    elif "g_ema" in ckpt:
        raise CheckpointError(f"{source} is a torch file but not a rosinality StyleGAN2 checkpoint: its 'g_ema' holds {type(ckpt['g_ema']).__name__}, not a state dict")
    else:
        keys = [str(k)[:30] for k in list(ckpt)[:8]]
        raise CheckpointError(f"{source} is a torch file but not a rosinality StyleGAN2 checkpoint: no 'g_ema' (keys: {keys})")
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{source}: g_ema is not a state dict of tensors")
    for k, v in sd.items():
        check_storage_extent(source, k, v)
        check_floating(source, k, v)  # refused under the file's own name

    left = dict(sd)
    cfg = _config(source, left)
    state = _rename(source, cfg, left)
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, Tensor):
        if latent_avg.numel() != cfg.w_dim:
            raise CheckpointError(f"{source}: latent_avg has shape {list(latent_avg.shape)}, expected [{cfg.w_dim}]")
        state["mapping.w_avg"] = latent_avg.reshape(cfg.w_dim)
    state = {k: to_float32(source, k, v.detach()).clone() for k, v in state.items()}  # detached from the file's memory map
    check_shapes(source, cfg, {k: tuple(v.shape) for k, v in state.items()})

    info = {
        "source": "rosinality/stylegan2-pytorch",
        "checkpoint": "training" if "g_optim" in ckpt else "converted",
        "checkpoint_keys": sorted(str(k) for k in ckpt)[:16],
    }
    info.update(
        {
            k: v
            for k, v in args.items()
            if k in ("size", "channel_multiplier", "latent", "n_mlp", "iter", "batch") and isinstance(v, (int, float))
        }
    )
    if isinstance(ckpt.get("ada_aug_p"), float):
        info["ada_aug_p"] = ckpt["ada_aug_p"]
    return RawNetwork(cfg, state, format="rosinality", has_w_avg="mapping.w_avg" in state, info=info)


def _shape(source: str, sd: dict[str, Tensor], name: str) -> tuple[int, ...]:
    if name not in sd:
        raise CheckpointError(f"{source}: tensor {name} is missing from g_ema")
    return tuple(sd[name].shape)


def _config(source: str, sd: dict[str, Tensor]) -> StyleGAN2Config:
    styles = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if not styles or styles != list(range(1, len(styles) + 1)):
        raise CheckpointError(f"{source}: the mapping network (style.1 ... style.n) is missing or misnumbered")
    n_blocks = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    resolution = 2 ** (n_blocks + 2)
    z_dim = _shape(source, sd, "style.1.weight")[1]
    w_dim = _shape(source, sd, f"style.{len(styles)}.weight")[0]
    hidden = _shape(source, sd, "style.1.weight")[0] if len(styles) > 1 else None
    channels = [_shape(source, sd, "conv1.conv.weight")[1]]
    channels += [_shape(source, sd, f"convs.{2 * i + 1}.conv.weight")[1] for i in range(n_blocks)]
    resample_filter = (1, 3, 3, 1)
    if "convs.0.conv.blur.kernel" in sd:
        resample_filter = taps_from_kernel(source, sd["convs.0.conv.blur.kernel"])
    return checked_config(
        source,
        StyleGAN2Config,
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        mapping_layers=len(styles),
        mapping_lr_multiplier=MAPPING_LR_MULTIPLIER,
        mapping_layer_features=hidden if hidden != w_dim else None,
        channel_max=max(channels),
        channels=tuple(channels),
        architecture="skip",
        resample_filter=resample_filter,
        op_order="rosinality",
    )


def _rename(source: str, cfg: StyleGAN2Config, left: dict[str, Tensor]) -> dict[str, Tensor]:
    """rosinality names -> stylelift names; `left` is consumed and must end up empty."""
    state: dict[str, Tensor] = {}

    def take(name: str) -> Tensor:
        if name not in left:
            raise CheckpointError(f"{source}: tensor {name} is missing from g_ema")
        return left.pop(name)

    def squeeze0(name: str) -> Tensor:  # the leading batch dimension of rosinality's conv weights
        t = take(name)
        if t.ndim == 0 or t.shape[0] != 1:
            raise CheckpointError(f"{source}: {name} has shape {list(t.shape)}; expected a leading 1")
        return t[0]

    def styled_conv(src: str, dst: str, noise: int, r: int) -> None:
        state[f"{dst}.weight"] = squeeze0(f"{src}.conv.weight")
        state[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        state[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        state[f"{dst}.bias"] = take(f"{src}.activate.bias")
        state[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        state[f"{dst}.noise_const"] = take(f"noises.noise_{noise}").reshape(r, r)

    def to_rgb(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = squeeze0(f"{src}.conv.weight")
        state[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        state[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        state[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)

    for j in range(cfg.mapping_layers):
        state[f"mapping.fc{j}.weight"] = take(f"style.{j + 1}.weight")
        state[f"mapping.fc{j}.bias"] = take(f"style.{j + 1}.bias")
    state["synthesis.b4.const"] = squeeze0("input.input")
    styled_conv("conv1", "synthesis.b4.conv1", 0, 4)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for i, r in enumerate(cfg.block_resolutions[1:]):
        k = int(math.log2(r))
        styled_conv(f"convs.{2 * i}", f"synthesis.b{r}.conv0", 2 * k - 5, r)
        styled_conv(f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", 2 * k - 4, r)
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{r}.torgb")
    derived = [k for k in left if k.endswith((".blur.kernel", ".upsample.kernel"))]  # the FIR filter, rebuilt from the config
    for k in derived:
        del left[k]
    if left:
        raise CheckpointError(f"{source}: unexpected tensors in g_ema: {', '.join(sorted(left)[:3])}")
    return state
