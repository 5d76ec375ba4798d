"""NVIDIA's network pickles, PyTorch and TensorFlow, read without running their code.

- PyTorch (stylegan2-ada-pytorch `training.networks.Generator`, and the StyleGAN2 generators of
  stylegan3 pickles, `training.networks_stylegan2.Generator`): a dict holding `G_ema`, a
  `torch_utils.persistence` object. The config comes from the modules' stored attributes and
  weight shapes; the weights already carry stylelift's names.
- TensorFlow (StyleGAN2, network version 4, and StyleGAN2-ADA TF, version 5): a tuple
  `(G, D, Gs)` of `dnnlib.tflib.network.Network`. The config comes from `Gs.static_kwargs` and
  the variables' shapes; the variables are converted as NVIDIA's `legacy.py` does.

StyleGAN (v1) TensorFlow pickles (`G_style`, network versions 2-4) are handed to `nvidia_stylegan`.

Refused with a one-line `CheckpointError`: StyleGAN3 generators, StyleGAN2 configs B-D
(progressive growing; config A is StyleGAN's G_style, read as such), and conditional StyleGAN2
TensorFlow networks (label_size > 0 with `LabelConcat`: the label is mixed into z before
normalisation, which no PyTorch StyleGAN2 does). Conditional StyleGAN2-ADA TensorFlow networks
(`LabelEmbed`) embed the label exactly as the PyTorch networks do and are read.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, UnsupportedNetworkError, StyleliftError, first_line
from . import safe_pickle
from .nvidia_stylegan import is_stylegan_v1, read_stylegan_tensorflow
from .raw import RawNetwork
from .reading import (  # noqa: F401 (expected_shapes: tests use it from here)
    TFState,
    check_shapes,
    checked_config,
    expected_shapes,
    int_setting,
    number_setting,
    primitives,
    show_value,
    some,
    tf_mapping_depth,
    tf_shape,
    tf_variables,
    to_float32,
)
from .safe_pickle import PersistentObject, TensorBudget, TensorRecord, TFNetwork
from .stylegan2 import StyleGAN2Config

log = logging.getLogger(__name__)

MAX_MODULE_DEPTH = 16
MAX_MODULES = 10_000


def read_nvidia_pickle(path: Path) -> RawNetwork:
    """Read an NVIDIA PyTorch or TensorFlow StyleGAN2 network pickle (the `G_ema` / `Gs` generator).

    Raises FileNotFoundError, UnsafeCheckpointError (the pickle asks to run code) or
    CheckpointError (anything else that makes the file unreadable or unsupported).
    """
    path = Path(path)
    source = path.name
    data = safe_pickle.load(path)
    try:
        if isinstance(data, int) and data == safe_pickle.TORCH_LEGACY_MAGIC:
            from .rosinality import read_rosinality  # a legacy torch.save file: rosinality's format

            return read_rosinality(path)
        if isinstance(data, tuple) and len(data) == 3 and all(isinstance(net, TFNetwork) for net in data):
            return _read_tensorflow(source, data[2])
        if isinstance(data, dict):
            return _read_pytorch(source, data, path.stat().st_size)
    except StyleliftError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError, RuntimeError) as e:
        raise CheckpointError(f"{source}: unexpected network layout ({type(e).__name__}: {first_line(e)})") from None
    raise CheckpointError(
        f"{source} is a pickle but not an NVIDIA network pickle: expected a dict with 'G_ema' (PyTorch) "
        f"or a tuple (G, D, Gs) (TensorFlow), found {_describe(data)}"
    )


# ----------------------------------------------------------------------------------------------
# Resampling filters stored as 2-D kernels (also used by the rosinality reader)


def taps_from_kernel(source: str, kernel: Tensor) -> tuple[int, ...]:
    """The 1-D integer taps (e.g. 1,3,3,1) of a stored separable 2-D FIR kernel of any scale."""
    k = kernel.double()
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not torch.isfinite(k).all() or k.sum() <= 0:
        raise CheckpointError(f"{source}: a resampling filter that is not a square 2-D kernel")
    k = k / k.sum()
    rows = k.sum(dim=1)
    taps = rows / rows[rows > 0].min()
    rounded = taps.round()
    if (taps - rounded).abs().max() > 1e-4 or (torch.outer(rows, rows) - k).abs().max() > 1e-6:
        raise CheckpointError(f"{source}: a resampling filter stylelift cannot express as integer taps")
    return tuple(int(t) for t in rounded)


def _describe(x: Any) -> str:
    if isinstance(x, dict):
        keys = [show_value(k, 30) for k in list(x)[:8]]
        return f"a dict with keys {keys}"
    name = type(x).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _informational(value: Any, default: int) -> int:
    """A setting recorded for information only (the explicit widths decide): never worth refusing a file."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0
    return int(value) if ok else default


# ----------------------------------------------------------------------------------------------
# PyTorch pickles


def _read_pytorch(source: str, data: dict, file_size: int) -> RawNetwork:
    G = data.get("G_ema")
    if not isinstance(G, PersistentObject):
        found = f"its 'G_ema' is {_describe(G)}, not a network" if "G_ema" in data else f"no 'G_ema' network (found {_describe(data)})"
        raise CheckpointError(f"{source} is a pickle but not an NVIDIA PyTorch network pickle: {found}")
    modules = _module_tree(source, G)
    _refuse_other_generators(source, G, modules)
    records = _module_tensors(source, modules)
    cfg = _pytorch_config(source, G, modules, records)

    kept = {k: r for k, r in records.items() if not k.endswith(".resample_filter")}
    check_shapes(source, cfg, {k: r.shape for k, r in kept.items()})
    budget = TensorBudget(2 * file_size + (1 << 20), source)
    state = {k: to_float32(source, k, budget.materialize(r)) for k, r in kept.items()}

    from_stylegan3 = "fused_modconv_default" in modules["synthesis.b4"].state
    info = {
        "class_name": "training.networks_stylegan2.Generator" if from_stylegan3 else "training.networks.Generator",
        "source": "stylegan3 (StyleGAN2 generator)" if from_stylegan3 else "stylegan2-ada-pytorch",
        "network": "G_ema",
        "persistence_version": G.version,
        "pickle_keys": sorted(str(k) for k in data),
    }
    training_set = primitives(data.get("training_set_kwargs"))
    if training_set:
        info["training_set_kwargs"] = training_set
    return RawNetwork(cfg, state, format="nvidia-pytorch", has_w_avg="mapping.w_avg" in state, info=info)


def _module_tree(source: str, root: PersistentObject) -> dict[str, PersistentObject]:
    """Every submodule by its dotted name ('' for the root), walked without recursion."""
    tree: dict[str, PersistentObject] = {}
    seen: set[int] = set()
    todo = [("", root, 0)]
    while todo:
        prefix, module, depth = todo.pop()
        if depth > MAX_MODULE_DEPTH or len(tree) > MAX_MODULES:
            raise CheckpointError(f"{source}: modules nested deeper or more numerous than in any generator")
        if id(module) in seen or id(module.state) in seen:  # a generator never holds one module twice
            raise CheckpointError(f"{source}: module {prefix} is another module over again; no generator is built that way")
        seen.update((id(module), id(module.state)))
        tree[prefix] = module
        children = module.state.get("_modules") or {}
        if not isinstance(children, dict):
            raise CheckpointError(f"{source}: module {prefix or 'G_ema'} has malformed submodules")
        for name, child in children.items():
            if child is None:
                continue
            full = f"{prefix}.{name}" if prefix else str(name)
            if not isinstance(name, str) or not isinstance(child, PersistentObject):
                raise CheckpointError(f"{source}: submodule {full} is not an NVIDIA persistent module ({_describe(child)})")
            todo.append((full, child, depth + 1))
    return tree


def _module_tensors(source: str, modules: dict[str, PersistentObject]) -> dict[str, TensorRecord]:
    """Parameters and persistent buffers by their state-dict names."""
    records: dict[str, TensorRecord] = {}
    for prefix, module in modules.items():
        non_persistent = module.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            entries = module.state.get(group) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{source}: module {prefix or 'G_ema'} has malformed {group}")
            for name, record in entries.items():
                if record is None or (
                    group == "_buffers" and isinstance(non_persistent, (set, frozenset)) and name in non_persistent
                ):
                    continue
                full = f"{prefix}.{name}" if prefix else str(name)
                if not isinstance(record, TensorRecord):
                    raise CheckpointError(f"{source}: {full} is not a tensor ({_describe(record)})")
                records[full] = record
    return records


def _refuse_other_generators(source: str, G: PersistentObject, modules: dict[str, PersistentObject]) -> None:
    if "synthesis.input" in modules or any(m.class_name == "SynthesisInput" for m in modules.values()):
        raise UnsupportedNetworkError(
            f"{source} holds a StyleGAN3 generator (training.networks_stylegan3); stylelift reads StyleGAN2 and StyleGAN (v1) generators, not StyleGAN3"
        )
    if G.class_name != "Generator" or "mapping" not in modules or "synthesis.b4" not in modules:
        raise CheckpointError(f"{source}: G_ema is a {G.class_name[:60]!r}, not a StyleGAN2 generator stylelift knows")


def _pytorch_config(
    source: str, G: PersistentObject, modules: dict[str, PersistentObject], records: dict[str, TensorRecord]
) -> StyleGAN2Config:
    kwargs = G.state.get("_init_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    synthesis_kwargs = kwargs.get("synthesis_kwargs") if isinstance(kwargs.get("synthesis_kwargs"), dict) else {}

    def attr(module: str, key: str, default: Any = KeyError) -> Any:
        state = modules[module].state
        if key in state:
            return state[key]
        if default is KeyError:
            raise CheckpointError(f"{source}: {module or 'G_ema'} has no attribute {key!r}")
        return default

    def shape(name: str) -> tuple[int, ...]:
        if name not in records:
            raise CheckpointError(f"{source}: tensor {name} is missing")
        return records[name].shape

    def same(values: list, what: str) -> Any:
        if any(v != values[0] for v in values[1:]):
            raise CheckpointError(f"{source}: layers disagree on {what} ({values}); stylelift needs one value")
        return values[0]

    z_dim = int_setting(source, attr("", "z_dim"), "z_dim", minimum=1)
    c_dim = int_setting(source, attr("", "c_dim"), "c_dim")
    w_dim = int_setting(source, attr("", "w_dim"), "w_dim", minimum=1)
    resolution = int_setting(source, attr("", "img_resolution"), "img_resolution", minimum=4)
    img_channels = int_setting(source, attr("", "img_channels"), "img_channels", minimum=1)

    n_mapping = 0
    while f"mapping.fc{n_mapping}" in modules:
        n_mapping += 1
    if n_mapping == 0 or attr("mapping", "num_layers", n_mapping) != n_mapping:
        raise CheckpointError(f"{source}: the mapping network's layers are missing or misnumbered")
    fc = [f"mapping.fc{i}" for i in range(n_mapping)]
    lr_multiplier = same(
        [number_setting(source, attr(m, "bias_gain"), f"{m}.bias_gain") for m in fc], "the mapping learning-rate multiplier"
    )
    activation = same([attr(m, "activation", "lrelu") for m in fc], "the mapping activation")
    hidden = shape("mapping.fc0.weight")[0] if n_mapping > 1 else None
    embed = shape("mapping.embed.weight")[0] if c_dim > 0 else None

    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    if 2 ** (len(resolutions) + 1) != resolution or any(f"synthesis.b{r}" not in modules for r in resolutions):
        raise CheckpointError(f"{source}: the synthesis blocks do not match img_resolution={show_value(resolution)}")
    blocks = [f"synthesis.b{r}" for r in resolutions]
    layers = [m for m in modules if re.fullmatch(r"synthesis\.b\d+\.(conv0|conv1)", m)]
    to_rgbs = [m for m in modules if re.fullmatch(r"synthesis\.b\d+\.torgb", m)]
    architecture = same([attr(b, "architecture", "skip") for b in blocks], "the architecture")
    activations = {attr(m, "activation", "lrelu") for m in layers}
    if activation != "lrelu" or activations != {"lrelu"}:
        raise CheckpointError(f"{source}: activations {sorted({activation} | activations)} are not supported (only lrelu)")
    conv_clamp = same([attr(m, "conv_clamp", None) for m in layers + to_rgbs], "conv_clamp")
    use_noise = same([attr(m, "use_noise", True) for m in layers], "use_noise")

    if "resample_filter" in synthesis_kwargs and isinstance(synthesis_kwargs["resample_filter"], (list, tuple)):
        resample_filter = tuple(int_setting(source, t, "a resample_filter tap") for t in synthesis_kwargs["resample_filter"])
    elif "synthesis.b4.resample_filter" in records:
        resample_filter = taps_from_kernel(source, records["synthesis.b4.resample_filter"].materialize())
    else:
        resample_filter = (1, 3, 3, 1)
    num_fp16_res = attr("synthesis", "num_fp16_res", synthesis_kwargs.get("num_fp16_res"))
    if num_fp16_res is None:
        num_fp16_res = sum(bool(attr(b, "use_fp16", False)) for b in blocks)

    return checked_config(
        source,
        StyleGAN2Config,
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        mapping_layers=n_mapping,
        mapping_lr_multiplier=lr_multiplier,
        mapping_layer_features=hidden if hidden != w_dim else None,
        embed_features=embed if embed != w_dim else None,
        channel_base=_informational(synthesis_kwargs.get("channel_base"), 32768) or 32768,
        channel_max=_informational(synthesis_kwargs.get("channel_max"), 512) or 512,
        channels=tuple(shape(f"{b}.conv1.weight")[0] for b in blocks),
        architecture=architecture,
        resample_filter=resample_filter,
        conv_clamp=None if conv_clamp is None else number_setting(source, conv_clamp, "conv_clamp"),
        use_noise=bool(use_noise),
        num_fp16_res=_informational(num_fp16_res, 0),
    )


# ----------------------------------------------------------------------------------------------
# TensorFlow pickles

# Gs.static_kwargs that stylelift reads (the rest of the config comes from the variables' shapes).
_TF_KWARGS = {
    "latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers",
    "mapping_fmaps", "mapping_lrmul", "mapping_nonlinearity", "label_fmaps", "normalize_latents",
    "fmap_base", "fmap_max", "fmap_min", "fmap_decay", "fmap_const", "num_fp16_res", "conv_clamp",
    "architecture", "resample_kernel", "use_noise", "nonlinearity", "mapping_func", "synthesis_func",
}  # fmt: skip
# Settings that only matter for training or for TF's own sampling.
_TF_KWARGS_IGNORED = {
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "style_mixing_prob",
    "dlatent_avg_beta", "w_avg_beta", "structure", "randomize_noise", "fused_modconv", "dtype",
    "is_template_graph", "is_training", "is_validation", "return_dlatents",
}  # fmt: skip
_TF_SYNTHESIS_FUNCS = {"G_synthesis_stylegan2", "G_synthesis"}  # StyleGAN2 (v4) and StyleGAN2-ADA TF (v5)


def _read_tensorflow(source: str, Gs: TFNetwork) -> RawNetwork:
    if is_stylegan_v1(Gs):
        return read_stylegan_tensorflow(source, Gs)
    version = Gs.get("version")
    if version not in (4, 5):
        raise CheckpointError(  # not kept when downloaded: NVIDIA's TF code is frozen, so another version number is a damaged byte
            f"{source}: TensorFlow network version {show_value(version, 20)} is not supported (4 and 5 are)")
    kwargs = Gs.get("static_kwargs")
    components = Gs.get("components")
    if not isinstance(kwargs, dict) or not isinstance(components, dict):
        raise CheckpointError(f"{source}: the TensorFlow network Gs has no static_kwargs or components")
    unknown = sorted(str(k) for k in kwargs if k not in _TF_KWARGS and k not in _TF_KWARGS_IGNORED)
    if unknown:
        raise CheckpointError(
            f"{source}: unknown TensorFlow network setting {unknown[0]!r}; stylelift cannot tell how it changes the network"
        )
    synthesis = components.get("synthesis")
    synthesis_func = synthesis.get("build_func_name") if isinstance(synthesis, TFNetwork) else None
    synthesis_func = kwargs.get("synthesis_func", synthesis_func)
    if synthesis_func not in _TF_SYNTHESIS_FUNCS:
        raise CheckpointError(
            f"{source}: TensorFlow synthesis network {str(synthesis_func)[:40]!r} is not supported "
            "(stylelift reads StyleGAN2 config E/F networks: G_synthesis_stylegan2, or G_synthesis of StyleGAN2-ADA)"
        )
    if kwargs.get("mapping_func", "G_mapping") != "G_mapping":
        raise CheckpointError(f"{source}: TensorFlow mapping network {str(kwargs['mapping_func'])[:40]!r} is not supported")

    variables = tf_variables(source, Gs)
    cfg = _tensorflow_config(source, kwargs, variables)
    state = _tensorflow_state(source, cfg, variables)
    check_shapes(source, cfg, {k: tuple(v.shape) for k, v in state.items()})
    info = {
        "class_name": "dnnlib.tflib.network.Network",
        "source": "stylegan2-ada (TensorFlow)" if version == 5 else "stylegan2 (TensorFlow)",
        "network": "Gs",
        "network_version": version,
        "network_name": str(Gs.get("name"))[:60],
        "synthesis_func": synthesis_func,
        "static_kwargs": primitives(kwargs),
    }
    return RawNetwork(cfg, state, format="nvidia-tensorflow", has_w_avg="mapping.w_avg" in state, info=info)


def _tensorflow_config(source: str, kwargs: dict, v: dict[str, np.ndarray]) -> StyleGAN2Config:
    def shape(name: str, ndim: int) -> tuple[int, ...]:
        return tf_shape(source, v, name, ndim)

    c_dim = int_setting(source, kwargs.get("label_size", 0), "label_size")
    if "mapping/LabelConcat/weight" in v:
        raise CheckpointError(
            f"{source} is a conditional StyleGAN2 TensorFlow network (label_size={c_dim}); its label embedding "
            "(LabelConcat, mixed into z before normalisation) has no PyTorch StyleGAN2 equivalent, so stylelift cannot read it"
        )
    if kwargs.get("normalize_latents", True) is not True:
        raise CheckpointError(f"{source}: networks without latent normalisation are not supported")
    activations = {kwargs.get("mapping_nonlinearity", "lrelu"), kwargs.get("nonlinearity", "lrelu")}
    if activations != {"lrelu"}:
        raise CheckpointError(f"{source}: activations {sorted(map(str, activations))} are not supported (only lrelu)")

    n_mapping = tf_mapping_depth(source, v)
    embed = None
    if c_dim > 0:
        if "mapping/LabelEmbed/weight" not in v:
            raise CheckpointError(f"{source}: a conditional network (label_size={c_dim}) without a label embedding")
        embed = shape("mapping/LabelEmbed/weight", 2)[1]
    w_dim = shape(f"mapping/Dense{n_mapping - 1}/weight", 2)[1]
    z_dim = shape("mapping/Dense0/weight", 2)[0] - (embed or 0)
    if z_dim != int_setting(source, kwargs.get("latent_size", z_dim), "latent_size"):
        raise CheckpointError(f"{source}: latent_size does not match the mapping network's weights")
    hidden = shape("mapping/Dense0/weight", 2)[1] if n_mapping > 1 else None

    resolution = int_setting(source, kwargs.get("resolution", 1024), "resolution", minimum=4)
    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    if 2 ** (len(resolutions) + 1) != resolution:
        raise CheckpointError(f"{source}: resolution {show_value(resolution)} is not a power of two")
    if any(name.startswith("synthesis/ToRGB_lod") for name in v) or "synthesis/lod" in v:
        raise UnsupportedNetworkError(f"{source}: a progressive-growing StyleGAN2 network (configs A-D) is not supported")
    if (
        f"synthesis/{resolution}x{resolution}/Conv1/weight" not in v
        or f"synthesis/{2 * resolution}x{2 * resolution}/Conv1/weight" in v
    ):
        raise CheckpointError(f"{source}: the synthesis variables do not match resolution={show_value(resolution)}")
    const_channels = shape("synthesis/4x4/Const/const", 4)[1]
    channels = [shape("synthesis/4x4/Conv/weight", 4)[3]] + [shape(f"synthesis/{r}x{r}/Conv1/weight", 4)[3] for r in resolutions[1:]]
    if const_channels != channels[0]:
        raise CheckpointError(
            f"{source}: a constant input of {const_channels} channels feeding {channels[0]} (fmap_const) is not supported"
        )

    architecture = kwargs.get("architecture", "skip")
    has_skip = "synthesis/8x8/Skip/weight" in v
    has_early_rgb = "synthesis/4x4/ToRGB/weight" in v
    expected = {"skip": (False, True), "resnet": (True, resolution == 4), "orig": (False, resolution == 4)}.get(architecture)
    if expected is None or (resolution > 4 and expected != (has_skip, has_early_rgb)):
        raise CheckpointError(f"{source}: architecture {str(architecture)[:20]!r} does not match the network's variables")

    use_noise = kwargs.get("use_noise", True)
    if bool(use_noise) != ("synthesis/noise0" in v):
        raise CheckpointError(f"{source}: use_noise={show_value(use_noise)} does not match the network's variables")
    kernel = kwargs.get("resample_kernel", [1, 3, 3, 1])
    kernel = [1, 1] if kernel is None else kernel  # TF's default for None: a box filter
    if not isinstance(kernel, (list, tuple)) or not kernel:
        raise CheckpointError(f"{source}: bad resample_kernel {show_value(kernel)}")
    conv_clamp = kwargs.get("conv_clamp")
    return checked_config(
        source,
        StyleGAN2Config,
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=int_setting(source, kwargs.get("num_channels", 3), "num_channels", minimum=1),
        mapping_layers=n_mapping,
        mapping_lr_multiplier=number_setting(source, kwargs.get("mapping_lrmul", 0.01), "mapping_lrmul"),
        mapping_layer_features=hidden if hidden != w_dim else None,
        embed_features=embed if embed != w_dim else None,
        channel_base=2 * (_informational(kwargs.get("fmap_base"), 16384) or 16384),
        channel_max=_informational(kwargs.get("fmap_max"), 512) or 512,
        channels=tuple(channels),
        architecture=architecture,
        resample_filter=tuple(int_setting(source, t, "a resample_kernel tap") for t in kernel),
        conv_clamp=None if conv_clamp is None else number_setting(source, conv_clamp, "conv_clamp"),
        use_noise=bool(use_noise),
        num_fp16_res=_informational(kwargs.get("num_fp16_res"), 0),
    )


def _tensorflow_state(source: str, cfg: StyleGAN2Config, variables: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """TF variables -> stylelift tensors: dense weights transposed, conv weights HWIO -> OIHW
    (the up-sampling conv and the resnet skip also flipped in space), style biases + 1."""
    tf_state = TFState(source, variables, skip=("lod",))
    take, put = tf_state.take, tf_state.put

    def conv(w: np.ndarray, flip: bool) -> np.ndarray:  # [kh, kw, I, O] -> [O, I, kh, kw]
        return (w[::-1, ::-1] if flip else w).transpose(3, 2, 0, 1)

    def modulated(dst: str, src: str, *, flip: bool = False, noise: Optional[int] = None) -> None:
        put(f"{dst}.weight", conv(take(f"{src}/weight"), flip))
        put(f"{dst}.bias", take(f"{src}/bias"))
        put(f"{dst}.affine.weight", take(f"{src}/mod_weight").T)
        put(f"{dst}.affine.bias", take(f"{src}/mod_bias") + np.float32(1))
        if noise is not None and cfg.use_noise:
            put(f"{dst}.noise_strength", take(f"{src}/noise_strength").reshape([]))
            put(f"{dst}.noise_const", take(f"synthesis/noise{noise}")[0, 0])

    for i in range(cfg.mapping_layers):
        put(f"mapping.fc{i}.weight", take(f"mapping/Dense{i}/weight").T)
        put(f"mapping.fc{i}.bias", take(f"mapping/Dense{i}/bias"))
    if cfg.c_dim > 0:
        put("mapping.embed.weight", take("mapping/LabelEmbed/weight").T)
        put("mapping.embed.bias", take("mapping/LabelEmbed/bias"))
    if tf_state.has("dlatent_avg"):
        put("mapping.w_avg", take("dlatent_avg"))

    put("synthesis.b4.const", take("synthesis/4x4/Const/const")[0])
    modulated("synthesis.b4.conv1", "synthesis/4x4/Conv", noise=0)
    for r in cfg.block_resolutions[1:]:
        k = int(math.log2(r))
        modulated(f"synthesis.b{r}.conv0", f"synthesis/{r}x{r}/Conv0_up", flip=True, noise=2 * k - 5)
        modulated(f"synthesis.b{r}.conv1", f"synthesis/{r}x{r}/Conv1", noise=2 * k - 4)
        if cfg.architecture == "resnet":
            put(f"synthesis.b{r}.skip.weight", conv(take(f"synthesis/{r}x{r}/Skip/weight"), flip=True))
    for r in cfg.block_resolutions:
        if cfg.architecture == "skip" or r == cfg.img_resolution:
            modulated(f"synthesis.b{r}.torgb", f"synthesis/{r}x{r}/ToRGB")
    return tf_state.finish()
