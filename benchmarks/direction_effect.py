"""Do the shipped directions do what they say? (bundled network, offline age/gender classifier)

For N random faces, render each at strengths -3..3 along the direction and classify every image.
age: share of faces whose predicted age rises monotonically (non-decreasing, and higher at +3 than
at -3), share whose predicted gender differs anywhere along the way from that of the unedited face
(strength 0; the share measured against strength -3 is printed too). gender: share whose P(male)
rises monotonically end to end and crosses 0.5, and the mean age change. The age shares come with
their 95% (Wilson) interval: on 100 faces a share of 90% is known to about +-6 points.

    python benchmarks/direction_effect.py [--faces 100] [--strengths=-3:3:7] [--age PATH] [--gender PATH] [--layers 0-7]
                                          [--sheet flips.png] [--random K]

`--sheet` writes the faces whose predicted gender changed under the age edit, one row each with
the predicted age and P(male) under every image, so a person can check whether the face or the
classifier changed (the classifier is often wrong about children's gender).

`--age` / `--gender` evaluate other direction files (default: the shipped ones); `--layers` edits
only those ws (default: the layers the direction's sidecar names, as `stylelift edit` does, else all).

`--random K` measures how often the predicted gender changes under edits about neither age nor
gender: K random unit directions drawn in w (isotropic) and K shaped like w's spread, each made
orthogonal to the age and gender normals, applied on the same faces, layers and strengths as the
age direction. Their share of flips is the classifier's floor for an edit of that size.
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from stylelift import load_generator
from stylelift.editing import apply_direction, parse_layers
from stylelift.editing.shipped import resolve_direction
from stylelift.generation import latents_for_items, render_ws
from stylelift.images import make_grid, save_image
from stylelift.models.attributes import CLASSIFY_SIZE, classify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="mobile-ffhq")
    ap.add_argument("--faces", type=int, default=100)
    ap.add_argument("--first-seed", type=int, default=100_000, help="seeds not used when learning the directions")
    ap.add_argument("--strengths", default="-3:3:7", help="LO:HI:N (write --strengths=-3:3:7: argparse takes a value starting with - for an option)")
    ap.add_argument("--trunc", type=float, default=0.7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--age", default="age", help="direction file (default: the shipped one)")
    ap.add_argument("--gender", default="gender", help="direction file (default: the shipped one)")
    ap.add_argument("--save", default=None, help="also write PREFIX_age.npz / PREFIX_gender.npz with every prediction")
    ap.add_argument("--only", choices=("age", "gender"), default=None, help="evaluate one direction")
    ap.add_argument("--layers", default=None, help="edit only these ws, e.g. 0-7 or all (default: the direction's own)")
    ap.add_argument("--sheet", default=None, help="write the age edits whose predicted gender changed to this .png, labelled")
    ap.add_argument("--random", type=int, default=0, metavar="K",
                    help="also K random directions of each kind (isotropic, and shaped like w's spread), orthogonal to the age and gender normals, "
                         "applied as the age one: how often the gender call changes under an edit about neither")
    args = ap.parse_args()
    if args.random and args.only:  # (before the evaluation, not after it)
        ap.error("--random compares with both directions: leave out --only")
    lo, hi, n = args.strengths.split(":")
    strengths = np.linspace(float(lo), float(hi), int(n))

    G = load_generator(args.network, device=args.device)
    seeds = [str(s) for s in range(args.first_seed, args.first_seed + args.faces)]
    ws = latents_for_items(G, seeds, truncation_psi=args.trunc, device=args.device)
    unedited = int(np.argmin(np.abs(strengths)))  # the column of strength 0 (or the nearest)
    print(f"age {args.age}, gender {args.gender}")
    print(f"network {G.source}, {args.faces} faces (seeds {seeds[0]}..{seeds[-1]}, psi {args.trunc}), strengths {strengths.tolist()}")

    def measure(vector, layers, sheet: bool = False):
        """Predicted ages and P(male) [faces, strengths] (NaN where no face was found), the mean
        pixel change at the end strengths (of 255, at the classifier's resolution), and labelled
        thumbnails of the faces whose predicted gender changed (with `sheet`)."""
        ages, males = np.full([args.faces, len(strengths)], np.nan), np.full([args.faces, len(strengths)], np.nan)
        change, rows = [], []
        for i in range(args.faces):
            edited = torch.cat([apply_direction(ws[i : i + 1], vector, float(s), layers) for s in strengths])
            images = render_ws(G, edited, batch_size=len(strengths), max_resolution=CLASSIFY_SIZE)
            change.append(np.mean([np.abs(images[j].astype(np.float64) - images[unedited]).mean() for j in (0, len(strengths) - 1)]))
            for j, image in enumerate(images):
                a = classify(image)
                if a is not None:
                    ages[i, j], males[i, j] = a.age, a.male
            changed = (males[i] > 0.5) != (males[i, unedited] > 0.5)
            if sheet and changed.any() and not np.isnan(ages[i]).any():  # as counted below
                rows.extend(labelled(im, f"{seeds[i]} {s:+g}: {ages[i, j]:.0f}y m{males[i, j]:.2f}") for j, (im, s) in enumerate(zip(images, strengths)))
        return ages, males, float(np.mean(change)), rows

    def age_effect(a, m):
        rising = (np.diff(a, axis=1) >= 0).all(axis=1) & (a[:, -1] > a[:, 0])
        gender_flip = ((m > 0.5) != (m[:, unedited : unedited + 1] > 0.5)).any(axis=1)  # vs the unedited face
        return rising, gender_flip

    age_layers = None
    for name in (args.only,) if args.only else ("age", "gender"):
        d = resolve_direction(getattr(args, name), G)
        spec = args.layers or d.default_layers or "all"
        layers = parse_layers(spec, G.layer_resolutions)
        t0 = time.perf_counter()
        ages, males, change, rows = measure(d.vector, layers, sheet=bool(args.sheet) and name == "age")
        ok = ~np.isnan(ages).any(axis=1)
        a, m = ages[ok], males[ok]
        if args.save:
            np.savez(f"{args.save}_{name}.npz", ages=ages, males=males, strengths=strengths, seeds=np.array(seeds, dtype=np.int64))
        if rows:
            save_image(make_grid(rows, cols=len(strengths)), args.sheet)
            print(f"wrote {args.sheet}: {len(rows) // len(strengths)} faces whose predicted gender changed")
        elif args.sheet and name == "age":
            print("no sheet written: no face's predicted gender changed")
        if name == "age":
            age_vector, age_layers, age_spec = d.vector, layers, spec
            rising, gender_flip = age_effect(a, m)
            flip_vs_first = ((m > 0.5) != (m[:, :1] > 0.5)).any(axis=1)  # vs the first strength
            print(f"\nage direction ({d.meta.get('accuracy', float('nan')):.3f} held-out accuracy when learned, layers {spec}), {ok.sum()} faces found at every strength, {time.perf_counter() - t0:.0f} s")
            print(f"  predicted age rises monotonically: {rising.mean():.1%}   (target >= 90%; 95% interval {interval(rising)})")
            print(f"  predicted gender flips:            {gender_flip.mean():.1%}   (target <= 10%; vs the unedited face; 95% interval {interval(gender_flip)})")
            print(f"    (vs strength {strengths[0]:g} instead:        {flip_vs_first.mean():.1%})")
            side = (m > 0.5) != (m[:, unedited : unedited + 1] > 0.5)  # [faces, strengths]: called the other gender here
            younger, older, start = side[:, :unedited].any(axis=1), side[:, unedited + 1 :].any(axis=1), m[:, unedited]
            print(f"    where: on the younger side only {(younger & ~older).sum()}, the older side only {(older & ~younger).sum()}, both {(younger & older).sum()};"
                  f" female to male {(gender_flip & (start < 0.5)).sum()}, male to female {(gender_flip & (start > 0.5)).sum()};"
                  f" unedited face called with P(male) < 0.2 or > 0.8: {(gender_flip & (np.abs(start - 0.5) > 0.3)).sum()}")
            print(f"  mean predicted age per strength:   {np.round(a.mean(0), 1).tolist()}")
            print(f"  mean pixel change at {strengths[0]:g} and {strengths[-1]:g}: {change:.1f} of 255")
        else:
            gender_vector = d.vector
            rising = (np.diff(m, axis=1) >= 0).all(axis=1) & (m[:, -1] > m[:, 0])
            crosses = (m[:, 0] < 0.5) & (m[:, -1] > 0.5)
            print(f"\ngender direction ({d.meta.get('accuracy', float('nan')):.3f} held-out accuracy when learned, layers {spec}), {ok.sum()} faces, {time.perf_counter() - t0:.0f} s")
            print(f"  P(male) rises monotonically:       {rising.mean():.1%}")
            print(f"  gender changes from female to male: {crosses.mean():.1%}")
            print(f"  mean |age change| -3 -> +3:         {np.abs(a[:, -1] - a[:, 0]).mean():.1f} years")
            print(f"  mean P(male) per strength:         {np.round(m.mean(0), 2).tolist()}")
    if args.random:
        print(f"\nrandom unit directions orthogonal to the age and gender normals, applied as the age one (layers {age_spec}):")
        for kind, seed, vector in random_directions(G, [age_vector, gender_vector], args.random):
            ages, males, change, _ = measure(vector, age_layers)
            ok = ~np.isnan(ages).any(axis=1)
            rising, gender_flip = age_effect(ages[ok], males[ok])
            print(f"  {kind} {seed}: predicted gender flips {gender_flip.mean():5.1%} ({interval(gender_flip)}), age rises monotonically {rising.mean():5.1%},"
                  f" mean age {np.nanmean(ages[:, 0]):.1f} -> {np.nanmean(ages[:, -1]):.1f}, pixel change {change:.1f} of 255")


def random_directions(G, normals, k: int):
    """k isotropic and k covariance-shaped (Sigma^0.5 g, Sigma of 10,000 sampled w) random unit
    directions [1, w_dim], each with its components along `normals` removed: edits about neither."""
    basis, _ = torch.linalg.qr(torch.cat([torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(1, -1) for v in normals]).T)  # [w_dim, len(normals)]
    z = torch.randn([10_000, G.z_dim], generator=torch.Generator().manual_seed(900_000)).to(G.w_avg.device)
    with torch.no_grad():
        w = torch.cat([G.mapping(part, None)[:, 0] for part in z.split(1000)]).double().cpu()
    values, vectors = torch.linalg.eigh(torch.cov(w.T))
    sqrt_cov = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    for kind in ("isotropic", "shaped like w"):
        for seed in range(k):
            g = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            g = sqrt_cov @ g if kind != "isotropic" else g
            g = g - basis @ (basis.T @ g)
            yield kind, seed, (g / g.norm()).float().numpy()[None]


def interval(hits: np.ndarray, z: float = 1.96) -> str:
    """Wilson score interval of a share measured on len(hits) faces: how far a 100-face run can be off."""
    n, p = len(hits), float(np.mean(hits))
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{centre - half:.1%}-{centre + half:.1%}"


def labelled(image: np.ndarray, text: str, size: int = 160) -> np.ndarray:
    """A thumbnail with `text` on a strip below it."""
    im = Image.fromarray(image).resize((size, size), Image.LANCZOS)
    cell = Image.new("RGB", (size, size + 14), "white")
    cell.paste(im, (0, 0))
    ImageDraw.Draw(cell).text((2, size + 1), text, fill="black")
    return np.asarray(cell)


if __name__ == "__main__":
    main()
