"""Generators, checkpoint formats, and (later) encoders and perceptual networks."""

from .checkpoint import NAMED_NETWORKS, estimate_w_avg, load_generator, network_id, save_generator
from .stylegan2 import Generator, StyleGAN2Config


def describe_generator(G) -> dict:
    """Facts about a loaded generator, for `stylelift info`."""
    cfg = G.config
    channels = cfg.block_channels
    facts = {
        "source": getattr(G, "source", "?"),
        "format": getattr(G, "source_format", "?"),
        "architecture": f"StyleGAN2 ({cfg.architecture})",
        "resolution": f"{cfg.img_resolution}x{cfg.img_resolution}, {cfg.img_channels} channels",
        "z_dim / w_dim": f"{cfg.z_dim} / {cfg.w_dim}",
        "c_dim": cfg.c_dim,
        "num_ws": G.num_ws,
        "mapping": f"{cfg.mapping_layers} layers, lr multiplier {cfg.mapping_lr_multiplier:g}",
        "channels": ", ".join(f"{r}:{c}" for r, c in channels.items()),
        "conv_clamp": cfg.conv_clamp,
        "noise inputs": len(G.synthesis.noise_layers()) if cfg.use_noise else 0,
        "parameters": f"{sum(p.numel() for p in G.parameters()):,}",
        "network id": network_id(G),
    }
    for k, v in (getattr(G, "source_info", None) or {}).items():
        facts[k] = v
    return facts


__all__ = [
    "Generator",
    "StyleGAN2Config",
    "NAMED_NETWORKS",
    "describe_generator",
    "estimate_w_avg",
    "load_generator",
    "network_id",
    "save_generator",
]
