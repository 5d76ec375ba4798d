"""Generators and their checkpoint formats, the ResNet encoder, the perceptual (VGG16, LPIPS), dlib face and attribute networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy_attributes

_PUBLIC = {  # name -> the module that defines it; imported on first use, as the package's (`stylelift`)
    "BUNDLED_NETWORK": "checkpoint",
    "NAMED_NETWORKS": "checkpoint",
    "estimate_w_avg": "checkpoint",
    "load_generator": "checkpoint",
    "network_id": "checkpoint",
    "save_generator": "checkpoint",
    "MappedGenerator": "base",
    "StyleGAN": "stylegan",
    "StyleGANConfig": "stylegan",
    "Generator": "stylegan2",
    "StyleGAN2Config": "stylegan2",
    "frozen_weights_kept": "stylegan2",
}


__getattr__ = _lazy_attributes(__name__, _PUBLIC)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:
    from .base import MappedGenerator
    from .checkpoint import BUNDLED_NETWORK, NAMED_NETWORKS, estimate_w_avg, load_generator, network_id, save_generator
    from .stylegan import StyleGAN, StyleGANConfig
    from .stylegan2 import Generator, StyleGAN2Config, frozen_weights_kept


def describe_generator(G) -> dict:
    """Facts about a loaded generator, for `stylelift info`."""
    from .checkpoint import network_id

    cfg = G.config
    arch = {"stylegan2": f"StyleGAN2 ({getattr(cfg, 'architecture', '?')})", "stylegan": "StyleGAN (v1: AdaIN styles)"}
    facts = {
        "source": getattr(G, "source", "?"),
        "format": getattr(G, "source_format", "?"),
        "architecture": arch.get(G.family, type(G).__name__),
        "resolution": f"{G.img_resolution}x{G.img_resolution}, {G.img_channels} channels",
        "z_dim / w_dim": f"{G.z_dim} / {G.w_dim}",
        "c_dim": G.c_dim,
        "num_ws": G.num_ws,
        "mapping": f"{cfg.mapping_layers} layers"
        + (f", lr multiplier {cfg.mapping_lr_multiplier:g}" if hasattr(cfg, "mapping_lr_multiplier") else ""),
        "channels": ", ".join(f"{r}:{c}" for r, c in cfg.block_channels.items()),
    }
    if G.family == "stylegan":
        fused = [r for r in cfg.block_resolutions[1:] if r >= cfg.fused_min_resolution]
        facts["up-sampling"] = ", ".join(
            ([f"fused (transposed conv) at {', '.join(map(str, fused))} px"] if fused else [])
            + [f"blur {list(cfg.blur_filter)}" if cfg.blur_filter else "no blur"]
            + (["conv bias before the blur"] if cfg.bias_before_blur else [])
        )
        facts["instance norm eps"] = f"{cfg.instance_norm_eps:g}"
    else:
        facts["conv_clamp"] = getattr(cfg, "conv_clamp", None)
    facts.update({
        "noise inputs": len(G.synthesis.noise_layers()),
        "parameters": f"{sum(p.numel() for p in G.parameters()):,}",
        "network id": network_id(G),
    })  # fmt: skip
    for k, v in (getattr(G, "source_info", None) or {}).items():
        facts[f"{k} (in the file)" if k in facts else k] = v  # e.g. the file's "source" next to its name
    return facts


__all__ = [
    "Generator",
    "MappedGenerator",
    "StyleGAN",
    "StyleGAN2Config",
    "StyleGANConfig",
    "BUNDLED_NETWORK",
    "NAMED_NETWORKS",
    "describe_generator",
    "estimate_w_avg",
    "frozen_weights_kept",
    "load_generator",
    "network_id",
    "save_generator",
]
