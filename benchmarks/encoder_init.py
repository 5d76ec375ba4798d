"""Does the encoder's first guess save projection steps?

On held-out generated images (known latents; seeds the encoder never trained on), project from
w_avg and from the encoder's guess and count the steps each needs to reach a PSNR (at the working
resolution). Also prints the encoder's own one-pass PSNR and its time per image.

    python benchmarks/encoder_init.py --encoder encoder.pt [--network mobile-ffhq] [--images 20] [--psnr 25] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stylelift import load_generator
from stylelift.encoder_training import EncoderTrainOptions, sample_batch
from stylelift.models.encoder import load_encoder
from stylelift.projector import ProjectionOptions, project
from stylelift.projector.metrics import psnr
from stylelift.projector.run import OFFLINE_LOSS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--psnr", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--loss", default=OFFLINE_LOSS)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    G = load_generator(args.network, device=args.device)
    enc, _ = load_encoder(args.encoder, G=G, device=args.device)
    R = 256
    opts = ProjectionOptions(working_resolution=R)
    sampling = EncoderTrainOptions(mixing_prob=0.0, truncation=(0.7, 0.7), render_resolution=G.img_resolution)
    _, full = sample_batch(G, args.images, sampling, torch.Generator().manual_seed(987_654))  # held-out seed

    def small(x):
        return F.interpolate(x, size=(R, R), mode="area") if x.shape[-1] > R else x

    t0 = time.perf_counter()
    with torch.no_grad():
        guesses = torch.cat([enc(full[i : i + 1]) for i in range(args.images)])
        one_pass = G.synthesis(guesses)
    per_image = (time.perf_counter() - t0) / args.images
    print(f"encoder one pass: PSNR {float(psnr(small(one_pass), small(full)).mean()):.2f} dB at {R}px, {per_image * 1000:.0f} ms/image (with synthesis)")

    def steps_to(init, i):
        hit = []

        def cb(step, synth, rec):
            if not hit and float(psnr(synth, small(full[i : i + 1]))[0]) >= args.psnr:
                hit.append(step + 1)

        project(G, full[i : i + 1], steps=args.steps, init=init, loss=args.loss, options=opts, device=args.device, callback=cb)
        return hit[0] if hit else None

    rows = []
    for i in range(args.images):
        a, e = steps_to(None, i), steps_to(guesses[i : i + 1], i)
        rows.append((a, e))
        print(f"image {i:2d}: w_avg init {a or f'>{args.steps}'} steps, encoder init {e or f'>{args.steps}'} steps to {args.psnr} dB")
    cap = args.steps + 1
    med_a = statistics.median(a or cap for a, _ in rows)
    med_e = statistics.median(e or cap for _, e in rows)
    print(f"median steps to {args.psnr} dB: w_avg {med_a}, encoder {med_e} ({med_a / med_e:.2f}x fewer)")


if __name__ == "__main__":
    main()
