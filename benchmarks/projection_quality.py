"""Projection quality on the bundled network (CPU by default).

(a) images the network generated itself (known ws): PSNR at the working resolution after K steps,
    for W+ and W; (b) real photos (aligned): PSNR, SSIM and dlib's face-descriptor distance of the
    projection to the target (< 0.6 = the same person by dlib's convention).

    python benchmarks/projection_quality.py [--steps 500] [--samples 3] [--loss SPEC (default: the offline mix)]
        [--spaces w+,w] [--initial-noise-factor F] [PHOTO ...]

Every row also gives the PSNR at the working resolution after 1/5, 2/5, ... of the steps.
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylelift import load_generator
from stylelift.align import align_face
from stylelift.images import load_photo, to_uint8
from stylelift.projector import ProjectionOptions, project
from stylelift.projector.losses import ssim
from stylelift.projector.metrics import face_distance, psnr
from stylelift.projector.run import OFFLINE_LOSS

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", type=Path, default=[ROOT / "examples" / "astronaut.png"])
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--samples", type=int, default=3, help="generated images to project back")
    ap.add_argument("--loss", default=OFFLINE_LOSS)
    ap.add_argument("--working-resolution", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spaces", default="w+,w", help="comma-separated: w+, w")
    ap.add_argument("--no-photos", action="store_true", help="only the generated images")
    ap.add_argument(
        "--initial-noise-factor", type=float, default=None, help="noise on w early on, in w_std (default: the projector's, none; NVIDIA's: 0.05)"
    )
    args = ap.parse_args()
    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]

    torch.manual_seed(0)
    G = load_generator(args.network, device=args.device)
    noise = {} if args.initial_noise_factor is None else {"initial_noise_factor": args.initial_noise_factor}
    opts = ProjectionOptions(working_resolution=args.working_resolution, **noise)
    R = args.working_resolution
    marks = sorted({max(1, args.steps * k // 5) for k in range(1, 6)})

    def small(img):
        return F.interpolate(img, size=(R, R), mode="area") if img.shape[-1] > R else img

    def tracker(target, reached, curve):
        """A step callback that records the first step at 30 dB and the PSNR at the marks."""
        t = small(target)

        def cb(step, synth, rec):
            p = float(psnr(synth, t)[0])
            if not reached and p >= 30:
                reached.append(step + 1)
            if step + 1 in marks:
                curve.append(f"{p:.1f}")

        return cb

    print(
        f"network {G.source}, loss {args.loss}, {args.steps} steps, working resolution {R}, device {args.device}, "
        f"initial noise factor {opts.initial_noise_factor}"
    )
    print(f"PSNR@work at steps {'/'.join(map(str, marks))} in the last column (seen by the loss, before that step's update)")
    print("\n(a) generated images (known ws)")
    print(f"{'space':6} {'sample':>6} {'PSNR@work':>10} {'steps to 30dB':>14} {'s/step':>7}  curve")
    if args.samples == 0:
        print("(skipped: --samples 0)")
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(1234).randn(args.samples, G.z_dim)).float().to(args.device)
        targets = G.synthesis(G.mapping(z, truncation_psi=0.7)) if args.samples else None
    for space in spaces if args.samples else ():
        for i in range(args.samples):
            reached, curve = [], []
            cb = tracker(targets[i : i + 1], reached, curve)
            t0 = time.perf_counter()
            r = project(G, targets[i : i + 1], space=space, steps=args.steps, loss=args.loss, options=opts, device=args.device, callback=cb)
            dt = (time.perf_counter() - t0) / args.steps
            p = float(psnr(small(r.image), small(targets[i : i + 1]))[0])
            print(f"{space:6} {i:>6} {p:>10.2f} {reached[0] if reached else '-':>14} {dt:>7.3f}  {'/'.join(curve)}", flush=True)

    print("\n(b) real photos")
    print(f"{'photo':24} {'space':6} {'PSNR':>6} {'SSIM':>6} {'dlib dist':>9} {'same person':>11}  curve")
    for path in [] if args.no_photos else args.photos:
        face = align_face(load_photo(path), size=G.img_resolution, name=path.name)
        target = torch.from_numpy(np.array(face.image)).permute(2, 0, 1)[None].float().to(args.device) / 127.5 - 1
        for space in spaces:
            curve = []
            cb = tracker(target, [], curve)
            r = project(G, target, space=space, steps=args.steps, loss=args.loss, options=opts, device=args.device, callback=cb)
            d = face_distance(np.asarray(face.image), to_uint8(r.image)[0])
            image = r.image.clamp(-1, 1)  # as saved, and as NAME_metrics.json scores it
            print(
                f"{path.name:24} {space:6} {float(psnr(image, target)[0]):>6.2f} {float(ssim(image, target)[0]):>6.3f} "
                f"{d if d is None else round(d, 3)!s:>9} {str(d is not None and d < 0.6):>11}  {'/'.join(curve)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
