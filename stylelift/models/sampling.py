"""A network's w as a whole: random z from a seeded generator of their own (never torch's global
one), a conditional network's classes drawn alike, mapped without truncation, a batch at a time.
What w_avg, the projector's w statistics, PCA directions and w's spread along a direction are
measured on."""

from __future__ import annotations

import hashlib
import weakref
from typing import Iterator, Optional

import torch
from torch import Tensor

from .base import check_seed

W_STAT_SAMPLES = 10_000  # what the projector's w_avg and w_std are measured on
W_STAT_SEED = 123


def random_labels(G, n: int, generator: torch.Generator, device) -> Optional[Tensor]:
    """One-hot labels [n, c_dim] of classes drawn uniformly, for sampling a conditional network as a
    whole (PCA, encoder training); None, and no draw, for unconditional networks."""
    if G.c_dim == 0:
        return None
    classes = torch.randint(G.c_dim, [n], generator=generator)
    return torch.nn.functional.one_hot(classes, G.c_dim).float().to(device)


def sampled_w(G, samples: int, seed: int, *, batch: int = 1000) -> Iterator[Tensor]:
    """w [n, w_dim] (the mapping's dtype, on the network's device) of `samples` random z, `batch` at
    a time. Each batch draws its z [n, z_dim] on the CPU, then its labels, from one generator
    seeded `seed`, so a seed gives the same w on any device; for an unconditional network also for
    any `batch` (a conditional one's labels are drawn between the batches' z)."""
    gen = torch.Generator().manual_seed(check_seed(seed))
    device = G.mapping.w_avg.device
    for start in range(0, samples, batch):
        z = torch.randn([min(batch, samples - start), G.z_dim], generator=gen)
        c = random_labels(G, len(z), gen, device)
        with torch.no_grad():
            w = G.mapping(z.to(device), c)[:, 0]
        yield w  # outside the no_grad block, which would hold for the caller between batches


_w_stats: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, Tensor, float]]" = weakref.WeakKeyDictionary()


def w_statistics(G, samples: int = W_STAT_SAMPLES, seed: int = W_STAT_SEED) -> tuple[Tensor, float]:
    """(w_avg [w_dim], w_std scalar) from mapped samples, cached per network while its mapping
    weights, device and these arguments stay the same. The weights are compared by content (4 ms
    for the bundled network's 2.1 M): one written through `.data` is a change torch does not count."""
    device = G.w_avg.device
    digest = hashlib.sha1()
    for p in G.mapping.parameters():
        digest.update(p.detach().cpu().reshape(-1).view(torch.uint8).numpy())
    key = (device, samples, seed, digest.hexdigest())
    cached = _w_stats.get(G)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    w = torch.cat([w.float() for w in sampled_w(G, samples, seed)])
    w_avg = w.mean(0)
    w_std = float(((w - w_avg).square().sum() / samples) ** 0.5)
    _w_stats[G] = (key, w_avg, w_std)
    return w_avg, w_std
