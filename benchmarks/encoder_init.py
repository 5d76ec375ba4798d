"""Does the encoder's first guess save projection steps?

On held-out generated images (known latents; seeds the encoder never trained on), project from
w_avg and from the encoder's guess and count the steps each needs to reach a PSNR (at the working
resolution). Also prints the encoder's own one-pass PSNR and its time per image.

The projector adds no noise to w by default, from any start. `--nvidia-noise` adds a run per image
from w_avg with NVIDIA's decaying noise on w (0.05 of w's spread), the start of NVIDIA's projector
(earlier versions of this script compared with that as "w_avg"). `--oracle 0.5,0.75` adds runs
from latents that far along the line from w_avg to the true ones (an encoder whose latent error is
(1 - f)^2 of w_avg's), to see what an encoder must reach to pay off. A run stops when it reaches
the PSNR (the schedule is still the one of `--steps` steps).

    python benchmarks/encoder_init.py [--encoder encoder|FILE.pt|none] [--network mobile-ffhq] [--images 20] [--psnr 25] [--steps 300]
                                      [--nvidia-noise] [--oracle 0.5,0.75] [--first 10]
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import statistics
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


class Reached(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="encoder file, 'encoder' for the shipped one (the default with the bundled network), or none to compare only the other starts")
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="project only images FIRST.. (the earlier ones as in a run with fewer --images)")
    ap.add_argument("--psnr", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--loss", default=OFFLINE_LOSS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nvidia-noise", action="store_true", help="also project from w_avg with NVIDIA's early noise on w")
    ap.add_argument("--oracle", default="", help="also start this far from w_avg towards the true latents, e.g. 0.5,0.75")
    args = ap.parse_args()
    if not 0 <= args.first < args.images:
        ap.error(f"--first {args.first} leaves no image of --images {args.images} to project")
    if args.encoder is None:  # the shipped encoder is the bundled network's alone
        args.encoder = "encoder" if args.network == "mobile-ffhq" else "none"
    if args.encoder == "none":
        args.encoder = None

    G = load_generator(args.network, device=args.device)
    sampling = EncoderTrainOptions(mixing_prob=0.0, truncation=(0.7, 0.7), render_resolution=G.img_resolution)
    true_ws, full = sample_batch(G, args.images, sampling, torch.Generator().manual_seed(987_654))  # held-out seed
    targets = small(full)
    w_avg = G.w_avg.reshape(1, 1, -1).expand_as(true_ws)
    with torch.no_grad():
        average = small(G.synthesis(w_avg[:1]))
    print(f"network {G.source}, {args.images} held-out images (psi 0.7), PSNR at {R}px; w_avg's own image: {float(psnr(average.expand_as(targets), targets).mean()):.2f} dB")

    starts = {"w_avg": (None, 0.0)}  # name -> (init ws [images, num_ws, w_dim] or None, initial noise factor)
    if args.nvidia_noise:
        starts["w_avg, NVIDIA's noise"] = (None, 0.05)
    if args.encoder:
        enc, _ = load_encoder(resolve_encoder_path(args.encoder), G=G, device=args.device)  # 'encoder': the shipped one
        t0 = time.perf_counter()
        with torch.no_grad():
            guesses = torch.cat([enc(full[i : i + 1]) for i in range(args.images)])
            one_pass = small(G.synthesis(guesses))
        per_image = (time.perf_counter() - t0) / args.images
        print(f"encoder one pass: PSNR {float(psnr(one_pass, targets).mean()):.2f} dB, latent error {latent_error(guesses, true_ws, w_avg):.2f} of w_avg's, "
              f"{per_image * 1000:.0f} ms/image (with synthesis)")
        starts["encoder"] = (guesses, 0.0)
    for f in (float(x) for x in args.oracle.split(",") if x):
        guesses = w_avg.lerp(true_ws, f)
        with torch.no_grad():
            one_pass = small(G.synthesis(guesses))
        print(f"oracle {f:g}: PSNR {float(psnr(one_pass, targets).mean()):.2f} dB, latent error {latent_error(guesses, true_ws, w_avg):.2f} of w_avg's")
        starts[f"oracle {f:g}"] = (guesses, 0.0)

    def steps_to(i: int, init, noise) -> int | None:
        def cb(step, synth, rec):
            if float(psnr(synth, targets[i : i + 1])[0]) >= args.psnr:
                raise Reached(step + 1)

        try:
            project(G, full[i : i + 1], steps=args.steps, init=None if init is None else init[i : i + 1], loss=args.loss,
                    options=ProjectionOptions(working_resolution=R, initial_noise_factor=noise), device=args.device, callback=cb)
        except Reached as hit:
            return hit.args[0]
        return None

    counts: dict[str, list] = {name: [] for name in starts}
    for i in range(args.first, args.images):
        for name, (init, noise) in starts.items():
            counts[name].append(steps_to(i, init, noise))
        print(f"image {i:2d}: " + ", ".join(f"{name} {c[-1] or f'>{args.steps}'}" for name, c in counts.items()) + f" steps to {args.psnr} dB", flush=True)
    cap = args.steps + 1  # a run that never got there counts as one more than the schedule
    medians = {name: statistics.median(n or cap for n in c) for name, c in counts.items()}
    base = medians["w_avg"]
    print(f"median steps to {args.psnr} dB: " + ", ".join(f"{name} {m} ({base / m:.2f}x fewer than from w_avg)" for name, m in medians.items()))


def small(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(R, R), mode="area") if x.shape[-1] > R else x


def latent_error(guess: torch.Tensor, true_ws: torch.Tensor, w_avg: torch.Tensor) -> float:
    """Mean squared latent error of `guess`, as a fraction of w_avg's."""
    return float((guess - true_ws).square().mean() / (w_avg - true_ws).square().mean())


if __name__ == "__main__":
    main()
