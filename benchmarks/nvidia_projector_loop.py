"""Seconds per step of NVIDIA's projector loop, to set beside `projection_speed.py`.

    python benchmarks/nvidia_projector_loop.py --nvidia-repo ~/src/stylegan2-ada-pytorch \\
        --network ffhq.pkl [--vgg16 vgg16.pt] [--device cuda] [--write-vgg16-state vgg16_random.pth]
    python benchmarks/nvidia_projector_loop.py --nvidia-repo ... --random 1024 --write-network nv1024.pkl

Calls `projector.project()` of a stylegan2-ada-pytorch checkout, unmodified (its code is not part of
stylelift and must not be copied into it). Per step = (time of a run of `--long` steps - time of a
run of `--short` steps) / the difference, so its set-up (a deep copy of G, w statistics from 10,000
samples, loading VGG16) cancels out; the median of three such pairs is printed.

NVIDIA's projector downloads `vgg16.pt` (a TorchScript VGG16 with ImageNet weights). Without
`--vgg16` it gets a stand-in with random weights and the same conv stack, call signature and
LPIPS-style normalised features, which costs the same time; `--write-vgg16-state` saves those
weights as a torchvision state dict, so `projection_speed.py --loss vgg16 --perceptual-weights`
runs the same network. `--random RES` builds a random generator with NVIDIA's own code (config-f
widths, fp32 as converted TF networks are; `--fp16-res 4` for stylegan2-ada's training setting) and
`--write-network` saves it as NVIDIA's pickle for stylelift to load.

On a GPU, NVIDIA's code builds its CUDA plugins (bias_act, upfirdn2d) on first use; with recent
torch its loader cannot import what it built, and it falls back to its slower reference ops with a
warning. This script puts the build folders on sys.path first, so that the plugins load; it prints
which ones did (both, on an H200 with torch 2.11).
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import io
import pickle
import statistics
import sys
import time
from pathlib import Path

import torch

VGG_CUTS = (4, 9, 16, 23, 30)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's VGG16 features


class VGG16StandIn(torch.nn.Module):
    """The interface of NVIDIA's vgg16.pt: images in [0, 255] -> concatenated unit-normalised features."""

    def __init__(self, features: torch.nn.Sequential):
        super().__init__()
        starts = (0,) + VGG_CUTS[:-1]
        self.stages = torch.nn.ModuleList(features[a:b] for a, b in zip(starts, VGG_CUTS))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

    def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = True) -> torch.Tensor:
        x = (img - self.mean) / self.std
        out = []
        for stage in self.stages:
            x = stage(x)
            unit = x / (x.square().sum(1, keepdim=True) + 1e-10).sqrt()
            out.append(unit.flatten(1) / float(x.shape[2] * x.shape[3]) ** 0.5)
        return torch.cat(out, 1)


def vgg16_stand_in(state_path: Path | None) -> bytes:
    """A TorchScript VGG16 with random weights (frozen: NVIDIA's loop reuses its target features)."""
    import torchvision

    torch.manual_seed(1)
    features = torchvision.models.vgg16().features[:30]
    for m in features:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    if state_path is not None:
        torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, state_path)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(VGG16StandIn(features).eval().requires_grad_(False)), buf)
    return buf.getvalue()


def random_nvidia_generator(res: int, fp16_res: int):
    from training.networks import Generator  # from --nvidia-repo

    torch.manual_seed(res)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=32768 if res >= 512 else 16384, channel_max=512, num_fp16_res=fp16_res,
                                        conv_clamp=256 if fp16_res else None))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.05)
    return G.eval().requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvidia-repo", type=Path, required=True, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    net = ap.add_mutually_exclusive_group(required=True)
    net.add_argument("--network", type=Path, help="an NVIDIA StyleGAN2 pickle (G_ema is used)")
    net.add_argument("--random", type=int, metavar="RES", help="build a random generator of this resolution with NVIDIA's code")
    ap.add_argument("--fp16-res", type=int, default=0, help="with --random: how many top resolutions NVIDIA runs in fp16 on a GPU")
    ap.add_argument("--write-network", type=Path, help="with --random: save it as NVIDIA's pickle {'G_ema': G}")
    ap.add_argument("--vgg16", type=Path, help="NVIDIA's vgg16.pt (default: a random-weight stand-in)")
    ap.add_argument("--write-vgg16-state", type=Path, help="save the stand-in's weights as a torchvision state dict")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--short", type=int, default=5)
    ap.add_argument("--long", type=int, default=25)
    args = ap.parse_args()
    if args.long <= args.short:
        ap.error(f"--long {args.long} must be more steps than --short {args.short} (a step's time is their difference over it)")

    sys.path.insert(0, str(args.nvidia_repo.resolve()))
    import dnnlib
    import projector
    from torch.utils import cpp_extension

    if args.device.startswith("cuda"):
        for plugin in ("bias_act_plugin", "upfirdn2d_plugin"):
            sys.path.insert(0, cpp_extension._get_build_directory(plugin, verbose=False))
    vgg = args.vgg16.read_bytes() if args.vgg16 else vgg16_stand_in(args.write_vgg16_state)
    dnnlib.util.open_url = lambda url, *a, **k: io.BytesIO(vgg)  # the projector's only download
    if args.random:
        G = random_nvidia_generator(args.random, args.fp16_res)
        if args.write_network:
            with open(args.write_network, "wb") as f:
                pickle.dump({"G_ema": G}, f)
    else:
        with open(args.network, "rb") as f:
            G = pickle.load(f)["G_ema"]  # NVIDIA's own loader: only for files you trust

    device = torch.device(args.device)
    torch.manual_seed(0)
    with torch.no_grad():
        img = G.to(device)(torch.randn(1, G.z_dim, device=device), None, truncation_psi=0.7, noise_mode="const")
    target = ((img[0] + 1) * 127.5).clamp(0, 255).cpu()

    def seconds(steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        projector.project(G, target, num_steps=steps, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    seconds(2)  # warm-up; builds the CUDA plugins on a GPU
    if device.type == "cuda":
        from torch_utils.ops import bias_act, upfirdn2d

        print(f"CUDA plugins loaded: bias_act {bias_act._plugin is not None}, upfirdn2d {upfirdn2d._plugin is not None}")
    pairs = [(seconds(args.long) - seconds(args.short)) / (args.long - args.short) for _ in range(3)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"NVIDIA's projector loop, {G.img_resolution}px, {name}: {statistics.median(pairs):.4f} s per step "
          f"(pairs: {', '.join(f'{p:.4f}' for p in pairs)})")


if __name__ == "__main__":
    main()
