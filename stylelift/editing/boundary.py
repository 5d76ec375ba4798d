"""InterFaceGAN's boundaries (Shen et al. 2020): a linear classifier on labelled w, whose
hyperplane's unit normal is the edit direction; its held-out accuracy says how linear the
attribute is in W."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, is_real
from .directions import check_count, direction_vector

HOLDOUT = 0.2  # the share of labelled latents a boundary's accuracy is measured on


def held_out_count(n: int, holdout: float = HOLDOUT) -> int:
    """How many of n labelled latents `fit_boundary` holds out."""
    return int(round(n * holdout))


def fit_boundary(w: np.ndarray, labels: np.ndarray, *, holdout: float = HOLDOUT, l2: float = 1e-3, seed: int = 0) -> tuple[np.ndarray, float]:
    """Logistic regression on w -> binary label; returns (unit normal [1, w_dim], held-out accuracy).

    The normal points toward label 1. Features are centred; the boundary is fitted by L-BFGS.
    """
    w, y, train, test = _labelled_split(w, labels, holdout, l2, seed)
    mean = w[train].mean(0)
    if not np.abs(w[train] - mean).max() > 1e-9 * np.abs(w[train]).max():  # (the mean of equal values may differ from them in the last bit)
        raise InputError(f"the {len(train)} labelled latents the boundary is fitted on are all the same: there is no direction between them")
    coef, bias = _logistic(w[train] - mean, y[train], l2)
    if not np.isfinite(coef).all() or not np.linalg.norm(coef) > 0:
        raise InputError("the labelled latents do not separate: the boundary has no direction")
    accuracy = float(((((w[test] - mean) @ coef + bias) > 0) == (y[test] > 0.5)).mean()) if len(test) else float("nan")
    return (coef / np.linalg.norm(coef)).astype(np.float32)[None], accuracy


def held_out_accuracy(w: np.ndarray, labels: np.ndarray, normal, *, holdout: float = HOLDOUT, seed: int = 0) -> float:
    """How well a given normal (a conditioned one, say) separates the labels, pointing the way it
    does (toward label 1): only the boundary's offset along it is fitted, the threshold that
    classifies the part `fit_boundary` fits on (same `holdout` and `seed`) best; the accuracy is
    that on the held-out part (NaN when nothing is held out). A normal pointing toward label 0
    does no better than always answering one label."""
    w, y, train, test = _labelled_split(w, labels, holdout, 0.0, seed)
    n = direction_vector(normal, w.shape[1], what="the normal").numpy()
    along = (w - w[train].mean(0)) @ (n / np.linalg.norm(n))
    threshold = _best_threshold(along[train], y[train] > 0.5)
    if not len(test):
        return float("nan")
    return float(((along[test] > threshold) == (y[test] > 0.5)).mean())


def _best_threshold(x: np.ndarray, positive: np.ndarray) -> float:
    """The t for which `x > t` agrees with `positive` most often (the middle of the best gap)."""
    order = np.argsort(x, kind="stable")
    xs, pos = x[order], positive[order]
    # with the threshold just below xs[i], the first i are called negative: right are the negatives
    # among them and the positives from i on
    right = np.concatenate([[0], np.cumsum(~pos)]) + np.concatenate([np.cumsum(pos[::-1])[::-1], [0]])
    middles = (xs[:-1] + xs[1:]) / 2
    middles = np.where(middles < xs[1:], middles, xs[:-1])  # values a float apart: the middle rounds onto the upper one
    gaps = np.concatenate([[np.nextafter(xs[0], -np.inf)], middles, [xs[-1]]])  # (all called positive; none)
    between_values = np.concatenate([[True], xs[1:] != xs[:-1], [True]])  # no threshold splits equal values
    return float(gaps[int(np.argmax(np.where(between_values, right, -1)))])


def _labelled_split(w, labels, holdout, l2, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked w [N, w_dim] and 0/1 labels [N] as float64, and the (train, test) indices of a seeded split."""
    check_count("seed", seed, 0)
    if not (is_real(holdout) and 0 <= holdout < 1) or not (is_real(l2) and l2 >= 0):
        raise InputError(f"holdout must be a fraction in [0, 1) and l2 a finite number >= 0, got {holdout!r:.20} and {l2!r:.20}")
    w = np.asarray(w.detach().cpu() if isinstance(w, Tensor) else w, dtype=np.float64)
    y = np.asarray(labels).astype(np.float64).reshape(-1)
    if w.ndim != 2 or w.shape[0] != y.shape[0]:
        raise InputError(f"need w [N, w_dim] and N labels, got {list(w.shape)} and {y.shape[0]}")
    if not set(np.unique(y)) <= {0.0, 1.0} or len(np.unique(y)) < 2:
        raise InputError("labels must be 0/1 with both classes present")
    if not np.isfinite(w).all():
        raise InputError("the labelled latents hold NaN or infinite values")
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = held_out_count(len(y), holdout)
    test, train = order[:n_test], order[n_test:]
    if len(np.unique(y[train])) < 2:
        raise InputError(f"the {len(train)} latents the boundary is fitted on (held out: {n_test}) are all of one class; label more of the other")
    return w, y, train, test


def _logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression x [N, D] -> y [N] in {0, 1} by L-BFGS, with an L2 penalty on the
    coefficients (not the bias): (coefficients [D], bias)."""
    x, t = torch.from_numpy(x), torch.from_numpy(y)
    coef = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ coef + bias, t) + l2 * coef.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return coef.detach().numpy(), float(bias.detach())
