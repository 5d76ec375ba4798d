"""Project a photo, then edit it: stylelift as a library, in one script to read and change.

    python examples/project_and_edit.py [PHOTO] [--network mobile-ffhq] [--steps 200] [--outdir out/example]

Writes into --outdir:
  projected.npz       the latent file (w and noise maps), as `stylelift project` writes it;
                      `stylelift edit projected.npz ...` and the other commands take it
  projected.png       the aligned photo and its reconstruction, side by side
  younger_older.png   the face moved along an attribute direction from -3 to +3 standard deviations
                      (the shipped age direction on the bundled network, else the first PCA one)
  older_pasted.png    the photo with the +3 face pasted back into it (its face and forehead)
  mix.png             three seeds' faces given the photo's coarse layers (pose, face shape)
  morph.mp4           a loop from the photo to seed 0 and back, noise maps lerped with the ws

On the bundled network and a 2-core CPU, `--steps 50` took two minutes in all; the projection's
share grows with the steps.
"""

from __future__ import annotations

import stylelift  # first, before torch: it sets the CPU thread settings torch reads when it loads

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylelift.editing import apply_direction, interpolation_path, mix_styles, parse_layers, pca_directions, resolve_direction, style_ranges, w_std_along
from stylelift.editing.interpolation import between, path_steps
from stylelift.generation import item_noises, iter_render_ws, latents_for_items, render_ws
from stylelift.images import load_photo, make_grid, photo_profile, save_image, to_tensor, to_uint8, write_video

OFFLINE_LOSS = "mse=1,ms-ssim=1,face=0.1,face-id=0.1"  # what `stylelift project --loss auto` picks without ImageNet weights


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", nargs="?", default=str(Path(__file__).with_name("astronaut.png")))
    ap.add_argument("--network", default="mobile-ffhq", help="a network name or file (NVIDIA .pkl, rosinality .pt, ...)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--loss", default=OFFLINE_LOSS)
    ap.add_argument("--outdir", type=Path, default=Path("out/example"))
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)

    # 1. Align the face as FFHQ was aligned, and optimise W+ latents and noise maps to match it.
    G = stylelift.load_generator(args.network)
    photo = load_photo(args.photo)
    face = stylelift.align_face(photo, size=G.img_resolution, name=Path(args.photo).name)
    target = to_tensor(face.image)  # [1, 3, H, W] in [-1, 1]
    def report(step, image, losses):  # the projection takes most of the time: say how it goes
        if step % 10 == 0 or step == args.steps - 1:
            print(f"projecting: step {step + 1}/{args.steps}, loss {float(losses['loss']):.4f}", flush=True)

    result = stylelift.project(G, target, space="w+", steps=args.steps, loss=args.loss, seed=0, callback=report)
    print("projected; editing, mixing and rendering the morph video", flush=True)
    ws = result.ws  # [1, num_ws, w_dim]
    noises = [n[:1] for n in result.noises] if result.noises else None  # per noise input [1, 1, r, r]; None: the network has none
    meta = {"network_id": stylelift.network_id(G), "network": args.network, "space": "w+", "steps": args.steps, "loss": args.loss, "seed": 0,
            "photo": Path(args.photo).name, "stylelift": stylelift.__version__,
            "alignment": dict(face.transform_meta(), photo_path=str(Path(args.photo).resolve()))}  # so `stylelift edit --paste-back` can paste it back
    noise_maps = {k: n[0].numpy() for k, n in enumerate(noises or [])}
    stylelift.save_latents(args.outdir / "projected.npz", stylelift.LatentFile(w=ws.numpy(), noises=noise_maps, meta=meta))
    save_image(make_grid([to_uint8(target)[0], to_uint8(result.image)[0]], cols=2), args.outdir / "projected.png")

    # 2. Move it along a direction, in standard deviations of the network's w along that direction.
    if args.network == "mobile-ffhq":
        direction = resolve_direction("age", G)  # shipped, made with `stylelift directions learn`
        vector = direction.vector
        layers = parse_layers(direction.default_layers, G.layer_resolutions)  # middle and fine: age, not pose
    else:
        vector, layers = pca_directions(G, k=1)[0][None], None
    sigma = w_std_along(G, vector)
    edited = torch.cat([apply_direction(ws, vector, s * sigma, layers) for s in (-3, -1.5, 0, 1.5, 3)])
    strip = render_ws(G, edited, noises=noises)  # uint8 HWC images
    save_image(make_grid(strip, cols=5), args.outdir / "younger_older.png")
    pasted = stylelift.paste_back(Image.fromarray(strip[-1]), face, photo)  # the photo's hair and background stay
    save_image(np.asarray(pasted), args.outdir / "older_pasted.png", icc_profile=photo_profile(photo))

    # 3. Style mixing: the photo's coarse layers under three seeds' finer ones (top row: the seeds).
    coarse = style_ranges(G.layer_resolutions)["coarse"]
    seeds = latents_for_items(G, ["1", "2", "3"], truncation_psi=0.7)
    mixed = mix_styles(seeds, ws.expand(len(seeds), -1, -1), coarse)
    save_image(make_grid(render_ws(G, torch.cat([seeds, mixed])), cols=3), args.outdir / "mix.png")

    # 4. A loop from the photo to seed 0 and back; the projection's noise maps fade into the network's constant ones.
    keys = torch.cat([ws, latents_for_items(G, ["0"], truncation_psi=0.7)])
    path = interpolation_path(keys, 48, loop=True, easing="smooth")
    ends = item_noises(G, [str(args.outdir / "projected.npz"), "0"], "cpu")  # the file's maps, then the network's own
    if ends is not None:  # [2, 1, r, r] per noise input
        steps = path_steps(2, 48, loop=True, easing="smooth")  # where each frame lies: (key a, key b, t)

        def frame_noises(start, stop):  # a batch's maps at a time: all 48 frames' would be large at 1024 px
            return [torch.stack([between(maps[a], maps[b], t) for a, b, t in steps[start:stop]]) for maps in ends]
    else:
        frame_noises = None
    write_video(args.outdir / "morph.mp4", iter_render_ws(G, path, noises=frame_noises), fps=24)  # frames streamed to ffmpeg
    print(f"wrote projected.npz, projected.png, younger_older.png, older_pasted.png, mix.png and morph.mp4 to {args.outdir}/")


if __name__ == "__main__":
    main()
