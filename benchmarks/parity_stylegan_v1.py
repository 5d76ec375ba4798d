"""Does stylelift's StyleGAN (v1) give the same images as an independent port of NVIDIA's code?

NVIDIA's StyleGAN is TensorFlow 1 code, which cannot be installed here. genforce's PyTorch port
(`models/stylegan_generator.py` of github.com/genforce/genforce, MIT licence) comes with a converter
that checks it against NVIDIA's TF networks, so it stands in for the reference: random weights go
into genforce's generator, are written out under NVIDIA's TensorFlow variable names (inverting
genforce's own converter), read by stylelift's TF reader (`nvidia_stylegan._config/_state`),
and both render the same z (mapping + truncation psi 0.7 on 8 layers, NVIDIA's default) and the
same random W+ latents, with the networks' stored noise maps.

This is a maintainer's tool, not a test (the test suite has the reference's numbers for one tiny
network). It needs a checkout of genforce; it imports only torch and numpy from it (its
`sync_op` module is replaced by a stand-in).

    python benchmarks/parity_stylegan_v1.py --genforce-repo ~/src/genforce
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genforce-repo", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    Reference = genforce_generator_class(args.genforce_repo)
    torch.manual_seed(args.seed)
    small = dict(z_space_dim=32, w_space_dim=32, mapping_layers=4, mapping_fmaps=48, fmaps_base=2048, fmaps_max=64)
    cases = [(256, "auto", small), (64, True, small), (32, False, small), (1024, "auto", {})]
    print("| resolution | fused_scale | max abs diff ws | max abs diff image (z, psi 0.7) | max abs diff image (random W+) | image std |")
    print("|---|---|---|---|---|---|")
    for res, fused, kw in cases:
        ref = Reference(res, fused_scale=fused, **kw).eval()
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


if __name__ == "__main__":
    main()
