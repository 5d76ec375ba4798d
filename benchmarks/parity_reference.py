"""Does stylelift's StyleGAN2 generator give the same images as the reference implementations?

Builds random-weight generators with the reference code itself, saves them the way those projects
save checkpoints, renders reference outputs with their own conventions, loads the same files into
stylelift and compares, bit for bit:

- NVIDIA stylegan2-ada-pytorch: `training.networks.Generator` (skip / resnet / orig, conditional,
  fp16 blocks + conv_clamp), pickled as the training loop does (so it goes through
  `torch_utils.persistence`) and read back with NVIDIA's `legacy.load_network_pkl`. Reference
  images follow `generate.py`: `z = RandomState(seed).randn(1, z_dim)`, noise_mode const,
  `(img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(uint8)`, with `force_fp32=True`
  (the CPU path; on a GPU NVIDIA runs the top 4 resolutions in fp16, which no fp32 port matches).
- rosinality stylegan2-pytorch: `model.Generator`, saved as `convert_weight.py` does
  (`{g_ema, latent_avg}`) and as `train.py` does (`{g, d, g_ema, g_optim, d_optim, args, ada_aug_p}`),
  rendered with `randomize_noise=False` (its stored noise maps).

Every reference network is checked twice in stylelift: "direct" builds `Generator(StyleGAN2Config)`
from the reference's state dict (the generator math alone), and `load_generator(file)` reads the
saved file (math + checkpoint reader). When a row is not bit-exact, forward hooks find the first
layer whose output differs.

This is a maintainer's tool, not a test: it needs checkouts of the reference repositories and
their Python dependencies (`click`, `requests` for NVIDIA's). It runs on the CPU in a few minutes.

    python benchmarks/parity_reference.py --nvidia-repo ~/src/stylegan2-ada-pytorch \\
        --rosinality-repo ~/src/stylegan2-pytorch --out out/parity

Writes the checkpoints, reference and stylelift PNGs, reference float outputs (`*/reference.pt`)
and the table (`parity.md`, `parity.json`) under --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # this checkout's stylelift, whatever else is installed
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import stylelift  # noqa: E402,F401  (before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import contextlib
import copy
import json
import math
import pickle
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from stylelift.generation import generate_from_seeds  # noqa: E402
from stylelift.models.stylegan2 import Generator, StyleGAN2Config  # noqa: E402

TRUNC_PSI = 0.7
TRUNC_CUTOFF = 4  # also checked: truncation of the first ws only (NVIDIA nets)
BATCH = 4  # batch size of the float checks (fused modulated conv runs all samples as one grouped conv)


# ----------------------------------------------------------------------------------------------
# The networks


@dataclass(frozen=True)
class NvidiaNet:
    name: str
    resolution: int
    architecture: str = "skip"
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: Optional[float] = 256


@dataclass(frozen=True)
class RosinalityNet:
    name: str
    size: int
    n_mlp: int
    channel_multiplier: int


NVIDIA_NETS = [
    NvidiaNet("nv-64-skip", 64),
    NvidiaNet("nv-256-skip", 256, mapping_layers=2),
    NvidiaNet("nv-64-resnet", 64, "resnet", z_dim=256, w_dim=256, mapping_layers=2, channel_base=8192),
    NvidiaNet("nv-64-orig", 64, "orig", z_dim=256, w_dim=256, mapping_layers=2, channel_base=8192),
    NvidiaNet("nv-64-cond10", 64, c_dim=10),
    # A clamp small enough to bite, so that conv_clamp (also on toRGB) is exercised.
    NvidiaNet("nv-32-clamp0.5", 32, z_dim=128, w_dim=128, channel_base=4096, conv_clamp=0.5),
]

ROSINALITY_NETS = [
    RosinalityNet("ro-64", 64, n_mlp=8, channel_multiplier=2),
    RosinalityNet("ro-256", 256, n_mlp=2, channel_multiplier=1),
]


# ----------------------------------------------------------------------------------------------
# What a reference produced


@dataclass
class Reference:
    """A reference network: its files, the outputs its own code rendered, and hooks for diagnosis."""

    name: str
    family: str  # "nvidia" | "rosinality"
    config: StyleGAN2Config
    state_dict: dict  # in stylelift (= NVIDIA) names, for the "direct" check
    files: list[Path]
    has_w_avg: dict  # file -> whether that file stores w_avg (truncation is only comparable then)
    class_of_seed: Callable[[int], Optional[int]]
    seeds: list[int]
    images: dict = field(default_factory=dict)  # (seed, psi) -> uint8 HWC
    floats: dict = field(default_factory=dict)  # check name -> (inputs..., output)
    module: Optional[torch.nn.Module] = None  # the live reference network, for hooks
    run_for_hooks: Optional[Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor], None]] = None  # (z, c, ws) through `module`
    name_map: Optional[Callable[[str], Optional[str]]] = None  # reference module name -> stylelift name


def nvidia_uint8(img: torch.Tensor) -> np.ndarray:
    """generate.py's conversion, written out here so the reference side does not use stylelift's."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def z_of_seed(seed: int, z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim))  # float64, as generate.py


def one_hot(c_dim: int, idx: Optional[int], n: int = 1) -> Optional[torch.Tensor]:
    if c_dim == 0:
        return None
    c = torch.zeros([n, c_dim])
    c[:, idx] = 1
    return c


@contextlib.contextmanager
def on_sys_path(repo: Path):
    """Import the reference code from its checkout, only for the duration of the block."""
    repo = str(Path(repo).resolve())
    sys.path.insert(0, repo)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.path.remove(repo)


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path)


def png_name(seed: int, psi: float) -> str:
    return f"seed{seed:04d}-trunc{psi:g}.png"


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch


@torch.no_grad()
def _randomise_nvidia(G: torch.nn.Module) -> None:
    """Make every parameter matter: non-zero biases, noise strengths and w_avg; toRGB scaled so
    that images stay mostly inside [-1, 1] (otherwise the uint8 comparison sees only 0 and 255)."""
    for name, t in list(G.named_parameters()) + list(G.named_buffers()):
        if name.endswith("resample_filter"):
            continue
        if name.endswith("noise_strength"):
            t.copy_(torch.randn([]) * 0.5)
        elif name.endswith("w_avg"):
            t.copy_(torch.randn_like(t) * 0.5)
        elif name.endswith("bias"):
            # Mapping biases are multiplied by lr_multiplier (0.01) at run time.
            t.add_(torch.randn_like(t) * (10.0 if name.startswith("mapping.fc") else 0.3))
        if ".torgb." in name and ".affine." not in name:
            t.mul_(0.1)


def build_nvidia(repo: Path, net: NvidiaNet, out: Path, seeds: list[int]) -> Reference:
    with on_sys_path(repo):
        import legacy  # NVIDIA's pickle loader, as generate.py uses it
        from training.networks import Discriminator, Generator as NvGenerator

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(net.resolution * 1000 + len(net.name))
            synthesis_kwargs = dict(
                channel_base=net.channel_base,
                channel_max=net.channel_max,
                num_fp16_res=net.num_fp16_res,
                conv_clamp=net.conv_clamp,
                architecture=net.architecture,
            )
            G = NvGenerator(
                z_dim=net.z_dim, c_dim=net.c_dim, w_dim=net.w_dim, img_resolution=net.resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=net.mapping_layers), synthesis_kwargs=synthesis_kwargs,
            )
            _randomise_nvidia(G)
            # NVIDIA's loader insists on a Discriminator module; a small one keeps the file small.
            D = Discriminator(c_dim=net.c_dim, img_resolution=net.resolution, img_channels=3, channel_base=1024, channel_max=32)

        # The training loop's snapshot: deep copies in eval mode, without gradients.
        G_ema = copy.deepcopy(G)  # stands in for the moving-average copy that training keeps
        snapshot = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="none.zip",
                                                 resolution=net.resolution, use_labels=net.c_dim > 0, max_size=None, xflip=False))
        for key, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", None)]:
            snapshot[key] = copy.deepcopy(module).eval().requires_grad_(False) if module is not None else None
        path = out / f"nvidia-{net.name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(snapshot, f)

        # Everything below uses the network as NVIDIA's loader gives it back.
        with open(path, "rb") as f:
            G = legacy.load_network_pkl(f)["G_ema"].eval()

    cfg = StyleGAN2Config(
        z_dim=net.z_dim, c_dim=net.c_dim, w_dim=net.w_dim, img_resolution=net.resolution, mapping_layers=net.mapping_layers,
        channel_base=net.channel_base, channel_max=net.channel_max, architecture=net.architecture,
        conv_clamp=net.conv_clamp, num_fp16_res=net.num_fp16_res,
    )
    state = {k: v.clone() for k, v in G.state_dict().items() if not k.endswith("resample_filter")}
    class_of_seed = (lambda s: s % net.c_dim) if net.c_dim else (lambda s: None)
    ref = Reference(net.name, "nvidia", cfg, state, [path], {path: True}, class_of_seed, seeds)

    with torch.no_grad():
        for psi in (1.0, TRUNC_PSI):
            for seed in seeds:
                c = one_hot(net.c_dim, class_of_seed(seed))
                if c is None:
                    c = torch.zeros([1, 0])
                img = G(z_of_seed(seed, net.z_dim), c, truncation_psi=psi, noise_mode="const", force_fp32=True)
                ref.images[(seed, psi)] = nvidia_uint8(img)

        z = torch.cat([z_of_seed(s, net.z_dim) for s in seeds[:BATCH]])
        c = torch.cat([one_hot(net.c_dim, class_of_seed(s)) for s in seeds[:BATCH]]) if net.c_dim else torch.zeros([len(z), 0])
        gen = torch.Generator().manual_seed(1)
        ws_w = G.mapping(z, c)  # one w per sample, broadcast to all layers
        ws_plus = torch.randn([len(z), G.num_ws, net.w_dim], generator=gen) + G.mapping.w_avg
        synth = lambda ws, mode="const": G.synthesis(ws, noise_mode=mode, force_fp32=True)  # noqa: E731
        ref.floats["mapping"] = ((z, c), ws_w)
        ref.floats["W"] = ((ws_w,), synth(ws_w))
        ref.floats["W+"] = ((ws_plus,), synth(ws_plus))
        ref.floats["W+ none"] = ((ws_plus,), synth(ws_plus, "none"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            ref.floats["W+ random"] = ((ws_plus,), synth(ws_plus, "random"))
        trunc = [G(z, c, truncation_psi=TRUNC_PSI, noise_mode="const", force_fp32=True),
                 G(z, c, truncation_psi=TRUNC_PSI, truncation_cutoff=TRUNC_CUTOFF, noise_mode="const", force_fp32=True)]
        ref.floats["trunc"] = ((z, c), torch.cat(trunc))

    ref.module = G

    def run_for_hooks(z, c, ws):
        G.mapping(z, c)
        synth(ws)

    ref.run_for_hooks = run_for_hooks
    ref.name_map = lambda name: name  # stylelift keeps NVIDIA's module names
    return ref


def stylelift_floats_nvidia(G: Generator, ref: Reference) -> dict:
    out = {}
    (z, c), _ = ref.floats["mapping"]
    c = c if G.c_dim else None
    out["mapping"] = G.mapping(z, c)
    out["W"] = G.synthesis(ref.floats["W"][0][0])
    ws_plus = ref.floats["W+"][0][0]
    out["W+"] = G.synthesis(ws_plus)
    out["W+ none"] = G.synthesis(ws_plus, noise_mode="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        out["W+ random"] = G.synthesis(ws_plus, noise_mode="random")
    out["trunc"] = torch.cat([G(z, c, truncation_psi=TRUNC_PSI), G(z, c, truncation_psi=TRUNC_PSI, truncation_cutoff=TRUNC_CUTOFF)])
    return out


# ----------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch


@contextlib.contextmanager
def _no_cuda_extensions():
    """rosinality's `op` package compiles CUDA kernels when imported. Its CPU code paths never call
    them, so hand it a stub compiler for the duration of the import."""
    import torch.utils.cpp_extension as cpp_extension

    real = cpp_extension.load
    cpp_extension.load = lambda *args, **kwargs: None
    try:
        yield
    finally:
        cpp_extension.load = real


def rosinality_to_nvidia_names(sd: dict, n_mlp: int, size: int) -> dict:
    """rosinality's g_ema state dict in stylelift/NVIDIA names (see the rosinality section of the reference notes)."""
    out = {}
    for j in range(n_mlp):
        out[f"mapping.fc{j}.weight"] = sd[f"style.{j + 1}.weight"]
        out[f"mapping.fc{j}.bias"] = sd[f"style.{j + 1}.bias"]
    out["synthesis.b4.const"] = sd["input.input"][0]

    def conv(dst: str, src: str, noise_idx: int) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]

    def torgb(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    conv("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k in range(3, int(math.log2(size)) + 1):
        r, i = 2**k, k - 3
        conv(f"synthesis.b{r}.conv0", f"convs.{2 * i}", 2 * k - 5)
        conv(f"synthesis.b{r}.conv1", f"convs.{2 * i + 1}", 2 * k - 4)
        torgb(f"synthesis.b{r}.torgb", f"to_rgbs.{i}")
    return {k: v.clone() for k, v in out.items()}


def _rosinality_name_map(name: str) -> Optional[str]:
    """rosinality module name -> the stylelift module computing the same thing (None: no counterpart).

    StyledConv <-> SynthesisLayer, its `conv.modulation` <-> `affine`, `style.{j}` <-> `mapping.fc{j-1}`.
    A rosinality ToRGB's output already includes the upsampled skip image: only its styles compare.
    """
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "style" and parts[1] != "0":
        return f"mapping.fc{int(parts[1]) - 1}"
    if parts[0] == "conv1":
        base, rest = "synthesis.b4.conv1", parts[1:]
    elif parts[0] == "convs" and len(parts) >= 2:
        i = int(parts[1])
        base, rest = f"synthesis.b{2 ** (i // 2 + 3)}.conv{i % 2}", parts[2:]
    elif parts[0] == "to_rgb1":
        base, rest = "synthesis.b4.torgb", parts[1:]
    elif parts[0] == "to_rgbs" and len(parts) >= 2:
        base, rest = f"synthesis.b{2 ** (int(parts[1]) + 3)}.torgb", parts[2:]
    else:
        return None
    if rest == ["conv", "modulation"]:
        return f"{base}.affine"
    if not rest and ".torgb" not in base:
        return base
    return None


@torch.no_grad()
def _randomise_rosinality(g: torch.nn.Module) -> None:
    for name, p in g.named_parameters():
        if name.endswith("noise.weight"):
            p.copy_(torch.randn_like(p) * 0.5)
        elif name.endswith("bias"):
            p.add_(torch.randn_like(p) * (10.0 if name.startswith("style.") else 0.3))
        if "to_rgb" in name and name.endswith("conv.weight"):
            p.mul_(0.1)


def build_rosinality(repo: Path, net: RosinalityNet, out: Path, seeds: list[int]) -> Reference:
    with on_sys_path(repo), _no_cuda_extensions():
        import model as rosinality_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(net.size * 1000 + net.n_mlp)
            g = rosinality_model.Generator(net.size, 512, net.n_mlp, channel_multiplier=net.channel_multiplier)
            _randomise_rosinality(g)
            g_ema = copy.deepcopy(g).eval()
            latent_avg = g_ema.mean_latent(4096)[0] + torch.randn(512) * 0.1
            d = rosinality_model.Discriminator(net.size, channel_multiplier=net.channel_multiplier)

    # As convert_weight.py writes it ...
    converted = out / f"rosinality-{net.name}.pt"
    torch.save({"g_ema": g_ema.state_dict(), "latent_avg": latent_avg}, converted)
    # ... and as train.py writes its checkpoints (no latent_avg there).
    train_args = argparse.Namespace(
        path="lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=net.size, r1=10, path_regularize=2,
        path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9, ckpt=None, lr=0.002,
        channel_multiplier=net.channel_multiplier, wandb=False, local_rank=0, augment=False, augment_p=0,
        ada_target=0.6, ada_length=500000, ada_every=256, distributed=False, latent=512, n_mlp=net.n_mlp, start_iter=0,
    )
    training = out / f"rosinality-{net.name}-train.pt"
    torch.save({
        "g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
        "g_optim": torch.optim.Adam(g.parameters(), lr=0.002 * 4 / 5, betas=(0.0, 0.99 ** (4 / 5))).state_dict(),
        "d_optim": torch.optim.Adam(d.parameters(), lr=0.002 * 16 / 17, betas=(0.0, 0.99 ** (16 / 17))).state_dict(),
        "args": train_args, "ada_aug_p": 0.0,
    }, training)

    cfg = StyleGAN2Config(img_resolution=net.size, mapping_layers=net.n_mlp, channel_base=16384 * net.channel_multiplier, channel_max=512)
    state = rosinality_to_nvidia_names(g_ema.state_dict(), net.n_mlp, net.size)
    state["mapping.w_avg"] = latent_avg.clone()
    ref = Reference(net.name, "rosinality", cfg, state, [converted, training], {converted: True, training: False},
                    lambda s: None, seeds)

    def render(x, *, psi=1.0, is_w=False, noise=None):
        img, _ = g_ema([x], input_is_latent=is_w, truncation=psi, truncation_latent=latent_avg, randomize_noise=False, noise=noise)
        return img

    with torch.no_grad():
        for psi in (1.0, TRUNC_PSI):
            for seed in seeds:
                ref.images[(seed, psi)] = nvidia_uint8(render(z_of_seed(seed, 512).float(), psi=psi))
        z = torch.cat([z_of_seed(s, 512) for s in seeds[:BATCH]]).float()
        gen = torch.Generator().manual_seed(1)
        w = g_ema.style(z)
        ws_plus = torch.randn([len(z), g_ema.n_latent, 512], generator=gen) + latent_avg
        zero_noise = [torch.zeros_like(getattr(g_ema.noises, f"noise_{i}")) for i in range(g_ema.num_layers)]
        ref.floats["mapping"] = ((z, None), w.unsqueeze(1).repeat(1, g_ema.n_latent, 1))
        ref.floats["W"] = ((w,), render(w, is_w=True))  # rosinality broadcasts a [N, 512] w itself
        ref.floats["W+"] = ((ws_plus,), render(ws_plus, is_w=True))
        ref.floats["W+ none"] = ((ws_plus,), render(ws_plus, is_w=True, noise=zero_noise))
        ref.floats["trunc"] = ((z, None), render(z, psi=TRUNC_PSI))

    ref.module = g_ema

    def run_for_hooks(z, c, ws):
        g_ema.style(z)
        render(ws, is_w=True)

    ref.run_for_hooks = run_for_hooks
    ref.name_map = _rosinality_name_map
    return ref


def stylelift_floats_rosinality(G: Generator, ref: Reference) -> dict:
    (z, _), _ = ref.floats["mapping"]
    ws_plus = ref.floats["W+"][0][0]
    w = ref.floats["W"][0][0]
    return {
        "mapping": G.mapping(z),
        "W": G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1)),
        "W+": G.synthesis(ws_plus),
        "W+ none": G.synthesis(ws_plus, noise_mode="none"),
        "trunc": G(z, truncation_psi=TRUNC_PSI),
    }


# ----------------------------------------------------------------------------------------------
# Comparison


def load_direct(ref: Reference) -> Generator:
    G = Generator(ref.config)
    G.load_state_dict(ref.state_dict, strict=True)
    return G.eval().requires_grad_(False)


def load_with_stylelift(path: Path) -> Generator:
    from stylelift import load_generator

    return load_generator(path)


@dataclass
class Row:
    net: str
    loader: str
    png: str = "-"
    floats: dict = field(default_factory=dict)  # check -> max |diff| (None = not comparable)
    verdict: str = ""
    divergence: str = ""


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return (a.double() - b.double()).abs().max().item()


@torch.no_grad()
def first_divergence(ref: Reference, G: Generator) -> str:
    """Run the same W+ through both networks with forward hooks; name the first layer (in the
    reference's execution order) whose output differs, and say whether its input already did."""
    if ref.module is None or ref.name_map is None:
        return ""
    sl_modules = dict(G.named_modules())
    seen_ref, seen_sl, order, handles = {}, {}, [], []

    def first_tensor(x):
        if isinstance(x, torch.Tensor):
            return x
        if isinstance(x, (tuple, list)):
            for item in x:
                t = first_tensor(item)
                if t is not None:
                    return t
        return None

    def hook(store, name, record_order):
        def fn(module, inputs, output):
            t_in, t_out = first_tensor(inputs), first_tensor(output)
            if t_out is None or name in store:
                return
            store[name] = (None if t_in is None else t_in.detach().clone(), t_out.detach().clone())
            if record_order:
                order.append(name)
        return fn

    for name, module in ref.module.named_modules():
        target = ref.name_map(name) if name else None
        if target is not None and target in sl_modules:
            handles.append(module.register_forward_hook(hook(seen_ref, name, True)))
            handles.append(sl_modules[target].register_forward_hook(hook(seen_sl, target, False)))
    try:
        (z, c), _ = ref.floats["mapping"]
        ws = ref.floats["W+"][0][0]
        ref.run_for_hooks(z, c, ws)
        G.mapping(z, c if G.c_dim else None)
        G.synthesis(ws)
    finally:
        for h in handles:
            h.remove()
    for name in order:
        target = ref.name_map(name)
        if target not in seen_sl:
            continue
        (in_r, out_r), (in_s, out_s) = seen_ref[name], seen_sl[target]
        if out_r.shape != out_s.shape:
            out_s = out_s.reshape(out_r.shape) if out_s.numel() == out_r.numel() else out_s
        d_out = max_abs(out_r, out_s)
        if d_out > 0:
            d_in = max_abs(in_r, in_s) if in_r is not None and in_s is not None and in_r.numel() == in_s.numel() else float("nan")
            return f"first differing layer: {target} (ref {name}): max|d output|={d_out:.3g}, max|d input|={d_in:.3g}"
    return "no hooked layer differs (difference after the last hooked layer)"


@torch.no_grad()
def compare(ref: Reference, G: Generator, loader: str, png_dir: Optional[Path], *, has_w_avg: bool = True) -> Row:
    """Max |difference| of every check; without a stored w_avg (train.py checkpoints) stylelift
    estimates it and rosinality's generate.py samples `mean_latent(4096)`, so truncated outputs
    cannot agree bit for bit and are left out (not a defect)."""
    row = Row(ref.name, loader)
    # PNGs through stylelift's own user path (what `stylelift generate` writes).
    n_px = n_diff = worst = n_img = 0
    for (seed, psi), want in ref.images.items():
        if psi != 1 and not has_w_avg:
            continue
        n_img += 1
        got = generate_from_seeds(G, [seed], truncation_psi=psi, class_idx=ref.class_of_seed(seed))[0]
        if png_dir is not None:
            save_png(got, png_dir / png_name(seed, psi))
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        n_px += diff.shape[0] * diff.shape[1]
        n_diff += int((diff.max(axis=2) > 0).sum())
        worst = max(worst, int(diff.max()))
    row.png = f"identical ({n_img} imgs)" if n_diff == 0 else f"{n_diff}/{n_px} px differ (max {worst})"

    got = stylelift_floats_nvidia(G, ref) if ref.family == "nvidia" else stylelift_floats_rosinality(G, ref)
    for check, (_, want) in ref.floats.items():
        row.floats[check] = max_abs(want, got[check])
    if not has_w_avg:
        row.floats["trunc"] = None
        row.png += ", ψ=1 only"
    exact = n_diff == 0 and all(v == 0 for v in row.floats.values() if v is not None)
    if exact:
        row.verdict = "bit-exact"
    else:
        close = worst <= 1 and all(v is None or v < 1e-4 for v in row.floats.values())
        row.verdict = "close, not bit-exact" if close else "DIFFERENT"
        row.divergence = first_divergence(ref, G)
    return row


def fmt(v: Optional[float]) -> str:
    if v is None:
        return "n/a"
    return "0" if v == 0 else f"{v:.2e}"


def print_table(rows: list[Row], checks: list[str]) -> str:
    head = ["net", "stylelift loaded via", "PNG (generate.py conventions)"] + [f"max|Δ| {c}" for c in checks] + ["verdict"]
    body = [[r.net, r.loader, r.png] + [fmt(r.floats.get(c)) if c in r.floats else "-" for c in checks] + [r.verdict] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |" for line in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nvidia-repo", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--rosinality-repo", type=Path, help="checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoints, PNGs and the table")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(8)), help="seeds, e.g. 0-7 or 1,5,9 (default 0-7)")
    names = ", ".join(net.name for net in NVIDIA_NETS + ROSINALITY_NETS)
    parser.add_argument("--nets", default="", help=f"comma-separated subset of the nets ({names}; default: all)")
    args = parser.parse_args()
    if args.nvidia_repo is None and args.rosinality_repo is None:
        parser.error("give --nvidia-repo and/or --rosinality-repo")
    for repo, marker in [(args.nvidia_repo, "training/networks.py"), (args.rosinality_repo, "model.py")]:
        if repo is not None and not (repo / marker).is_file():
            parser.error(f"{repo} has no {marker}; is it a checkout of the right repository?")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    wanted = set(filter(None, args.nets.split(",")))

    jobs = []
    if args.nvidia_repo is not None:
        jobs += [(net.name, lambda net=net: build_nvidia(args.nvidia_repo, net, args.out, args.seeds)) for net in NVIDIA_NETS]
    if args.rosinality_repo is not None:
        jobs += [(net.name, lambda net=net: build_rosinality(args.rosinality_repo, net, args.out, args.seeds)) for net in ROSINALITY_NETS]

    rows: list[Row] = []
    for name, build in jobs:
        if wanted and name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"[{name}] building the reference and rendering its outputs ...", flush=True)
        ref = build()
        for (seed, psi), img in ref.images.items():
            save_png(img, args.out / name / "reference" / png_name(seed, psi))
        torch.save({k: {"inputs": v[0], "output": v[1]} for k, v in ref.floats.items()}, args.out / name / "reference.pt")

        rows.append(compare(ref, load_direct(ref), "direct (state dict)", None))
        for path in ref.files:
            label = f"load_generator({path.name})"
            try:
                G = load_with_stylelift(path)
            except Exception as e:  # a reader that is missing or refuses the file is a result, not a crash
                reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                rows.append(Row(name, label, png="not loaded", verdict="LOAD FAILED", divergence=reason))
                continue
            rows.append(compare(ref, G, label, args.out / name / f"stylelift-{path.stem}", has_w_avg=ref.has_w_avg[path]))
        print(f"[{name}] done in {time.perf_counter() - t0:.1f} s", flush=True)

    checks = ["mapping", "W", "W+", "W+ none", "W+ random", "trunc"]
    table = print_table(rows, checks)
    notes = [f"- {r.net} / {r.loader}: {r.divergence}" for r in rows if r.divergence]
    legend = (
        f"W: one mapped w per sample broadcast to all layers; W+: random per-layer ws; 'none'/'random': noise modes "
        f"(random with the same torch seed); trunc: G(z) at ψ={TRUNC_PSI} (NVIDIA nets: also truncation_cutoff={TRUNC_CUTOFF}); "
        f"PNG: seeds {args.seeds[0]}..{args.seeds[-1]} at ψ=1 and ψ={TRUNC_PSI}, noise const, float batch {min(BATCH, len(args.seeds))}."
    )
    known = (
        "rosinality's 'direct (state dict)' rows are not expected to be bit-exact (its files read by load_generator are): stylelift follows NVIDIA's operation order, and rosinality "
        "(a) multiplies the conv weight by 1/sqrt(fan_in) before modulating (NVIDIA: no gain on demodulated convs; "
        "toRGB scales the styles instead) and (b) truncates as a + ψ(w - a) (NVIDIA: torch.lerp). Both change only the "
        "last bits of the weights, hence differences around 1e-6."
    )
    text = "\n".join([table, "", legend, ""] + (["Where rows differ:"] + notes + [""] if notes else []) + [known])
    print()
    print(text)
    (args.out / "parity.md").write_text(text + "\n")
    (args.out / "parity.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1, default=str) + "\n")
    # Success: every NVIDIA row bit-exact, every rosinality row loaded and within float rounding.
    ok = all(r.verdict == "bit-exact" if r.net.startswith("nv-") else r.verdict in ("bit-exact", "close, not bit-exact") for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
