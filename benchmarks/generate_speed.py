"""How fast does stylelift's StyleGAN2 generator render images on the CPU?

Times `G(z)` (mapping + synthesis, noise const) of a config-f-like generator (channel_base 32768,
channel_max 512, 8 mapping layers, random weights) at 256 and 1024 px, batch 1 and 8, and prints
milliseconds per image: the median of a few timed runs after warm-up runs, under
`torch.inference_mode()`. With `--nvidia-repo`, NVIDIA's stylegan2-ada-pytorch generator gets the
same weights and is timed the same way (`force_fp32=True`: its CPU path), after checking that
both give the same image.

    python benchmarks/generate_speed.py                        # stylelift only
    python benchmarks/generate_speed.py --nvidia-repo ~/src/stylegan2-ada-pytorch
    python benchmarks/generate_speed.py --nvidia-repo ... --with-1024-batch8 --profile 1024

1024 px at batch 8 takes about a minute a run on a 2-core machine, so it is left out unless asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # this checkout's stylelift, whatever else is installed
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import stylelift  # noqa: E402,F401  (before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import os
import statistics
import time
import warnings
from typing import Callable

import torch

from stylelift.models.stylegan2 import Generator, StyleGAN2Config  # noqa: E402

CASES = [(256, 1), (256, 8), (1024, 1), (1024, 8)]


def config_f(resolution: int) -> StyleGAN2Config:
    return StyleGAN2Config(img_resolution=resolution, channel_base=32768, channel_max=512, mapping_layers=8, conv_clamp=256, num_fp16_res=4)


@torch.no_grad()
def stylelift_generator(resolution: int, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(config_f(resolution))
    for name, p in G.named_parameters():  # non-zero noise strengths and biases, as in a trained net
        if name.endswith("noise_strength"):
            p.fill_(0.1)
        elif name.endswith(".bias"):
            p.add_(torch.randn_like(p) * 0.1)
    return G.eval().requires_grad_(False)


def nvidia_generator(repo: Path, G: Generator) -> torch.nn.Module:
    """NVIDIA's Generator with the same architecture and weights as `G`."""
    sys.path.insert(0, str(repo.resolve()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from training.networks import Generator as NvidiaGenerator
    finally:
        sys.path.pop(0)
    cfg = G.config
    N = NvidiaGenerator(
        z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers),
        synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                              conv_clamp=cfg.conv_clamp, architecture=cfg.architecture),
    )
    missing, unexpected = N.load_state_dict(G.state_dict(), strict=False)
    if unexpected or any(not k.endswith("resample_filter") for k in missing):
        raise RuntimeError(f"weights do not transfer: missing {missing}, unexpected {unexpected}")
    return N.eval().requires_grad_(False)


def time_ms_per_image(renderers: dict[str, Callable[[torch.Tensor], torch.Tensor]], z: torch.Tensor, *, warmup: int, repeats: int) -> dict[str, float]:
    """Median ms per image of each renderer. Runs alternate between renderers, so that a machine
    that is busy with something else slows them alike."""
    runs: dict[str, list[float]] = {name: [] for name in renderers}
    with torch.inference_mode():
        for render in renderers.values():
            for _ in range(warmup):
                render(z)
        for _ in range(repeats):
            for name, render in renderers.items():
                t0 = time.perf_counter()
                render(z)
                runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) * 1000 / len(z) for name, r in runs.items()}


def profile(name: str, render: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch.inference_mode():
        render(z)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            render(z)
    print(f"\n--- profile: {name}, batch {len(z)} ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nvidia-repo", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch: time its generator too")
    parser.add_argument("--with-1024-batch8", action="store_true", help="also time 1024 px at batch 8 (slow on few cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported; 1024 px uses at most 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--profile", type=int, choices=[256, 1024], help="print a torch.profiler table at this resolution, batch 1")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--resolutions", default="256,1024", help="comma-separated subset of 256,1024 (default: both)")
    args = parser.parse_args()
    if args.nvidia_repo is not None and not (args.nvidia_repo / "training" / "networks.py").is_file():
        parser.error(f"{args.nvidia_repo} is not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
          "(other work on the machine inflates the times); ms per image, median of timed runs")

    results = []
    resolutions = sorted({int(r) for r in args.resolutions.split(",")})
    if not set(resolutions) <= {256, 1024}:
        parser.error("--resolutions takes 256 and/or 1024")
    for resolution in resolutions:
        G = stylelift_generator(resolution)
        renderers = {"stylelift": lambda z, G=G: G(z, noise_mode="const")}
        if args.nvidia_repo is not None:
            N = nvidia_generator(args.nvidia_repo, G)
            renderers["nvidia"] = lambda z, N=N: N(z, None, noise_mode="const", force_fp32=True)
            with torch.inference_mode():
                z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0))
                same = torch.equal(renderers["stylelift"](z), renderers["nvidia"](z))
            print(f"{resolution} px: stylelift and NVIDIA images identical: {'yes' if same else 'NO'}")
        for res, batch in CASES:
            if res != resolution or (res == 1024 and batch == 8 and not args.with_1024_batch8):
                continue
            z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(1))
            repeats = args.repeats if res < 1024 else min(args.repeats, 3)
            row = {"resolution": res, "batch": batch, **time_ms_per_image(renderers, z, warmup=args.warmup, repeats=repeats)}
            for name in renderers:
                print(f"  {res:>4} px  batch {batch}  {name:<9} {row[name]:9.1f} ms/image", flush=True)
            results.append(row)
        if args.profile == resolution:
            z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(2))
            for name, render in renderers.items():
                profile(name, render, z)
        del renderers

    names = ["stylelift"] + (["nvidia"] if args.nvidia_repo is not None else [])
    head = "| resolution | batch | " + " | ".join(f"{n} ms/img" for n in names) + (" | stylelift / nvidia |" if len(names) > 1 else " |")
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    for row in results:
        cells = [str(row["resolution"]), str(row["batch"])] + [f"{row[n]:.1f}" for n in names]
        if len(names) > 1:
            cells.append(f"{row['stylelift'] / row['nvidia']:.2f}")
        print("| " + " | ".join(cells) + " |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
