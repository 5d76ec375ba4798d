"""Projector speed: seconds per step and images per second for batch 1, 4 and 8.

    python benchmarks/projection_speed.py [--network mobile-ffhq|FILE] [--device cpu|cuda] [--steps 5]
                                          [--space w|w+] [--loss SPEC] [--perceptual-weights vgg16.pth]

Each configuration runs WARMUP steps, then `--steps` timed steps (median of per-step times). The
first steps are slower while the process's heap grows to the step's working set (256 px, CPU,
vgg16, W: 3.15, 1.07, 0.94 s, then 0.82-0.90 from the fourth step on); NVIDIA's loop is timed as
the difference of a long and a short run, which leaves those steps out, so they are left out here.
The loss is the offline default; the working resolution is 256 as in NVIDIA's projector.
To compare with NVIDIA's projector loop (W space, VGG16 feature distance, batch 1) use
`--space w --loss vgg16 --perceptual-weights FILE` on the same network file, and time NVIDIA's
loop with `nvidia_projector_loop.py` (which can write both files: a random network built by
NVIDIA's code, and the VGG16 weights of its stand-in for NVIDIA's vgg16.pt).
Like the CLI, it first makes malloc keep freed memory (stylelift/runtime.py); `--system-malloc`
leaves the allocator as it is, to see what that setting is worth.
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import statistics
import time
from pathlib import Path

import torch

from stylelift import load_generator
from stylelift.projector import ProjectionOptions, project
from stylelift.projector.run import OFFLINE_LOSS
from stylelift.runtime import keep_freed_memory


WARMUP = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--loss", default=OFFLINE_LOSS)
    ap.add_argument("--space", default="w+")
    ap.add_argument("--perceptual-weights", type=Path, default=None, help="VGG16 weights for the lpips/vgg16 losses")
    ap.add_argument("--system-malloc", action="store_true", help="do not apply keep_freed_memory() as the CLI does")
    args = ap.parse_args()
    kept = False if args.system_malloc else keep_freed_memory()

    G = load_generator(args.network, device=args.device)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"network {G.source} ({G.img_resolution}px), device {where}, torch threads {torch.get_num_threads()}, space {args.space}, loss {args.loss}, "
          f"malloc keeps freed memory: {kept}")
    print(f"{'batch':>5} {'s/step':>8} {'images/s (per step)':>20} {'vs batch 1':>10}")
    base = None
    for n in (int(b) for b in args.batches.split(",")):
        with torch.no_grad():
            target = G.synthesis(G.mapping(torch.randn(n, G.z_dim, device=args.device), truncation_psi=0.7))
        times = []
        last = [time.perf_counter()]

        def cb(step, synth, rec):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        last[0] = time.perf_counter()
        project(G, target, space=args.space, steps=args.steps + WARMUP, loss=args.loss, options=ProjectionOptions(), device=args.device,
                perceptual_weights=args.perceptual_weights, callback=cb)
        per_step = statistics.median(times[WARMUP:])
        ips = n / per_step
        base = base or ips
        print(f"{n:>5} {per_step:>8.3f} {ips:>20.2f} {ips / base:>10.2f}x")


if __name__ == "__main__":
    main()
