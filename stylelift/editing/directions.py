"""Edit directions in W: saved as InterFaceGAN boundaries (`.npy` [1, w_dim]) with a JSON sidecar.

Ways to get one:
- `fit_boundary`: a linear classifier on labelled w (InterFaceGAN, Shen et al. 2020); the unit
  normal of its hyperplane is the direction, its held-out accuracy says how linear the attribute is;
- `condition`: remove the component along another direction (InterFaceGAN's conditional edit);
- `sefa`: closed-form factorisation of the style affine weights (Shen & Zhou 2021);
- `pca_directions`: principal components of sampled w (GANSpace, Härkönen et al. 2020).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, describe, first_line
from ..fileio import atomic_path, parse_json, special_file, to_json
from ..models.base import is_real, is_whole
from ..models.sampling import sampled_w
from .layers import layer_indices


@dataclass
class Direction:
    vector: np.ndarray  # [1, w_dim], unit length
    meta: dict = field(default_factory=dict)  # network id, method, attribute, accuracy, ...

    @property
    def default_layers(self) -> Optional[str]:
        """The layers (`parse_layers` spec) the edit is meant for, when the sidecar names them
        (a spec such as "middle,fine" or "4-7", or a list of ws indices)."""
        layers = self.meta.get("layers")
        if layers is None or layers == [] or (isinstance(layers, str) and not layers.strip()):
            return None  # none named: every layer
        if isinstance(layers, str):
            return layers
        if isinstance(layers, list) and layers and all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
            return ",".join(str(v) for v in layers)
        raise InputError(f'the direction\'s layers are given as {layers!r:.40}; use a spec such as "4-7" or a list of indices')


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _check_count(name: str, value, lowest: int) -> None:
    if not is_whole(value) or value < lowest:
        raise InputError(f"{name} must be a whole number >= {lowest}, got {value!r:.20}")


def save_direction(path: str | os.PathLike, direction: Direction) -> None:
    """Write DIR.npy (the vector, made unit length) and DIR.json as a pair: both are written to
    temporary files first and renamed only when both are whole (what `load_direction` refuses is
    not written). Non-finite numbers in the meta are written as null (JSON has no NaN)."""
    path = Path(path)
    vec = direction.vector.detach().float().cpu().numpy() if isinstance(direction.vector, Tensor) else direction.vector
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim < 1 or vec.size != vec.shape[-1] or not np.isfinite(vec).all() or not vec.any():  # [w_dim], [1, w_dim], [1, 1, w_dim] ...
        raise InputError(f"a direction is one finite, non-zero vector [1, w_dim], got {list(vec.shape)}")
    if not isinstance(direction.meta, dict):
        raise InputError(f"a direction's meta is a dict, got {type(direction.meta).__name__}")
    for target in (path, _sidecar(path)):
        if target.is_dir():
            raise InputError(f"{target} is a folder; name the direction file to write")
    vec = vec / np.abs(vec).max()  # scaled first, as load_direction does
    vec = (vec / np.linalg.norm(vec)).astype(np.float32).reshape(1, -1)
    meta = to_json(direction.meta, what="the direction's meta", indent=2) + "\n"
    with atomic_path(path) as tmp, atomic_path(_sidecar(path)) as tmp_meta:  # renamed in turn once both are written
        with open(tmp, "wb") as f:  # a file object: np.save adds no .npy to the name
            np.save(f, vec)
        tmp_meta.write_text(meta)


def load_direction(path: str | os.PathLike, *, w_dim: Optional[int] = None) -> Direction:
    """Read an InterFaceGAN-style boundary `.npy` ([1, w_dim] or [w_dim]) and its sidecar, if any."""
    path = Path(path)
    if w_dim is not None and (not is_whole(w_dim) or w_dim < 1):
        raise InputError(f"w_dim must be a whole number >= 1 (G.w_dim), got {w_dim!r:.20}")
    if not path.exists():
        raise FileNotFoundError(f"no direction file {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a direction file (.npy)")
    if special_file(path):  # a named pipe would be waited on forever
        raise InputError(f"{path.name} is not a regular file, not a direction file (.npy)")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic == b"\x93NUMPY":  # refuse a header that claims more than the file holds before numpy allocates it
                f.seek(0)
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > path.stat().st_size - f.tell():
                    raise InputError(f"{path.name} claims an array {list(shape)} ({claimed:,} bytes) but holds less; the file is damaged")
        vec = np.load(path, allow_pickle=False) if magic[:2] == b"PK" or magic == b"\x93NUMPY" else None  # numpy tries anything else as a pickle
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path.name} is not a readable .npy direction ({first_line(e)})") from None
    if vec is None:
        raise InputError(f"{path.name} is not a .npy file (a direction is one array [1, w_dim], as np.save writes it)")
    if not isinstance(vec, np.ndarray):  # an .npz archive
        vec.close()
        raise InputError(f"{path.name} is an .npz archive; a direction is one .npy array [1, w_dim]")
    if vec.ndim == 1:
        vec = vec[None]
    if vec.ndim != 2 or vec.shape[0] != 1 or vec.shape[1] == 0 or not np.issubdtype(vec.dtype, np.floating):
        raise InputError(f"{path.name} must hold a float array [1, w_dim], got {vec.dtype} {list(vec.shape)}")
    if w_dim is not None and vec.shape[1] != w_dim:
        raise InputError(f"{path.name} is a direction in {vec.shape[1]}-D, but this network's w has {w_dim} dimensions")
    vec = vec.astype(np.float64)
    if not np.isfinite(vec).all():
        raise InputError(f"{path.name} holds NaN or infinite values")
    peak = float(np.abs(vec).max())
    if peak == 0:
        raise InputError(f"{path.name} is a zero vector: it points nowhere")
    vec = vec / peak  # only its direction counts: scaled first, values near float32's limits neither overflow nor vanish
    meta = {}
    sidecar = _sidecar(path)
    if special_file(sidecar) or sidecar.is_dir():
        raise InputError(f"{sidecar.name}, the sidecar of {path.name}, is not a regular file; move it away")
    if sidecar.exists():  # it names the network and the layers, so a damaged one is not passed over
        try:
            meta = parse_json(sidecar.read_text(encoding="utf-8-sig"))  # -sig: also with a byte-order mark
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{sidecar.name}, the sidecar of {path.name}, is not readable JSON ({first_line(e)}); repair or delete it") from None
        if not isinstance(meta, dict):
            raise InputError(f"{sidecar.name}, the sidecar of {path.name}, holds a JSON {type(meta).__name__}, not an object; repair or delete it")
    return Direction((vec / np.linalg.norm(vec)).astype(np.float32), meta)


def direction_vector(direction, w_dim: Optional[int] = None, *, what: str = "the direction") -> Tensor:
    """A direction as a float64 CPU vector [w_dim], checked: a `Direction`, or one vector ([w_dim],
    [1, w_dim]) as a tensor or array, finite and not zero, of `w_dim` numbers when given."""
    if isinstance(direction, Direction):
        direction = direction.vector
    if isinstance(direction, Tensor):
        d = direction.detach()
        if d.is_meta:
            raise InputError(f"{what} is on the meta device: it holds no numbers")
        d = d.cpu()
    else:
        d = torch.as_tensor(np.asarray(direction)) if isinstance(direction, (np.ndarray, list, tuple)) else None
    if d is None or not (d.is_floating_point() or d.dtype in (torch.int32, torch.int64)) or d.ndim < 1 or d.numel() != max(d.shape):  # [w_dim], [1, w_dim], [w_dim, 1]
        shape = list(d.shape) if d is not None else type(direction).__name__
        raise InputError(f"{what} must be one vector of real numbers [1, w_dim], got {shape} (a Direction, a tensor or an array)")
    d = d.double().reshape(-1)
    if w_dim is not None and d.numel() != w_dim:
        raise InputError(f"{what} has {d.numel()} dimensions, the ws have {w_dim}")
    if not torch.isfinite(d).all() or not d.any():
        raise InputError(f"{what} is {'not finite' if not torch.isfinite(d).all() else 'all zeros'}: it points nowhere")
    return d


def apply_direction(ws: Tensor, direction, strength, layers: Optional[Sequence[int]] = None) -> Tensor:
    """ws + strength * direction on `layers` (all when None). ws [N, num_ws, w_dim]; `direction`
    a `Direction` or a vector [1, w_dim]; `strength` a number, or one per sample ([N] or [N, 1, 1], or a list of N).

    A Direction's own layers (its sidecar's, `default_layers`) are not applied here: pass
    `parse_layers(d.default_layers, G.layer_resolutions)` for what `stylelift edit` does."""
    if not isinstance(ws, Tensor) or ws.ndim != 3 or not ws.is_floating_point():
        raise InputError(f"ws must be a float tensor [N, num_ws, w_dim], got {describe(ws)}")
    if not torch.isfinite(ws).all():
        raise InputError("ws hold NaN or infinite values")
    d = direction_vector(direction, ws.shape[-1]).to(ws.device, ws.dtype)  # checked
    if isinstance(direction, Tensor) and direction.requires_grad:  # the caller's own, so that gradients reach it
        d = direction.reshape(-1).to(ws)
    checked = _strength(strength, ws.shape[0])
    if isinstance(strength, Tensor) and strength.requires_grad:  # likewise
        strength = strength.to(ws).reshape(checked.shape)
    else:
        strength = checked.to(ws.device, ws.dtype)
    if layers is not None:
        layers = layer_indices(layers, ws.shape[1])
        if not layers:
            raise InputError("layers is empty: name the ws to edit, or None for all of them")
    out = ws.clone()
    idx = slice(None) if layers is None else torch.as_tensor(layers, dtype=torch.long, device=ws.device)
    out[:, idx] += strength * d
    if not torch.isfinite(out).all():
        raise InputError("the edited ws overflow float: ask for a strength nearer 0")
    return out


INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _strength(strength, n: int) -> Tensor:
    """A strength as a tensor that broadcasts over ws [N, num_ws, w_dim]: a real number, or N of them."""
    if is_real(strength):
        return torch.tensor(float(strength), dtype=torch.float64)
    given = strength
    if isinstance(strength, (list, tuple)) and strength and all(_one_number(s) for s in strength):
        strength = np.array([s.item() if isinstance(s, (Tensor, np.ndarray)) else s for s in strength], dtype=np.float64)  # one per sample, as a list
    if isinstance(strength, (Tensor, np.ndarray)) and not isinstance(strength, bool):
        t = torch.as_tensor(strength).detach().cpu()
        if (t.is_floating_point() or t.dtype in INT_DTYPES) and t.numel() in (1, n):
            if not torch.isfinite(t.double()).all():
                raise InputError(f"strength must be finite numbers, got {f'{given!r:.60}' if isinstance(given, (list, tuple)) else 'NaN or infinity in ' + describe(given)}")
            return t.double().reshape(-1, 1, 1) if t.numel() == n and t.ndim else t.double().reshape(())
    what = f"a list of {len(given)}" if isinstance(given, (list, tuple)) else describe(given)
    raise InputError(f"strength must be a finite number, or one per sample of the {n} ([N], [N, 1, 1] or a list of N numbers), got {what}")


def _one_number(value) -> bool:
    """A real number, or a tensor or array holding one (not a bool)."""
    if isinstance(value, np.ndarray):
        return value.size == 1 and value.dtype.kind in "iuf"
    if isinstance(value, Tensor):
        return value.numel() == 1 and (value.is_floating_point() or value.dtype in INT_DTYPES)
    return isinstance(value, float) or is_real(value)  # NaN is a number here (refused as not finite); 10**400 is not


PARALLEL = 0.01  # conditioning must leave at least this much of the unit direction (an angle of 0.6 degrees)


def condition(primary, other) -> np.ndarray:
    """primary with its component along `other` removed, renormalised (each a `Direction` or a
    vector [1, w_dim]; returns [1, w_dim]). Directions (nearly) parallel are refused: what is left
    of them is rounding, not a direction."""
    p = direction_vector(primary, what="the direction to condition")
    o = direction_vector(other, p.numel(), what="the direction conditioned on")
    p, o = p / p.norm(), o / o.norm()
    cos = float(p @ o)
    p = p - cos * o
    n = p.norm()
    if n < PARALLEL:
        raise InputError(f"the two directions are {'parallel' if n < 1e-8 else 'nearly parallel'} (cosine {cos:.6f}): nothing is left after conditioning but rounding")
    return (p / n).float().numpy()[None]


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
    coef, bias = _logistic(w[train] - mean, y[train], l2)
    if not np.isfinite(coef).all() or not np.linalg.norm(coef) > 0:
        raise InputError("the labelled latents do not separate: the boundary has no direction (are the latents all the same?)")
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
    gaps = np.concatenate([[xs[0] - 1], (xs[:-1] + xs[1:]) / 2, [xs[-1] + 1]])
    return float(gaps[int(np.argmax(right))])


def _labelled_split(w, labels, holdout, l2, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked w [N, w_dim] and 0/1 labels [N] as float64, and the (train, test) indices of a seeded split."""
    _check_count("seed", seed, 0)
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

    Returns (directions [k, w_dim] unit rows, eigenvalues [k]). Moving w along them changes the
    styles of the chosen layers the most. Each direction's largest entry is positive, as in
    `pca_directions`, so a run gives the same signs on any machine.
    """
    _check_count("k", k, 1)
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
    _check_count("k", k, 1)
    _check_count("samples", samples, 2)
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
    _check_count("samples", samples, 2)
    d = direction_vector(direction, G.w_dim)
    d = d / d.norm()
    along = torch.cat([w @ d for w in _sampled_w(G, samples, seed)])
    return float(along.std())
