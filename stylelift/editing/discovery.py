"""Directions found without labels: SeFa, the closed-form factorisation of the style affine
weights (Shen & Zhou 2021), and GANSpace's principal components of sampled w (Härkönen et al.
2020), with the spread of w along any direction (GANSpace's unit of edit strength)."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..models.base import check_generator
from ..models.sampling import sampled_w
from .directions import check_count, direction_vector
from .layers import layer_indices


def style_affine_weights(G, layers: Optional[Sequence[int]] = None) -> list[Tensor]:
    """The affine (w -> style) weight matrices [C_i, w_dim] of the chosen ws indices."""
    weights = G.synthesis.style_affine_weights()
    if layers is None:
        return weights
    layers = layer_indices(layers, len(weights))  # not -1 for the last, nor True for 1
    if not layers:
        raise InputError("layers is empty: name the ws whose affines to use, or None for all of them")
    return [weights[i] for i in layers]


def sefa(G, *, layers: Optional[Sequence[int]] = None, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenvectors of A^T A for the stacked affine weights A, each output channel's row
    normalised to unit length (SeFa's normalisation).

    Returns (directions [k, w_dim] unit rows, eigenvalues [k]), k at most w_dim (there are no
    more eigenvectors). Moving w along them changes the
    styles of the chosen layers the most. Each direction's largest entry is positive, as in
    `pca_directions`, so a run gives the same signs on any machine.
    """
    check_generator(G, "sefa(G)")
    check_count("k", k, 1)
    mats = [m.detach().double().cpu() for m in style_affine_weights(G, layers)]
    a = torch.cat(mats, dim=0)  # [sum C_i, w_dim]
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)  # per style channel
    values, vectors = torch.linalg.eigh(a.T @ a)
    order = torch.argsort(values, descending=True)[:k]
    return _signs_fixed(vectors[:, order].T).float().numpy(), values[order].float().numpy()


def _signs_fixed(directions: Tensor) -> Tensor:
    """Eigenvectors [k, w_dim] with each one's largest entry positive (an eigensolver may return either sign)."""
    largest = directions.gather(1, directions.abs().argmax(1, keepdim=True))
    return directions * largest.sign()


def _sampled_w(G, samples: int, seed: int) -> Iterator[Tensor]:
    """`sampled_w`, in float64 on the CPU."""
    return (w.double().cpu() for w in sampled_w(G, samples, seed))


def pca_directions(G, *, samples: int = 10_000, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of mapped w (GANSpace): (directions [k, w_dim], explained variance [k]).

    The covariance is summed a batch at a time, so any number of samples takes w_dim^2 memory (not
    samples x w_dim: 41 GB for 10 million). Each direction's largest entry is positive, so a run
    gives the same signs on any machine. There are min(k, samples - 1, w_dim) of them: samples
    w span no more directions than that."""
    check_generator(G, "pca_directions(G)")
    check_count("k", k, 1)
    check_count("samples", samples, 2)
    shift = total = outer = None
    for w in _sampled_w(G, samples, seed):
        if shift is None:  # sums about the first batch's mean stay well conditioned in float64
            shift, total, outer = w.mean(0), torch.zeros(w.shape[1], dtype=torch.float64), torch.zeros(w.shape[1], w.shape[1], dtype=torch.float64)
        w = w - shift
        total += w.sum(0)
        outer += w.T @ w
    mean = total / samples
    values, vectors = torch.linalg.eigh((outer - samples * torch.outer(mean, mean)) / (samples - 1))
    top = values.argsort(descending=True)[: min(k, samples - 1)]
    return _signs_fixed(vectors[:, top].T).float().numpy(), values[top].clamp(min=0).float().numpy()


def w_std_along(G, direction, *, samples: int = 10_000, seed: int = 0) -> float:
    """The standard deviation of the network's w (untruncated) along a direction: GANSpace's unit of
    edit strength, so that strength 1 is as far as w commonly varies that way, whatever the
    direction (on the bundled network w's spread is 2.8 along the first PCA component, 0.06 along
    the last; a unit vector does not say)."""
    check_generator(G, "w_std_along(G, direction)")
    check_count("samples", samples, 2)
    d = direction_vector(direction, G.w_dim)
    d = d / d.norm()
    along = torch.cat([w @ d for w in _sampled_w(G, samples, seed)])
    return float(along.std())
