"""Network files in other projects' formats, written from a tiny stylelift Generator.

The files copy the opcode structure of the real ones (facts from NVIDIA's and rosinality's code,
no code from there):
- NVIDIA PyTorch: a dict {G, D, G_ema, augment_pipe, training_set_kwargs}; each network a call of
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version,
  module_src, class_name, state}, the state nesting `_parameters`, `_buffers`, `_modules`,
  `_init_args`, `_init_kwargs` like a torch module's `__dict__`; parameters through
  `torch._utils._rebuild_parameter` / `_rebuild_tensor_v2` / `torch.storage._load_from_bytes`.
- NVIDIA TensorFlow: a tuple (G, D, Gs) of `dnnlib.tflib.network.Network`, each NEWOBJ + BUILD of
  {version, name, static_kwargs, components, build_module_src, build_func_name, variables}.
- rosinality: `torch.save` of {g, d, g_ema, g_optim, d_optim, args, ada_aug_p} or {g_ema, latent_avg}.

Stand-in modules (`torch_utils.persistence`, `dnnlib.util`, `dnnlib.tflib.network`, and numpy's
pre-2.0 `numpy.core.multiarray` names) live in `sys.modules` only while a builder pickles.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

from stylelift.models.stylegan import StyleGAN, StyleGANConfig
from stylelift.models.stylegan2 import Generator, StyleGAN2Config, fir_filter_2d


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (several threads only add overhead here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> StyleGAN2Config:
    """16 px, widths that differ per block, z_dim != w_dim, a mapping hidden width of its own."""
    base = dict(
        z_dim=10, w_dim=12, img_resolution=16, mapping_layers=2, mapping_layer_features=9,
        channel_base=256, channel_max=16, channels=(12, 10, 6),
    )  # fmt: skip
    base.update(overrides)
    return StyleGAN2Config(**base)


def rosinality_config(**overrides) -> StyleGAN2Config:
    """rosinality's generator: 'skip', unconditional, z_dim = w_dim = every mapping width."""
    base = dict(z_dim=12, w_dim=12, img_resolution=16, mapping_layers=2, channel_max=12, channels=(12, 10, 6), op_order="rosinality")
    base.update(overrides)
    return StyleGAN2Config(**base)


def random_generator(cfg: StyleGAN2Config, seed: int = 0) -> Generator:
    """A Generator whose every tensor is random, so a misplaced weight changes the image."""
    gen = torch.Generator().manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            r = torch.randn(t.shape, generator=gen)
            if name.endswith("affine.bias"):
                r = (1 + 0.1 * r).clamp(0.6, 1.4)  # style biases stay near 1, as in trained nets
            elif name.endswith(("bias", "noise_strength", "w_avg")):
                r = 0.3 * r
            t.copy_(r)
    return G.eval().requires_grad_(False)


def outputs(G: Generator, seed: int = 1, n: int = 2) -> torch.Tensor:
    """Images for fixed z (and labels), with truncation so that w_avg matters too."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, G.z_dim], generator=gen)
    c = torch.eye(G.c_dim)[torch.arange(n) % G.c_dim] if G.c_dim else None
    with torch.no_grad():
        return G(z, c, truncation_psi=0.7, noise_mode="const")


# ----------------------------------------------------------------------------------------------
# Stand-in modules


@contextlib.contextmanager
def stand_in_modules(modules: dict[str, dict[str, Any]]):
    """Put modules with the given attributes into sys.modules for the duration of the block."""
    saved = {name: sys.modules.get(name) for name in modules}
    try:
        for name, attrs in modules.items():
            module = types.ModuleType(name)
            for key, value in attrs.items():
                setattr(module, key, value)
            sys.modules[name] = module
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _named(obj, module: str, qualname: str):
    obj.__module__, obj.__qualname__, obj.__name__ = module, qualname, qualname.rsplit(".", 1)[-1]
    return obj


def _reconstruct_persistent_obj(meta):  # never called: only its name goes into the pickle
    raise AssertionError("stand-in")


def _legacy_scalar(dtype, data):  # numpy < 2 spelling of numpy.core.multiarray.scalar
    raise AssertionError("stand-in")


def _legacy_reconstruct(cls, shape, typecode):  # numpy < 2 spelling of numpy.core.multiarray._reconstruct
    raise AssertionError("stand-in")


class EasyDict(dict):
    """Stands in for dnnlib.util.EasyDict when pickling."""


class Network:
    """Stands in for dnnlib.tflib.network.Network when pickling: `__getstate__` gives its state."""

    def __init__(self, state: dict):
        self._state = state

    def __getstate__(self):
        return self._state


_named(_reconstruct_persistent_obj, "torch_utils.persistence", "_reconstruct_persistent_obj")
_named(_legacy_scalar, "numpy.core.multiarray", "scalar")
_named(_legacy_reconstruct, "numpy.core.multiarray", "_reconstruct")
_named(EasyDict, "dnnlib.util", "EasyDict")
_named(Network, "dnnlib.tflib.network", "Network")

_STAND_INS = {
    "torch_utils": {},
    "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
    "dnnlib": {"EasyDict": EasyDict},
    "dnnlib.util": {"EasyDict": EasyDict},
    "dnnlib.tflib": {},
    "dnnlib.tflib.network": {"Network": Network},
}
_NUMPY_1_STAND_INS = {"numpy.core.multiarray": {"scalar": _legacy_scalar, "_reconstruct": _legacy_reconstruct}}


class _Pickler(pickle.Pickler):
    """Writes numpy scalars and arrays under numpy 1.x names when asked (the real files predate numpy 2)."""

    numpy1 = False

    def reducer_override(self, obj):
        if self.numpy1 and isinstance(obj, np.generic):
            return _legacy_scalar, (obj.dtype, obj.tobytes())
        if self.numpy1 and type(obj) is np.ndarray:
            _, args, state = obj.__reduce__()
            return _legacy_reconstruct, args, state
        return NotImplemented


def dump(obj: Any, path: Path, *, protocol: int = 4, numpy1: bool = True) -> Path:
    """Pickle `obj` with the stand-in modules in place."""
    modules = dict(_STAND_INS, **(_NUMPY_1_STAND_INS if numpy1 else {}))
    buf = io.BytesIO()
    with stand_in_modules(modules):
        pickler = _Pickler(buf, protocol=protocol)
        pickler.numpy1 = numpy1
        pickler.dump(obj)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


# ----------------------------------------------------------------------------------------------
# NVIDIA PyTorch pickles


class Persistent:
    """Pickles like an object of a `torch_utils.persistence.persistent_class`."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)


MODULE_SRC = "# stands in for the source of training/networks.py that NVIDIA's pickles carry\n"


def torch_module_state(
    params: dict, buffers: dict, children: dict, attrs: dict, init_kwargs: Optional[dict] = None, non_persistent=()
) -> dict:
    """A torch module's `__dict__` as a persistent class pickles it."""
    state = dict(
        training=False,
        _parameters=OrderedDict(
            (k, None if v is None else torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()
        ),
        _buffers=OrderedDict((k, v.clone()) for k, v in buffers.items()),
        _non_persistent_buffers_set=set(non_persistent),
        _backward_hooks=OrderedDict(),
        _forward_hooks=OrderedDict(),
        _forward_pre_hooks=OrderedDict(),
        _state_dict_hooks=OrderedDict(),
        _load_state_dict_pre_hooks=OrderedDict(),
        _modules=OrderedDict(children),
    )
    state.update(attrs)
    state.update(_init_args=(), _init_kwargs=init_kwargs if init_kwargs is not None else {})
    return state


def nvidia_pytorch_generator(
    G: Generator, *, flavor: str = "ada", module_src: str = MODULE_SRC, w_avg: bool = True
) -> Persistent:
    """G as stylegan2-ada-pytorch (`flavor='ada'`) or stylegan3's networks_stylegan2 (`'sg3'`) pickles it."""
    cfg, sd = G.config, G.state_dict()
    sg3 = flavor == "sg3"
    filt = fir_filter_2d(cfg.resample_filter)

    def module(class_name, params=None, buffers=None, children=None, attrs=None, **kw):
        return Persistent(
            class_name, torch_module_state(params or {}, buffers or {}, children or {}, attrs or {}, **kw), module_src
        )

    def fc(name, in_features, lr=1.0, activation="linear"):
        attrs = dict(in_features=in_features, out_features=sd[f"{name}.weight"].shape[0]) if sg3 else {}
        attrs.update(activation=activation, weight_gain=np.float64(lr / np.sqrt(in_features)), bias_gain=lr)
        return module("FullyConnectedLayer", {"weight": sd[f"{name}.weight"], "bias": sd[f"{name}.bias"]}, attrs=attrs)

    def layer(name, in_ch, out_ch, r, up):
        params = {"weight": sd[f"{name}.weight"]}
        buffers = {"resample_filter": filt}
        if cfg.use_noise:
            buffers["noise_const"] = sd[f"{name}.noise_const"]
            params["noise_strength"] = sd[f"{name}.noise_strength"]
        params["bias"] = sd[f"{name}.bias"]
        attrs = dict(in_channels=in_ch, out_channels=out_ch, w_dim=cfg.w_dim) if sg3 else {}
        attrs.update(
            resolution=r,
            up=up,
            use_noise=cfg.use_noise,
            activation="lrelu",
            conv_clamp=cfg.conv_clamp,
            padding=1,
            act_gain=np.float64(np.sqrt(2)),
        )
        return module("SynthesisLayer", params, buffers, {"affine": fc(f"{name}.affine", cfg.w_dim)}, attrs)

    def torgb(name, in_ch):
        attrs = dict(in_channels=in_ch, out_channels=cfg.img_channels, w_dim=cfg.w_dim) if sg3 else {}
        attrs.update(conv_clamp=cfg.conv_clamp, weight_gain=np.float64(1 / np.sqrt(in_ch)))
        params = {"weight": sd[f"{name}.weight"], "bias": sd[f"{name}.bias"]}
        return module("ToRGBLayer", params, children={"affine": fc(f"{name}.affine", cfg.w_dim)}, attrs=attrs)

    blocks = OrderedDict()
    ch = cfg.block_channels
    fp16_from = max(2 ** (int(math.log2(cfg.img_resolution)) + 1 - cfg.num_fp16_res), 8)
    for r in cfg.block_resolutions:
        in_ch = ch[r // 2] if r > 4 else 0
        name = f"synthesis.b{r}"
        is_last = r == cfg.img_resolution
        children = OrderedDict()
        if in_ch:
            children["conv0"] = layer(f"{name}.conv0", in_ch, ch[r], r, 2)
        children["conv1"] = layer(f"{name}.conv1", ch[r], ch[r], r, 1)
        if is_last or cfg.architecture == "skip":
            children["torgb"] = torgb(f"{name}.torgb", ch[r])
        if in_ch and cfg.architecture == "resnet":
            skip_attrs = dict(
                activation="linear",
                up=2,
                down=1,
                conv_clamp=None,
                padding=0,
                weight_gain=np.float64(1 / np.sqrt(in_ch)),
                act_gain=1.0,
            )
            children["skip"] = module(
                "Conv2dLayer", {"weight": sd[f"{name}.skip.weight"], "bias": None}, {"resample_filter": filt}, attrs=skip_attrs
            )
        attrs = dict(in_channels=in_ch, w_dim=cfg.w_dim, resolution=r, img_channels=cfg.img_channels, is_last=is_last,
                     architecture=cfg.architecture, use_fp16=r >= fp16_from, channels_last=False)  # fmt: skip
        if sg3:
            attrs["fused_modconv_default"] = "inference_only"
        attrs.update(num_conv=1 if r == 4 else 2, num_torgb=int("torgb" in children))
        params = {"const": sd[f"{name}.const"]} if r == 4 else {}
        blocks[f"b{r}"] = module("SynthesisBlock", params, {"resample_filter": filt}, children, attrs)
    syn_attrs = dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_resolution_log2=int(math.log2(cfg.img_resolution)),
                     img_channels=cfg.img_channels, block_resolutions=cfg.block_resolutions, num_ws=cfg.num_ws)  # fmt: skip
    if sg3:
        syn_attrs["num_fp16_res"] = cfg.num_fp16_res
    synthesis = module("SynthesisNetwork", children=blocks, attrs=syn_attrs)

    map_children = OrderedDict()
    embed = 0
    if cfg.c_dim:
        map_children["embed"] = fc("mapping.embed", cfg.c_dim)
        embed = sd["mapping.embed.weight"].shape[0]
    features = [cfg.z_dim + embed] + [cfg.mapping_layer_features or cfg.w_dim] * (cfg.mapping_layers - 1)
    for i in range(cfg.mapping_layers):
        map_children[f"fc{i}"] = fc(f"mapping.fc{i}", features[i], cfg.mapping_lr_multiplier, "lrelu")
    map_attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws, num_layers=cfg.mapping_layers,
                     w_avg_beta=0.995 if w_avg else None)  # fmt: skip
    map_buffers = {"w_avg": sd["mapping.w_avg"]} if w_avg else {}
    mapping = module("MappingNetwork", buffers=map_buffers, children=map_children, attrs=map_attrs)

    mapping_kwargs = EasyDict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier)
    if cfg.mapping_layer_features is not None:
        mapping_kwargs["layer_features"] = cfg.mapping_layer_features
    if cfg.embed_features is not None:
        mapping_kwargs["embed_features"] = cfg.embed_features
    synthesis_kwargs = EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                                conv_clamp=cfg.conv_clamp, architecture=cfg.architecture)  # fmt: skip
    init_kwargs = dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs,
                       c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)  # fmt: skip
    g_attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                   img_channels=cfg.img_channels, num_ws=cfg.num_ws)  # fmt: skip
    return module("Generator", children=OrderedDict(synthesis=synthesis, mapping=mapping), attrs=g_attrs, init_kwargs=init_kwargs)


def nvidia_pytorch_snapshot(G_ema: Generator, *, flavor: str = "ada", **kw) -> dict:
    """What NVIDIA's training loop pickles: G (other weights), D, G_ema, augment_pipe, training_set_kwargs."""
    G_train = random_generator(G_ema.config, seed=99)
    d_params = {"weight": torch.randn(4, 3, 1, 1), "bias": torch.zeros(4)}
    fromrgb = Persistent("Conv2dLayer", torch_module_state(d_params, {}, {}, {"activation": "lrelu"}), MODULE_SRC)
    D = Persistent("Discriminator", torch_module_state({}, {}, {"b16": fromrgb}, {"c_dim": G_ema.c_dim}), MODULE_SRC)
    augment = Persistent("AugmentPipe", torch_module_state({}, {"p": torch.tensor(0.2)}, {}, {"xflip": 1.0}), MODULE_SRC)
    training_set = EasyDict(class_name="training.dataset.ImageFolderDataset", path="/data/tiny.zip", use_labels=bool(G_ema.c_dim),
                            max_size=1000, xflip=False, resolution=G_ema.img_resolution)  # fmt: skip
    return dict(
        G=nvidia_pytorch_generator(G_train, flavor=flavor, **kw),
        D=D,
        G_ema=nvidia_pytorch_generator(G_ema, flavor=flavor, **kw),
        augment_pipe=augment,
        training_set_kwargs=training_set,
    )


def write_nvidia_pytorch(path: Path, G: Generator, *, flavor: str = "ada", protocol: int = 4, numpy1: bool = True, **kw) -> Path:
    return dump(nvidia_pytorch_snapshot(G, flavor=flavor, **kw), path, protocol=protocol, numpy1=numpy1)


def stylegan3_snapshot() -> dict:
    """An NVIDIA pickle whose G_ema is a StyleGAN3 generator (input layer, L0_36_512-style layers)."""

    def m(class_name, params=None, children=None, attrs=None):
        return Persistent(class_name, torch_module_state(params or {}, {}, children or {}, attrs or {}), MODULE_SRC)

    inp = m("SynthesisInput", {"weight": torch.randn(8, 8)}, attrs={"size": np.array([36, 36])})
    syn = m("SynthesisNetwork", children={"input": inp, "L0_36_8": m("SynthesisLayer", {"weight": torch.randn(8, 8, 3, 3)})})
    mapping = m(
        "MappingNetwork", children={"fc0": m("FullyConnectedLayer", {"weight": torch.randn(8, 8), "bias": torch.zeros(8)})}
    )
    G = m(
        "Generator",
        children={"synthesis": syn, "mapping": mapping},
        attrs=dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3),
    )
    return dict(G=G, D=m("Discriminator"), G_ema=G, augment_pipe=None, training_set_kwargs=None)


# ----------------------------------------------------------------------------------------------
# NVIDIA TensorFlow pickles


def tf_variables(G: Generator, *, label: str = "embed") -> dict[str, np.ndarray]:
    """G's weights under TF StyleGAN2 names, converted the way NVIDIA's legacy.py undoes.

    Dense weights [in, out]; conv weights HWIO, spatially flipped for Conv0_up and Skip; style
    biases minus 1; noise maps [1, 1, r, r]; 0-d variables as numpy float32 scalars.
    `label='concat'` gives the StyleGAN2 (v4) label embedding `LabelConcat` instead of ADA's `LabelEmbed`.
    """
    cfg = G.config
    sd = {k: v.numpy().astype(np.float32) for k, v in G.state_dict().items()}
    v: dict[str, Any] = {}

    def hwio(w, flip=False):
        w = w.transpose(2, 3, 1, 0)
        return np.ascontiguousarray(w[::-1, ::-1] if flip else w)

    def modulated(src, dst, flip=False, noise=None):
        v[f"{dst}/weight"] = hwio(sd[f"{src}.weight"], flip)
        v[f"{dst}/mod_weight"] = np.ascontiguousarray(sd[f"{src}.affine.weight"].T)
        v[f"{dst}/mod_bias"] = sd[f"{src}.affine.bias"] - np.float32(1)
        if noise is not None and cfg.use_noise:
            v[f"{dst}/noise_strength"] = np.float32(sd[f"{src}.noise_strength"])
            v[f"synthesis/noise{noise}"] = sd[f"{src}.noise_const"][None, None]
        v[f"{dst}/bias"] = sd[f"{src}.bias"]

    v["dlatent_avg"] = sd["mapping.w_avg"]
    v["lod"] = np.float32(0)
    if cfg.c_dim and label == "embed":
        v["mapping/LabelEmbed/weight"] = np.ascontiguousarray(sd["mapping.embed.weight"].T)
        v["mapping/LabelEmbed/bias"] = sd["mapping.embed.bias"]
    if cfg.c_dim and label == "concat":
        v["mapping/LabelConcat/weight"] = np.ones([cfg.c_dim, cfg.z_dim], np.float32)
    for i in range(cfg.mapping_layers):
        v[f"mapping/Dense{i}/weight"] = np.ascontiguousarray(sd[f"mapping.fc{i}.weight"].T)
        v[f"mapping/Dense{i}/bias"] = sd[f"mapping.fc{i}.bias"]
    v["synthesis/4x4/Const/const"] = sd["synthesis.b4.const"][None]
    modulated("synthesis.b4.conv1", "synthesis/4x4/Conv", noise=0)
    for r in cfg.block_resolutions:
        k = int(math.log2(r))
        if r > 4:
            modulated(f"synthesis.b{r}.conv0", f"synthesis/{r}x{r}/Conv0_up", flip=True, noise=2 * k - 5)
            modulated(f"synthesis.b{r}.conv1", f"synthesis/{r}x{r}/Conv1", noise=2 * k - 4)
            if cfg.architecture == "resnet":
                v[f"synthesis/{r}x{r}/Skip/weight"] = hwio(sd[f"synthesis.b{r}.skip.weight"], flip=True)
        if cfg.architecture == "skip" or r == cfg.img_resolution:
            modulated(f"synthesis.b{r}.torgb", f"synthesis/{r}x{r}/ToRGB")
    return v


def tf_static_kwargs(cfg: StyleGAN2Config, version: int) -> dict:
    kw = dict(num_channels=cfg.img_channels, resolution=cfg.img_resolution, label_size=cfg.c_dim, latent_size=cfg.z_dim,
              dlatent_size=cfg.w_dim, mapping_layers=cfg.mapping_layers, mapping_fmaps=cfg.mapping_layer_features or cfg.w_dim,
              mapping_lrmul=cfg.mapping_lr_multiplier, fmap_base=cfg.channel_base // 2, fmap_max=cfg.channel_max,
              architecture=cfg.architecture, resample_kernel=list(cfg.resample_filter), truncation_psi=0.5)  # fmt: skip
    if version >= 5:
        kw.update(conv_clamp=cfg.conv_clamp, num_fp16_res=cfg.num_fp16_res, use_noise=cfg.use_noise)
        if cfg.embed_features is not None:
            kw["label_fmaps"] = cfg.embed_features
    return kw


def tf_network(
    name: str, func: str, variables: dict, static_kwargs: dict, components: Optional[dict] = None, version: int = 4
) -> Network:
    state = dict(
        version=version,
        name=name,
        static_kwargs=dict(static_kwargs),
        components=dict(components or {}),
        build_module_src="# stands in for the source of training/networks_stylegan2.py\n",
        build_func_name=func,
        variables=list(variables.items()),
    )
    if version >= 5:
        state.update(
            input_shapes=[[None, 512]], output_shapes=[[None, 3, 16, 16]], input_names=["latents_in"], output_names=["images_out"]
        )
    return Network(state)


def nvidia_tf_networks(
    G: Generator,
    *,
    version: int = 4,
    label: str = "embed",
    static_kwargs: Optional[dict] = None,
    synthesis_func: Optional[str] = None,
) -> tuple:
    """(G, D, Gs) as NVIDIA's TF training pickles them; Gs holds `G`'s weights, G other ones."""

    def gs_like(gen: Generator, name: str) -> Network:
        v = tf_variables(gen, label=label)
        kw = static_kwargs if static_kwargs is not None else tf_static_kwargs(gen.config, version)
        top = {k: v.pop(k) for k in ("dlatent_avg", "lod")}
        mapping = tf_network(
            "G_mapping", "G_mapping", {k[8:]: x for k, x in v.items() if k.startswith("mapping/")}, kw, version=version
        )
        func = synthesis_func or ("G_synthesis" if version >= 5 else "G_synthesis_stylegan2")
        synthesis = tf_network(
            "G_synthesis", func, {k[10:]: x for k, x in v.items() if k.startswith("synthesis/")}, kw, version=version
        )
        return tf_network(name, "G_main", top, kw, {"mapping": mapping, "synthesis": synthesis}, version=version)

    D = tf_network(
        "D", "D_stylegan2", {"Output/weight": np.ones([4, 1], np.float32)}, {"resolution": G.img_resolution}, version=version
    )
    return gs_like(random_generator(G.config, seed=99), "G"), D, gs_like(G, "Gs")


def write_nvidia_tf(path: Path, G: Generator, *, protocol: int = 3, **kw) -> Path:
    return dump(nvidia_tf_networks(G, **kw), path, protocol=protocol)


# ----------------------------------------------------------------------------------------------
# NVIDIA StyleGAN (v1) TensorFlow pickles (`karras2019stylegan-*.pkl`)


def tiny_stylegan_config(**overrides) -> StyleGANConfig:
    """32 px StyleGAN (v1), every up-sampling fused (NVIDIA's fused_scale=True; 2048 = False),
    widths that differ per block."""
    base = dict(z_dim=10, w_dim=12, img_resolution=32, mapping_layers=3, mapping_layer_features=9,
                channels=(12, 10, 8, 6), fused_min_resolution=8)  # fmt: skip
    base.update(overrides)
    return StyleGANConfig(**base)


def random_stylegan(cfg: StyleGANConfig, seed: int = 0) -> StyleGAN:
    """Every weight, bias, noise strength and w_avg drawn from N(0, 1), the mapping's weights from
    N(0, 1 / lr_mul^2) as NVIDIA's (NVIDIA zero-initialises biases and noise strengths: that would
    leave them untested)."""
    G = StyleGAN(cfg)
    rng = np.random.RandomState(seed)  # numpy's legacy generator: the same numbers on every platform and version
    with torch.no_grad():
        for name, t in sorted(G.state_dict().items()):
            scale = 1 / cfg.mapping_lr_multiplier if name.startswith("mapping.fc") else 1  # as NVIDIA initialises them
            t.copy_(torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32) * np.float32(scale)))
    return G.eval().requires_grad_(False)


def stylegan_tf_variables(G: StyleGAN) -> dict[str, np.ndarray]:
    """G's weights under the TF names of NVIDIA's StyleGAN, plus the ToRGB layers of the lower
    levels of detail that progressive growing left in the file."""
    cfg, sd = G.config, {k: v.numpy() for k, v in G.state_dict().items()}
    v = {"dlatent_avg": sd["mapping.w_avg"], "lod": np.float32(0), "synthesis/lod": np.float32(0)}
    for i in range(cfg.mapping_layers):
        v[f"mapping/Dense{i}/weight"] = np.ascontiguousarray(sd[f"mapping.fc{i}.weight"].T)
        v[f"mapping/Dense{i}/bias"] = sd[f"mapping.fc{i}.bias"]
    v["synthesis/4x4/Const/const"] = sd["synthesis.b4.const"][None]
    layer = 0
    for r in cfg.block_resolutions:
        for src, scope in zip(("conv0", "conv1"), ("Const", "Conv") if r == 4 else ("Conv0_up", "Conv1")):
            src, dst = f"synthesis.b{r}.{src}", f"synthesis/{r}x{r}/{scope}"
            if f"{src}.weight" in sd:
                v[f"{dst}/weight"] = np.ascontiguousarray(sd[f"{src}.weight"].transpose(2, 3, 1, 0))
            v[f"{dst}/bias"] = sd[f"{src}.bias"]
            v[f"{dst}/StyleMod/weight"] = np.ascontiguousarray(sd[f"{src}.affine.weight"].T)
            v[f"{dst}/StyleMod/bias"] = sd[f"{src}.affine.bias"]
            if cfg.use_noise:
                v[f"{dst}/Noise/weight"] = sd[f"{src}.noise_strength"]
                v[f"synthesis/noise{layer}"] = sd[f"{src}.noise_const"][None, None]
            layer += 1
    for lod, r in enumerate(reversed(cfg.block_resolutions)):
        c = cfg.block_channels[r]
        rgb = sd["synthesis.torgb.weight"].transpose(2, 3, 1, 0) if lod == 0 else np.ones([1, 1, c, cfg.img_channels], np.float32)
        v[f"synthesis/ToRGB_lod{lod}/weight"] = np.ascontiguousarray(rgb)
        v[f"synthesis/ToRGB_lod{lod}/bias"] = sd["synthesis.torgb.bias"] if lod == 0 else np.zeros([cfg.img_channels], np.float32)
    return v


def stylegan_tf_kwargs(cfg: StyleGANConfig) -> dict:
    fused = {8: True, 128: "auto", 2048: False}[cfg.fused_min_resolution]  # what NVIDIA's fused_scale can say
    return dict(num_channels=cfg.img_channels, resolution=cfg.img_resolution, label_size=0, latent_size=cfg.z_dim,
                dlatent_size=cfg.w_dim, mapping_layers=cfg.mapping_layers, mapping_fmaps=cfg.mapping_layer_features,
                mapping_lrmul=cfg.mapping_lr_multiplier, fused_scale=fused, blur_filter=list(cfg.blur_filter) or None,
                use_noise=cfg.use_noise, truncation_psi=0.7, truncation_cutoff=8)  # fmt: skip


def nvidia_stylegan_networks(G: StyleGAN, *, version: int = 3, static_kwargs: Optional[dict] = None, variables: Optional[dict] = None) -> tuple:
    """(G, D, Gs) as NVIDIA's StyleGAN training pickles them: Gs (G_style) holds G's weights, G other ones."""
    kw = static_kwargs if static_kwargs is not None else stylegan_tf_kwargs(G.config)

    def g_style(v: dict, name: str) -> Network:
        v = dict(v)
        top = {k: v.pop(k) for k in ("dlatent_avg", "lod") if k in v}
        parts = {
            part: tf_network(f"G_{part}", f"G_{part}", {k[len(part) + 1 :]: x for k, x in v.items() if k.startswith(part + "/")}, kw, version=version)
            for part in ("mapping", "synthesis")
        }
        return tf_network(name, "G_style", top, kw, parts, version=version)

    D = tf_network("D", "D_basic", {"Output/weight": np.ones([4, 1], np.float32)}, {"resolution": G.img_resolution}, version=version)
    Gs = g_style(variables if variables is not None else stylegan_tf_variables(G), "Gs")
    return g_style(stylegan_tf_variables(random_stylegan(G.config, seed=99)), "G"), D, Gs


def write_nvidia_stylegan(path: Path, G: StyleGAN, **kw) -> Path:
    return dump(nvidia_stylegan_networks(G, **kw), path, protocol=3)


def rosinality_stylegan_config(**overrides) -> StyleGANConfig:
    """A tiny StyleGAN as rosinality's style-based-gan-pytorch builds them: z_dim = w_dim, mapping
    lr multiplier 1, InstanceNorm2d's epsilon, the up-sampling conv's bias before the blur."""
    base = dict(z_dim=12, w_dim=12, img_resolution=32, mapping_layers=3, mapping_layer_features=12, mapping_lr_multiplier=1.0,
                channels=(12, 10, 8, 6), fused_min_resolution=16, instance_norm_eps=1e-5, bias_before_blur=True)  # fmt: skip
    base.update(overrides)
    return StyleGANConfig(**base)


def rosinality_stylegan_state_dict(G: StyleGAN, *, untrained_blocks: int = 2) -> "OrderedDict[str, torch.Tensor]":
    """G's weights under the names and scales of rosinality's `StyledGenerator` (the inverse of
    stylelift's reader), plus `untrained_blocks` larger blocks as a checkpoint of an earlier
    training phase holds them (their to_rgb bias still zero). rosinality stores no noise maps."""
    cfg, sd = G.config, {k: v.clone() for k, v in G.state_dict().items()}
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for j in range(cfg.mapping_layers):
        out[f"style.{2 * j + 1}.linear.weight_orig"] = sd[f"mapping.fc{j}.weight"]
        out[f"style.{2 * j + 1}.linear.bias"] = sd[f"mapping.fc{j}.bias"]
    resolutions = cfg.block_resolutions + [cfg.img_resolution * 2**k for k in range(1, untrained_blocks + 1)]
    channels = list(cfg.channels) + [cfg.channels[-1]] * untrained_blocks
    gen = torch.Generator().manual_seed(7)
    for i, (r, c) in enumerate(zip(resolutions, channels)):
        src, own = f"generator.progression.{i}", r in cfg.block_channels
        rand = lambda *shape: torch.randn(shape, generator=gen)  # noqa: E731 (weights of the untrained blocks)
        g = lambda name, *shape: sd[f"synthesis.b{r}.{name}"] if own else rand(*shape)  # noqa: E731
        cin = channels[i - 1] if i else c
        if i == 0:
            out[f"{src}.conv1.input"] = sd["synthesis.b4.const"][None]
        elif r >= cfg.fused_min_resolution:
            out[f"{src}.conv1.0.weight"] = g("conv0.weight", c, cin, 3, 3).transpose(0, 1) * 4
            out[f"{src}.conv1.0.bias"] = g("conv0.bias", c)
            out[f"{src}.conv1.1.weight"] = torch.ones(c, 1, 3, 3)  # the blur buffers (ignored by stylelift)
            out[f"{src}.conv1.1.weight_flip"] = torch.ones(c, 1, 3, 3)
        else:
            out[f"{src}.conv1.1.conv.weight_orig"] = g("conv0.weight", c, cin, 3, 3)
            out[f"{src}.conv1.1.conv.bias"] = g("conv0.bias", c)
            out[f"{src}.conv1.2.weight"] = torch.ones(c, 1, 3, 3)
            out[f"{src}.conv1.2.weight_flip"] = torch.ones(c, 1, 3, 3)
        for k, layer in ((1, "conv0"), (2, "conv1")):
            out[f"{src}.noise{k}.weight_orig"] = g(f"{layer}.noise_strength", c).reshape(1, c, 1, 1) / math.sqrt(2 / c)
            affine_b = g(f"{layer}.affine.bias", 2 * c)
            out[f"{src}.adain{k}.style.linear.weight_orig"] = g(f"{layer}.affine.weight", 2 * c, cfg.w_dim) / math.sqrt(2)
            out[f"{src}.adain{k}.style.linear.bias"] = torch.cat([affine_b[:c] + 1, affine_b[c:]])
        out[f"{src}.conv2.conv.weight_orig"] = g("conv1.weight", c, c, 3, 3)
        out[f"{src}.conv2.conv.bias"] = g("conv1.bias", c)
        last = r == cfg.img_resolution
        out[f"generator.to_rgb.{i}.conv.weight_orig"] = sd["synthesis.torgb.weight"] / math.sqrt(2) if last else rand(3, c, 1, 1)
        out[f"generator.to_rgb.{i}.conv.bias"] = sd["synthesis.torgb.bias"] if last else (rand(3) if own else torch.zeros(3))
    return out


# ----------------------------------------------------------------------------------------------
# rosinality checkpoints


def rosinality_state_dict(G: Generator) -> "OrderedDict[str, torch.Tensor]":
    """G's weights under rosinality's names (its blur kernels are the FIR filter x 4)."""
    cfg, sd = G.config, G.state_dict()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    kernel = fir_filter_2d(cfg.resample_filter) * 4
    for j in range(cfg.mapping_layers):
        out[f"style.{j + 1}.weight"] = sd[f"mapping.fc{j}.weight"]
        out[f"style.{j + 1}.bias"] = sd[f"mapping.fc{j}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(src, dst, up):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = kernel
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def rgb(src, dst, up):
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = kernel
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    styled("synthesis.b4.conv1", "conv1", False)
    rgb("synthesis.b4.torgb", "to_rgb1", False)
    for i, r in enumerate(cfg.block_resolutions[1:]):
        styled(f"synthesis.b{r}.conv0", f"convs.{2 * i}", True)
        styled(f"synthesis.b{r}.conv1", f"convs.{2 * i + 1}", False)
        rgb(f"synthesis.b{r}.torgb", f"to_rgbs.{i}", True)
    layers = G.synthesis.noise_layers()
    for k, layer in enumerate(layers):
        out[f"noises.noise_{k}"] = layer.noise_const[None, None]
    result = OrderedDict((k, v.clone()) for k, v in out.items())
    # As nn.Module.state_dict() returns it: the OrderedDict carries `_metadata`, pickled with BUILD.
    result._metadata = OrderedDict({"": {"version": 1}, "style": {"version": 1}})
    return result


def rosinality_training_checkpoint(G: Generator) -> dict:
    cfg = G.config
    g = rosinality_state_dict(random_generator(cfg, seed=99))
    d = OrderedDict([("convs.0.0.weight", torch.randn(4, 3, 1, 1)), ("final_linear.1.bias", torch.zeros(1))])
    # An Adam state dict as torch.optim writes it (built by hand: a real optimizer step costs seconds to warm up).
    optim = dict(
        state={i: dict(step=torch.tensor(1.0), exp_avg=torch.randn_like(t), exp_avg_sq=torch.rand_like(t)) for i, t in enumerate(list(g.values())[:3])},
        param_groups=[dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False,
                           foreach=None, capturable=False, differentiable=False, fused=None, params=[0, 1, 2])],
    )  # fmt: skip
    args = argparse.Namespace(path="/data/lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=cfg.img_resolution,
                              r1=10.0, path_regularize=2.0, mixing=0.9, ckpt=None, lr=0.002, channel_multiplier=2,
                              wandb=False, local_rank=0, augment=True, augment_p=0.0, ada_target=0.6, ada_length=500000,
                              ada_every=256, n_mlp=cfg.mapping_layers, latent=cfg.w_dim, distributed=False)  # fmt: skip
    return dict(g=g, d=d, g_ema=rosinality_state_dict(G), g_optim=optim, d_optim=optim, args=args, ada_aug_p=0.125)


def rosinality_converted_checkpoint(G: Generator) -> dict:
    return dict(g_ema=rosinality_state_dict(G), latent_avg=G.mapping.w_avg.clone())


def write_torch(path: Path, obj: Any, *, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Hostile pickles. Each payload would create `marker` if an ordinary unpickler loaded it.


def op_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def op_bytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b  # BINBYTES


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"  # MARK args TUPLE REDUCE


def op_list(*items: bytes) -> bytes:
    return b"](" + b"".join(items) + b"e"


def proto2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


class Reduce:
    """An object that pickles as `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_command(marker: Path) -> str:
    return f"touch {marker}"


def python_touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def legacy_storage_bytes(payload: Any) -> bytes:
    """A legacy torch.save stream whose object is `payload` (what `_load_from_bytes` receives)."""
    buf = io.BytesIO()
    torch.save(payload, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def hostile_corpus(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the text expected in parentheses of the refusal)."""
    m = str(marker)
    sh, py = touch_command(marker), python_touch(marker)
    os_system = proto2(op_call(op_global("os", "system"), op_str(sh)))
    corpus = {
        "os_system": (os_system, "os.system"),
        "posix_system": (pickle.dumps(Reduce(os.system, sh), protocol=2), "posix.system"),
        "posix_system_stack_global": (pickle.dumps(Reduce(os.system, sh), protocol=4), "posix.system"),
        "nt_system": (proto2(op_call(op_global("nt", "system"), op_str(sh))), "nt.system"),
        "builtins_eval": (proto2(op_call(op_global("builtins", "eval"), op_str(py))), "builtins.eval"),
        "builtins_exec": (pickle.dumps(Reduce(exec, py), protocol=3), "builtins.exec"),
        "builtins_getattr": (
            proto2(
                op_call(
                    op_call(
                        op_global("builtins", "getattr"),
                        op_call(op_global("importlib", "import_module"), op_str("os")),
                        op_str("system"),
                    ),
                    op_str(sh),
                )
            ),
            "builtins.getattr",
        ),
        "builtins_import": (
            proto2(
                op_call(op_global("builtins", "__import__"), op_str("os"))
                + b"q\x000"
                + op_call(op_call(op_global("builtins", "getattr"), b"h\x00", op_str("system")), op_str(sh))
            ),
            "builtins.__import__",
        ),
        "importlib": (proto2(op_call(op_global("importlib", "import_module"), op_str("os"))), "importlib.import_module"),
        "subprocess_popen": (
            proto2(op_call(op_global("subprocess", "Popen"), op_list(op_str("touch"), op_str(m)))),
            "subprocess.Popen",
        ),
        "subprocess_check_output": (
            pickle.dumps(Reduce(__import__("subprocess").check_output, ["touch", m]), protocol=4),
            "subprocess.check_output",
        ),
        "pickle_loads_nested": (proto2(op_call(op_global("pickle", "loads"), op_bytes(os_system))), "pickle.loads"),
        "torch_load": (proto2(op_call(op_global("torch", "load"), op_str(m + ".pt"))), "torch.load"),
        "numpy_load": (proto2(op_call(op_global("numpy", "load"), op_str(m + ".npy"))), "numpy.load"),
        "pty_spawn": (proto2(op_call(op_global("pty", "spawn"), op_str("sh"))), "pty.spawn"),
        "sys_modules": (proto2(op_global("sys", "modules") + op_str("os") + op_str("x") + b"s"), "sys.modules"),
        "copyreg_reconstructor": (
            proto2(
                op_call(
                    op_global("copyreg", "_reconstructor"),
                    op_global("subprocess", "Popen"),
                    op_global("builtins", "object"),
                    b"N",
                )
            ),
            "copyreg._reconstructor",
        ),
        "functools_partial": (
            proto2(op_call(op_call(op_global("functools", "partial"), op_global("os", "system"), op_str(sh)))),
            "functools.partial",
        ),
        "inst_opcode": (b"(S'" + sh.encode() + b"'\nios\nsystem\n.", "os.system"),
        "inst_opcode_allowed_name": (b"(icollections\nOrderedDict\n.", "collections.OrderedDict"),
        "obj_opcode": (b"\x80\x02(" + op_global("os", "system") + op_str(sh) + b"o.", "os.system"),
        "storage_bytes_payload": (
            proto2(
                op_call(op_global("torch.storage", "_load_from_bytes"), op_bytes(legacy_storage_bytes(Reduce(os.system, sh))))
            ),
            "posix.system",
        ),
        "storage_bytes_payload_exec": (
            pickle.dumps(Reduce(torch.storage._load_from_bytes, legacy_storage_bytes(Reduce(exec, py))), protocol=4),
            "__builtin__.exec",  # torch.save writes protocol 2, which keeps Python 2's module names
        ),
        "stack_global_computed_name": (
            b"\x80\x04"
            + op_call(op_global("_codecs", "encode"), op_str("os"), op_str("latin1"))
            + op_call(op_global("_codecs", "encode"), op_str("system"), op_str("latin1"))
            + b"\x93"
            + b"("
            + op_str(sh)
            + b"tR.",
            "a global whose name is computed, not written in the file",
        ),  # fmt: skip
        "build_on_ordered_dict": (
            proto2(op_call(op_global("collections", "OrderedDict")) + b"}" + op_str("__class__") + op_str("x") + b"sb"),
            "BUILD/__setstate__ on collections.OrderedDict",
        ),
        "reduce_of_computed_callable": (
            proto2(op_call(op_call(op_global("collections", "OrderedDict")), op_str(sh))),
            "REDUCE of what collections.OrderedDict returned, not of a named global",
        ),
        "appends_on_record": (
            proto2(op_call(op_global("numpy", "dtype"), op_str("f4")) + b"(" + op_str(sh) + b"e"),
            "APPENDS on numpy.dtype",
        ),
        "extension_code": (b"\x80\x02\x82\x01.", "copyreg extension code 1"),
    }
    return corpus
