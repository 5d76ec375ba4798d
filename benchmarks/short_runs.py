"""How good is a short projection, and does the learning-rate ramp-up matter for it?

On held-out generated faces of the bundled network (known latents, psi 0.7), project from w_avg and
from the shipped encoder's guess for a few step counts, with NVIDIA's ramp-up (5% of the run:
`--rampup-min-steps 0`) and with stylelift's floor of 10 steps, and print the PSNR at the working
resolution after each run (mean, then per face).

    python benchmarks/short_runs.py [--images 4] [--steps 10,20,50] [--rampup-min-steps 0,10] [--lr 0.1] [--last]

`--last` scores the last step's state, as projections before keep-best returned (the README's
ramp-up numbers were measured so); by default the best state is scored, as project() returns it.
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import time

import torch
import torch.nn.functional as F

from stylelift import load_generator
from stylelift.encoder_training import EncoderTrainOptions, sample_batch
from stylelift.models.encoder import load_encoder, resolve_encoder_path
from stylelift.projector import ProjectionOptions, project
from stylelift.projector.metrics import psnr
from stylelift.projector.run import OFFLINE_LOSS

R = 256  # the working resolution


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", default="10,20,50")
    ap.add_argument("--rampup-min-steps", default="0,10")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--last", action="store_true", help="score the last step's state (NVIDIA's result) instead of the best one")
    args = ap.parse_args()

    G = load_generator(args.network, device=args.device)
    sampling = EncoderTrainOptions(mixing_prob=0.0, truncation=(0.7, 0.7), render_resolution=G.img_resolution)
    _, full = sample_batch(G, args.images, sampling, torch.Generator().manual_seed(987_654))  # the seed encoder_init.py holds out
    targets = small(full)
    enc, _ = load_encoder(resolve_encoder_path("encoder"), G=G, device=args.device)
    with torch.no_grad():
        guesses = torch.cat([enc(full[i : i + 1]) for i in range(args.images)])
        print(f"network {G.source}, {args.images} held-out faces; encoder one pass: PSNR {float(psnr(small(G.synthesis(guesses)), targets).mean()):.2f} dB")
    for steps in (int(s) for s in args.steps.split(",")):
        for start in ("w_avg", "encoder"):
            for floor in (int(f) for f in args.rampup_min_steps.split(",")):
                t0, values = time.perf_counter(), []
                for i in range(args.images):
                    options = ProjectionOptions(working_resolution=R, lr=args.lr, lr_rampup_min_steps=floor, keep_best=not args.last)
                    init = guesses[i : i + 1] if start == "encoder" else None
                    result = project(G, full[i : i + 1], steps=steps, init=init, loss=OFFLINE_LOSS, options=options, device=args.device)
                    with torch.no_grad():
                        values.append(float(psnr(small(result.image), targets[i : i + 1])[0]))
                per_face = " ".join(f"{v:.1f}" for v in values)
                print(f"{steps:4d} steps from {start:7s}, ramp-up floor {floor:2d}: PSNR {sum(values) / len(values):.2f} dB ({per_face}), {time.perf_counter() - t0:.0f} s", flush=True)


def small(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(R, R), mode="area") if x.shape[-1] > R else x


if __name__ == "__main__":
    main()
