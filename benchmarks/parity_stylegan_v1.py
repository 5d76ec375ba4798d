"""Does stylelift's StyleGAN (v1) give the same images as the ports its files come from?

1. NVIDIA's TensorFlow pickles, against genforce's PyTorch port (`--genforce-repo`).

NVIDIA's StyleGAN is TensorFlow 1 code, which cannot be installed here. genforce's PyTorch port
(`models/stylegan_generator.py` of github.com/genforce/genforce, MIT licence) comes with a converter
that checks it against NVIDIA's TF networks, so it stands in for the reference: random weights go
into genforce's generator, are written out under NVIDIA's TensorFlow variable names (inverting
genforce's own converter), read by stylelift's TF reader (`nvidia_stylegan._config/_state`),
and both render the same z (mapping + truncation psi 0.7 on 8 layers, NVIDIA's default) and the
same random W+ latents, with the networks' stored noise maps.

2. rosinality's style-based-gan-pytorch checkpoints (`--rosinality-repo`): its `StyledGenerator`
(`model.py`, pure torch) with random weights (biases and noise strengths too) is saved as its
`train.py` does, read by `load_generator`, and both render the same z with the same noise maps
(one per block in rosinality's forward, given to both of stylelift's layers), at the 1024-px
"trained" resolution and at two earlier phases (to_rgb biases of the larger blocks left at zero,
as in a checkpoint of an earlier phase). For scale, rosinality's own float32 output is compared
with its float64 output too.

This is a maintainer's tool, not a test (the test suite has the genforce numbers for one tiny
network). It needs checkouts of the two repositories; from genforce it imports only the
generator file (its `sync_op` module is replaced by a stand-in).

    python benchmarks/parity_stylegan_v1.py --genforce-repo ~/src/genforce --rosinality-repo ~/src/style-based-gan-pytorch
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import copy
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch

from stylelift import load_generator

from stylelift.models.nvidia_stylegan import _config, _state
from stylelift.models.stylegan import StyleGAN


def genforce_generator_class(repo: Path):
    """genforce's StyleGANGenerator, loaded from its file without its package."""
    package = types.ModuleType("genforce_models")
    package.__path__ = [str(repo / "models")]
    sync_op = types.ModuleType("genforce_models.sync_op")
    sync_op.all_gather = lambda x: x  # only used while training
    sys.modules.update({"genforce_models": package, "genforce_models.sync_op": sync_op})
    spec = importlib.util.spec_from_file_location("genforce_models.stylegan_generator", repo / "models" / "stylegan_generator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StyleGANGenerator


def tf_variables(ref) -> dict:
    """The reference's weights under NVIDIA's TF names and layouts (its converter, inverted)."""
    out = {}
    state = ref.state_dict()
    for pth, tf in ref.pth_to_tf_var_mapping.items():
        v = state[pth].clone()
        if "weight" in tf and not ("Noise" in tf or "LabelConcat" in tf):
            v = v.permute(1, 0) if ("Dense" in tf or "StyleMod" in tf) else v.permute(2, 3, 1, 0)  # -> [in, out] / HWIO
        prefix = {"mapping": "mapping/", "synthesis": "synthesis/", "truncation": ""}[pth.split(".")[0]]
        out[prefix + tf] = v.numpy()
    return out


def genforce_table(repo: Path, seed: int) -> None:
    Reference = genforce_generator_class(repo)
    small = dict(z_space_dim=32, w_space_dim=32, mapping_layers=4, mapping_fmaps=48, fmaps_base=2048, fmaps_max=64)
    cases = [(256, "auto", small), (64, True, small), (32, False, small), (1024, "auto", {})]
    print("NVIDIA TF variables: stylelift vs genforce")
    print("| resolution | fused_scale | max abs diff ws | max abs diff image (z, psi 0.7) | max abs diff image (random W+) | image std |")
    print("|---|---|---|---|---|---|")
    for case, (res, fused, kw) in enumerate(cases):
        ref = Reference(res, fused_scale=fused, **kw).eval()
        torch.manual_seed(seed + case)  # the draws below do not depend on how either network initialises itself
        with torch.no_grad():
            for name, t in list(ref.named_parameters()) + list(ref.named_buffers()):
                if not name.endswith(("lod", "kernel")):  # the blur kernel and the level of detail stay as they are
                    t.copy_(torch.randn_like(t) * (0.5 if "bias" in name else 1.0))
        variables = tf_variables(ref)
        settings = dict(resolution=res, num_channels=3, label_size=0, fused_scale=fused, latent_size=kw.get("z_space_dim", 512),
                        dlatent_size=kw.get("w_space_dim", 512), mapping_layers=kw.get("mapping_layers", 8),
                        mapping_fmaps=kw.get("mapping_fmaps", 512))  # fmt: skip
        cfg = _config("parity", settings, variables)
        G = StyleGAN(cfg).eval()
        G.load_state_dict(_state("parity", cfg, variables), strict=True)
        torch.manual_seed(seed + 100 + case)
        z = torch.randn(4, cfg.z_dim)
        wp = torch.randn(2, cfg.num_ws, cfg.w_dim)
        with torch.no_grad():
            out = ref(z, trunc_psi=0.7, trunc_layers=8, randomize_noise=False)
            ws = G.mapping(z, truncation_psi=0.7, truncation_cutoff=8)
            img = G.synthesis(ws)
            img_wp, ref_wp = G.synthesis(wp), ref.synthesis(wp, None, False)["image"]
        print(
            f"| {res} | {fused} | {(ws - out['wp']).abs().max():.1e} | {(img - out['image']).abs().max():.1e} "
            f"| {(img_wp - ref_wp).abs().max():.1e} | {img.std():.2f} |"
        )


def rosinality_table(repo: Path, seed: int) -> None:
    spec = importlib.util.spec_from_file_location("rosinality_stylegan_model", repo / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("rosinality checkpoints: stylelift vs rosinality's StyledGenerator")
    print("| trained resolution | max abs diff image | rosinality float32 vs float64 | stylelift float32 vs rosinality float64 | image std |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for step in (8, 5, 3):
            g = module.StyledGenerator(512).eval()
            torch.manual_seed(seed + step)
            with torch.no_grad():
                for name, p in g.named_parameters():
                    if name.endswith("bias") or "noise" in name:  # zero at initialisation: give them values
                        p.copy_(torch.randn_like(p) * 0.5)
                for rgb in g.generator.to_rgb[step + 1 :]:
                    rgb.conv.bias.zero_()  # blocks an earlier phase has not trained yet
            path = Path(tmp) / f"train_step-{step}.model"
            sd = g.state_dict()
            torch.save({"generator": sd, "discriminator": {}, "g_optimizer": {}, "d_optimizer": {}, "g_running": sd}, path, _use_new_zipfile_serialization=False)
            G = load_generator(path)
            torch.manual_seed(seed + 100 + step)
            z = torch.randn(2, 512)
            noise = [torch.randn(1, 1, 4 * 2**i, 4 * 2**i) for i in range(step + 1)]
            g64 = copy.deepcopy(g).double()
            with torch.no_grad():
                ref = g(z, noise=noise, step=step, alpha=1.0)
                ref64 = g64(z.double(), noise=[n.double() for n in noise], step=step, alpha=1.0)
                img = G.synthesis(G.mapping(z), noises=[n for n in noise for _ in range(2)])
            print(
                f"| {G.img_resolution} | {(img - ref).abs().max():.1e} | {(ref.double() - ref64).abs().max():.1e} "
                f"| {(img.double() - ref64).abs().max():.1e} | {ref.std():.2f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genforce-repo", type=Path)
    ap.add_argument("--rosinality-repo", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.genforce_repo and not args.rosinality_repo:
        ap.error("give --genforce-repo and/or --rosinality-repo")
    if args.genforce_repo:
        genforce_table(args.genforce_repo, args.seed)
    if args.rosinality_repo:
        rosinality_table(args.rosinality_repo, args.seed)


if __name__ == "__main__":
    main()
