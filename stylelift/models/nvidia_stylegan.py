"""NVIDIA's StyleGAN (v1) TensorFlow pickles (`karras2019stylegan-ffhq-1024x1024.pkl` and the
like), read without TensorFlow and without running their code.

The pickle is the same `(G, D, Gs)` tuple of `dnnlib.tflib.network.Network` states as StyleGAN2's
(network version 3, or 4 when saved by the StyleGAN2 code); `Gs` is built by `G_style` from the
components `G_mapping` and `G_synthesis`. The config comes from the static kwargs and the
variables' shapes; the variables map onto `stylegan.StyleGAN` as follows:

    dlatent_avg                          -> mapping.w_avg
    mapping/Dense{i}/weight [in, out]    -> mapping.fc{i}.weight, transposed
    synthesis/4x4/Const/const [1,C,4,4]  -> synthesis.b4.const [C,4,4]
    synthesis/4x4/Const/*, 4x4/Conv/*    -> synthesis.b4.conv0.*, synthesis.b4.conv1.*
    synthesis/{r}x{r}/Conv0_up|Conv1/*   -> synthesis.b{r}.conv0|conv1.*
      .../weight [3,3,I,O]               -> .weight [O,I,3,3] (no flip, also for the fused up-sampling conv)
      .../bias, .../Noise/weight [C]     -> .bias, .noise_strength
      .../StyleMod/weight [w_dim, 2C]    -> .affine.weight, transposed (.../StyleMod/bias -> .affine.bias)
    synthesis/noise{i} [1,1,r,r]         -> the noise_const [r,r] of layer i
    synthesis/ToRGB_lod0/*               -> synthesis.torgb.* (ToRGB_lod1.. served progressive growing: dropped)

A snapshot taken while the network was still growing (`lod` above 0) is refused: its output
blends two resolutions, which stylelift does not model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .reading import TFState, check_shapes, checked_config, int_setting, number_setting, primitives, show_value, tf_mapping_depth, tf_shape, tf_variables
from .raw import RawNetwork
from .safe_pickle import TFNetwork
from .stylegan import StyleGANConfig

# Static kwargs stylelift understands: read into the config or checked against the variables
# (fmap_* only describe the widths, which come from the variables' shapes).
_READ = {"latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers", "mapping_fmaps",
         "mapping_lrmul", "fused_scale", "blur_filter", "use_noise", "fmap_base", "fmap_decay", "fmap_max"}  # fmt: skip
# Settings stylelift supports only at NVIDIA's defaults (every released network uses them).
_DEFAULTS = {
    "mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True,
    "use_styles": True, "const_input_layer": True, "use_pixel_norm": False, "use_instance_norm": True,
}  # fmt: skip
# Settings for training or for TF's own sampling only.
_IGNORED = {
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "dlatent_avg_beta",
    "style_mixing_prob", "is_training", "is_validation", "is_template_graph", "force_clean_graph", "structure",
    "randomize_noise", "dtype", "dlatent_broadcast",
}  # fmt: skip


def is_stylegan_v1(Gs: TFNetwork) -> bool:
    """Whether a TensorFlow `Gs` is a StyleGAN (v1) network: built by G_style, or saved by the
    StyleGAN2 code (version 4) around StyleGAN's `G_synthesis`."""
    components = Gs.get("components")
    synthesis = components.get("synthesis") if isinstance(components, dict) else None
    synthesis_func = synthesis.get("build_func_name") if isinstance(synthesis, TFNetwork) else None
    kwargs = Gs.get("static_kwargs") if isinstance(Gs.get("static_kwargs"), dict) else {}
    return (
        Gs.get("version") in (2, 3)
        or Gs.get("build_func_name") == "G_style"
        or (Gs.get("version") == 4 and kwargs.get("synthesis_func", synthesis_func) == "G_synthesis")
    )


def read_stylegan_tensorflow(source: str, Gs: TFNetwork) -> RawNetwork:
    """A StyleGAN (v1) `Gs` -> config and weights in stylelift's names."""
    version, func = Gs.get("version"), Gs.get("build_func_name")
    if type(version) is not int or version not in (2, 3, 4):
        raise CheckpointError(  # not kept when downloaded: NVIDIA's TF code is frozen, so another version number is a damaged byte
            f"{source}: StyleGAN (v1) network version {show_value(version, 20)} is not supported (2, 3 and 4 are)")
    if func != "G_style":
        raise CheckpointError(f"{source}: a StyleGAN (v1) network built by {show_value(func, 30)}, not G_style")
    components = Gs.get("components")
    if not isinstance(components, dict) or not all(isinstance(components.get(k), TFNetwork) for k in ("mapping", "synthesis")):
        raise CheckpointError(f"{source}: the StyleGAN network Gs has no mapping and synthesis components")
    funcs = {k: components[k].get("build_func_name") for k in ("mapping", "synthesis")}
    if funcs != {"mapping": "G_mapping", "synthesis": "G_synthesis"}:
        builders = ", ".join(f"{k} {show_value(v, 30)}" for k, v in funcs.items())
        raise CheckpointError(f"{source}: a StyleGAN network built by other functions than G_mapping / G_synthesis ({builders})")
    settings: dict[str, Any] = {}
    for net in (Gs, components["mapping"], components["synthesis"]):
        kwargs = net.get("static_kwargs")
        if not isinstance(kwargs, dict):
            raise CheckpointError(f"{source}: a StyleGAN network without static_kwargs")
        settings.update(kwargs)
    unknown = sorted(str(k) for k in settings if k not in _READ | set(_DEFAULTS) | _IGNORED)
    if unknown:
        raise CheckpointError(f"{source}: unknown StyleGAN network setting {unknown[0]!r}; stylelift cannot tell how it changes the network")
    for key, default in _DEFAULTS.items():
        if key in settings and (not isinstance(settings[key], type(default)) or settings[key] != default):
            raise CheckpointError(f"{source}: StyleGAN networks with {key}={show_value(settings[key])} are not supported (only {default!r})")

    variables = tf_variables(source, Gs)
    for name in ("lod", "synthesis/lod"):
        if name not in variables:
            continue
        lod = np.asarray(variables[name])
        if lod.size != 1 or not np.issubdtype(lod.dtype, np.floating):
            raise CheckpointError(f"{source}: TensorFlow variable {name} is not one number")
        if float(lod.reshape(-1)[0]) != 0:
            raise CheckpointError(
                f"{source} is a snapshot taken during progressive growing (lod={float(lod.reshape(-1)[0]):g}); only fully grown networks (lod=0) can be read"
            )
    cfg = _config(source, settings, variables)
    state = _state(source, cfg, variables)
    check_shapes(source, cfg, {k: tuple(v.shape) for k, v in state.items()})
    info = {
        "class_name": "dnnlib.tflib.network.Network",
        "source": "stylegan (TensorFlow)",
        "network": "Gs",
        "network_version": Gs.get("version"),
        "network_name": str(Gs.get("name"))[:60],
        "static_kwargs": primitives(Gs.get("static_kwargs")),
    }
    return RawNetwork(cfg, state, format="nvidia-tensorflow", has_w_avg="mapping.w_avg" in state, info=info)


def _config(source: str, settings: dict, v: dict[str, np.ndarray]) -> StyleGANConfig:
    def shape(name: str, ndim: int) -> tuple[int, ...]:
        return tf_shape(source, v, name, ndim)

    if int_setting(source, settings.get("label_size", 0), "label_size") or "mapping/LabelConcat/weight" in v:
        raise CheckpointError(f"{source} is a conditional StyleGAN network (label_size > 0); stylelift reads unconditional ones only")
    n_mapping = tf_mapping_depth(source, v)
    z_dim, hidden = shape("mapping/Dense0/weight", 2)
    w_dim = shape(f"mapping/Dense{n_mapping - 1}/weight", 2)[1]
    for key, value in (("latent_size", z_dim), ("dlatent_size", w_dim), ("mapping_fmaps", hidden if n_mapping > 1 else None)):
        if value is None:
            continue
        if key in settings and int_setting(source, settings[key], key) != value:
            raise CheckpointError(f"{source}: {key} does not match the mapping network's weights")

    resolution = int_setting(source, settings.get("resolution", 1024), "resolution", minimum=4)
    log2 = resolution.bit_length() - 1
    if 2**log2 != resolution or not 2 <= log2 <= 10:
        raise CheckpointError(f"{source}: resolution {str(resolution)[:20]} is not a power of two from 4 to 1024")
    if (resolution > 4 and f"synthesis/{resolution}x{resolution}/Conv1/weight" not in v) or f"synthesis/{2 * resolution}x{2 * resolution}/Conv1/weight" in v:
        raise CheckpointError(f"{source}: the synthesis variables do not match resolution={show_value(resolution)}")
    resolutions = [2**i for i in range(2, log2 + 1)]
    channels = [shape("synthesis/4x4/Const/const", 4)[1]] + [shape(f"synthesis/{r}x{r}/Conv1/weight", 4)[3] for r in resolutions[1:]]

    fused = settings.get("fused_scale", "auto")
    if fused not in (True, False, "auto"):
        raise CheckpointError(f"{source}: fused_scale is {show_value(fused)}, not True, False or 'auto'")
    blur = settings.get("blur_filter", [1, 2, 1])
    blur = [] if blur is None else blur
    if not isinstance(blur, (list, tuple)):
        raise CheckpointError(f"{source}: blur_filter is {show_value(blur)}, not a list of taps")
    use_noise = settings.get("use_noise", True)
    if not isinstance(use_noise, bool) or use_noise != ("synthesis/noise0" in v):
        raise CheckpointError(f"{source}: use_noise={show_value(use_noise)} does not match the network's variables")
    return checked_config(
        source,
        StyleGANConfig,
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=int_setting(source, settings.get("num_channels", 3), "num_channels", minimum=1),
        mapping_layers=n_mapping,
        mapping_layer_features=hidden if n_mapping > 1 else w_dim,
        mapping_lr_multiplier=number_setting(source, settings.get("mapping_lrmul", 0.01), "mapping_lrmul"),
        channels=tuple(int(c) for c in channels),
        fused_min_resolution={True: 8, False: 2048, "auto": 128}[fused],
        blur_filter=tuple(int_setting(source, t, "a blur_filter tap") for t in blur),
        use_noise=use_noise,
    )


def _state(source: str, cfg: StyleGANConfig, variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    lods = len(cfg.block_resolutions)  # ToRGB_lod0 .. ToRGB_lod{lods - 1}, one per resolution
    unused = {f"synthesis/ToRGB_lod{k}/{p}" for k in range(1, lods) for p in ("weight", "bias")}
    tf_state = TFState(source, variables, skip=("lod", "synthesis/lod", *sorted(unused)))
    take, put = tf_state.take, tf_state.put

    def transposed(name: str, axes: tuple[int, ...]) -> np.ndarray:
        return take(name, ndim=len(axes)).transpose(axes)

    for i in range(cfg.mapping_layers):
        put(f"mapping.fc{i}.weight", transposed(f"mapping/Dense{i}/weight", (1, 0)))
        put(f"mapping.fc{i}.bias", take(f"mapping/Dense{i}/bias"))
    if tf_state.has("dlatent_avg"):
        put("mapping.w_avg", take("dlatent_avg"))
    const = take("synthesis/4x4/Const/const")  # [1, C, 4, 4]
    put("synthesis.b4.const", const[0] if const.shape[0] == 1 else const)
    layer = 0
    for r in cfg.block_resolutions:
        scopes = ("Const", "Conv") if r == 4 else ("Conv0_up", "Conv1")
        for dst, scope in zip(("conv0", "conv1"), scopes):
            src, dst = f"synthesis/{r}x{r}/{scope}", f"synthesis.b{r}.{dst}"
            if scope != "Const":
                put(f"{dst}.weight", transposed(f"{src}/weight", (3, 2, 0, 1)))
            put(f"{dst}.bias", take(f"{src}/bias"))
            put(f"{dst}.affine.weight", transposed(f"{src}/StyleMod/weight", (1, 0)))
            put(f"{dst}.affine.bias", take(f"{src}/StyleMod/bias"))
            if cfg.use_noise:
                put(f"{dst}.noise_strength", take(f"{src}/Noise/weight"))
                noise = take(f"synthesis/noise{layer}")
                put(f"{dst}.noise_const", noise.reshape(noise.shape[-2:]) if noise.ndim == 4 and noise.shape[:2] == (1, 1) else noise)
            layer += 1
    put("synthesis.torgb.weight", transposed("synthesis/ToRGB_lod0/weight", (3, 2, 0, 1)))
    put("synthesis.torgb.bias", take("synthesis/ToRGB_lod0/bias"))
    return tf_state.finish()
