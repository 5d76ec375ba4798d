"""Training the ResNet encoder on the fly, on images the generator makes from known latents.

Each step samples z, maps it (random truncation, and style mixing for diversity), renders the
image with random noise, and asks the encoder for the ws back. The loss is the latent MSE
(in units of the network's w spread) plus an image reconstruction term: the image rendered from
the predicted ws against the true image, with any of the projector's distance terms (`mse`, ...).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from .errors import CheckpointError, InputError, first_line
from .models.base import synthesize_at
from .models.encoder import Encoder, save_encoder
from .models.sampling import random_labels, w_statistics
from .models.stylegan2 import frozen_weights_kept
from .projector.losses import REGISTRY, LossContext, parse_loss_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTrainOptions:
    steps: int = 20_000
    batch_size: int = 8
    lr: float = 1e-4
    latent_weight: float = 1.0
    image_weight: float = 1.0
    image_loss: str = "mse"  # projector distance terms for the image reconstruction
    truncation: tuple[float, float] = (0.5, 1.0)  # psi drawn uniformly from this range
    mixing_prob: float = 0.5
    render_resolution: int = 256
    checkpoint_every: int = 500
    seed: int = 0


def on_cpu(state):
    """A nested state (an optimizer's) with its tensors on the CPU: a checkpoint written on a GPU
    must load with a plain torch.load on a machine without one; Adam moves them back on resume."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: on_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(on_cpu(v) for v in state)
    return state


def sample_batch(G, n: int, opts: EncoderTrainOptions, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(true ws [n, num_ws, w_dim], images [n, C, R, R] at the render resolution)."""
    device = G.w_avg.device
    z = torch.randn([2, n, G.z_dim], generator=gen).to(device)
    lo, hi = opts.truncation
    psi = (lo + (hi - lo) * torch.rand([n, 1, 1], generator=gen)).to(device)
    c = random_labels(G, n, gen, device)  # a conditional network: each sample its own class
    with torch.no_grad():
        ws = G.mapping(z[0], c)
        if opts.mixing_prob > 0:
            other = G.mapping(z[1], c)
            cut = torch.randint(1, G.num_ws, [n], generator=gen)
            mix = torch.rand([n], generator=gen) < opts.mixing_prob
            take = (torch.arange(G.num_ws)[None] >= cut[:, None]) & mix[:, None]
            ws = torch.where(take[..., None].to(device), other, ws)
        ws = G.w_avg.lerp(ws, psi)
        noises = [torch.randn([n, 1, l.resolution, l.resolution], generator=gen).to(device) for l in G.synthesis.noise_layers()] or None
        images = synthesize_at(G, ws, opts.render_resolution, noises=noises)
    if not torch.isfinite(images).all():  # the network's fault, not the training's nor the encoder's
        raise InputError("the network renders NaN or infinite images from sampled latents: is its file damaged?")
    return ws, images


def train_encoder(
    G,
    encoder: Encoder,
    opts: EncoderTrainOptions,
    *,
    out: Optional[Path] = None,
    state: Optional[dict] = None,
    callback: Optional[Callable[[int, dict], None]] = None,
    stop: Optional[Callable[[], bool]] = None,
) -> dict:
    """Train `encoder` for G in place; returns the training state (also saved in checkpoints).

    `state` (from a checkpoint) resumes: step count, optimizer and random stream continue.
    `stop` is asked after each step: when it says True, the run ends there and writes its
    checkpoint (a Ctrl-C caught by the caller, say); the state returned has "stopped": True.
    A loss or weights that stop being finite end the run with an error, before they are saved.
    """
    device = G.w_avg.device
    optimizer = torch.optim.Adam([p for p in encoder.parameters() if p.requires_grad], lr=opts.lr)
    gen = torch.Generator().manual_seed(opts.seed)
    step, history = _resumed(state, optimizer, gen, name=getattr(out, "name", "the checkpoint")) if state else (0, [])  # before G and the encoder are touched
    _, w_std = w_statistics(G)
    weights = parse_loss_spec(opts.image_loss) if opts.image_weight > 0 else {}
    flags = [p.requires_grad for p in G.parameters()]  # restored in the `finally` below
    G.requires_grad_(False)
    encoder.train()

    def snapshot() -> dict:
        return {
            "step": step, "optimizer": on_cpu(optimizer.state_dict()), "rng": gen.get_state(), "history": history[-1000:],
            "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        }

    saved_at = step if state else None  # the step OUT holds from this run (or the one resumed)

    def kept() -> str:  # what is left of OUT when the run ends in an error
        if out is None:
            return "nothing was saved"
        if saved_at is not None:
            return f"{out.name} keeps its checkpoint of step {saved_at}"
        return f"{out.name} is left as it was" if out.exists() else f"{out.name} was not written"

    def save() -> None:  # float32 weights: a resume from rounded ones would drift
        nonlocal saved_at
        if bad := next((k for k, v in encoder.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()), None):
            raise TrainingDiverged(f"training diverged at step {step}: {bad} is no longer finite; {kept()}; try a lower --lr")
        save_encoder(out, encoder, training=snapshot(), half=False)
        saved_at = step

    with frozen_weights_kept(G):  # G's frozen weights are laid out once for all the steps
        try:
            while step < opts.steps:
                ws, images = sample_batch(G, opts.batch_size, opts, gen)
                loss, record = encoder_loss(G, encoder, ws, images, opts, w_std=w_std, weights=weights, device=device)
                record = {"step": step, **record}
                if not torch.isfinite(loss).all():
                    raise TrainingDiverged(f"training diverged at step {step + 1} (the loss is {float(loss.detach().mean()):g}); {kept()}; try a lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.mean().backward()
                optimizer.step()
                step += 1
                record["loss"] = float(loss.detach().mean())
                history.append(record)
                if callback:
                    callback(step, record)
                stopping = stop is not None and stop() and step < opts.steps
                if out is not None and (step % opts.checkpoint_every == 0 or step == opts.steps or stopping):
                    save()
                if stopping:
                    return {**snapshot(), "stopped": True}
        finally:
            for p, f in zip(G.parameters(), flags):
                p.requires_grad_(f)
            encoder.eval()
    return snapshot()


def _resumed(state: dict, optimizer: torch.optim.Optimizer, gen: torch.Generator, *, name: str) -> tuple[int, list[dict]]:
    """(step, history) of a checkpoint's training state, its optimizer and random stream restored."""
    try:
        step = int(state.get("step", 0))
        if "optimizer" in state:
            settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizer"])
            for group, own in zip(optimizer.param_groups, settings):  # lr, betas, eps, ...: the run's own (checked equal), not the file's
                group.update(own)
        if "rng" in state:
            gen.set_state(state["rng"])
        check_adam_state(optimizer)
        history = state.get("history", [])
        if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
            raise ValueError("its history is not a list of step records")
        return step, list(history)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:  # (a step of inf: OverflowError)
        raise CheckpointError(f"{name}: its training state cannot be resumed ({type(e).__name__}: {first_line(e)})") from None


def encoder_loss(G, encoder: Encoder, ws: Tensor, images: Tensor, opts: EncoderTrainOptions, *, w_std: float, weights: dict[str, float], device) -> tuple[Tensor, dict]:
    """One batch's loss [N] and its terms' means: the latent distance of the encoder's guess for
    `images` [N, 3, R, R] to their `ws` [N, num_ws, w_dim], in units of w's variance per dim, plus,
    with `weights`, the image terms between its rendering and the images."""
    pred = encoder(images)
    latent = (pred - ws).square().mean(dim=[1, 2]) / (w_std**2 / G.w_dim)
    loss = opts.latent_weight * latent
    record = {"latent": float(latent.detach().mean())}
    if weights:
        recon = synthesize_at(G, pred, opts.render_resolution)
        image_term = sum(w * REGISTRY[name](images, LossContext(device))(recon) for name, w in weights.items())
        loss = loss + opts.image_weight * image_term
        record["image"] = float(image_term.detach().mean())
    return loss, record


class TrainingDiverged(InputError):
    """The loss or the weights stopped being finite."""


def check_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """An optimizer state loaded from a file fits its parameters: each moment the parameter's
    shape, every number finite, the second moments not negative (else the first step would fail, or
    train on NaN)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"its {key} is a {type(value).__name__}, not a tensor")
                if key != "step" and tuple(value.shape) != tuple(p.shape):
                    raise ValueError(f"its {key} has shape {list(value.shape)}, not its parameter's {list(p.shape)}")
                if not torch.isfinite(value).all() or (key in ("step", "exp_avg_sq", "max_exp_avg_sq") and (value < 0).any()):
                    raise ValueError(f"its {key} holds {'NaN or infinite' if not torch.isfinite(value).all() else 'negative'} values")


@torch.no_grad()
def held_out_error(G, encoder: Encoder, *, samples: int = 16, seed: int = 10_000, resolution: int = 256) -> dict:
    """Latent and image MSE of the encoder's guess vs w_avg's, on freshly sampled images."""
    opts = EncoderTrainOptions(mixing_prob=0.0, render_resolution=resolution, truncation=(0.7, 0.7))
    ws, images = sample_batch(G, samples, opts, torch.Generator().manual_seed(seed))
    pred = encoder(images)
    avg = G.w_avg.reshape(1, 1, -1).expand_as(ws)
    rec_pred = synthesize_at(G, pred, resolution)
    rec_avg = synthesize_at(G, avg, resolution)
    return {
        "latent_mse_encoder": float((pred - ws).square().mean()),
        "latent_mse_w_avg": float((avg - ws).square().mean()),
        "image_mse_encoder": float((rec_pred - images).square().mean()),
        "image_mse_w_avg": float((rec_avg - images).square().mean()),
    }


@dataclass(frozen=True)
class FaceEncoderFitOptions:
    samples: int = 3000
    rank: int = 128  # rank of the linear head (full rank is 1536 x num_ws * w_dim numbers)
    ridge: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # penalties tried, per sample and standardised feature
    held_out: float = 0.2  # share of the samples that picks the penalty (then all are used for the fit)
    batch_size: int = 16
    render_resolution: int = 256
    seed: int = 0

    def __post_init__(self):
        from .models.encoder import face_feature_count

        if not 10 <= self.samples <= MAX_FIT_SAMPLES:
            raise InputError(f"fitting needs 10 to {MAX_FIT_SAMPLES} samples, got {self.samples}")
        if not 1 <= self.rank <= face_feature_count():
            raise InputError(f"the head's rank must be 1 to {face_feature_count()} (the number of features), got {self.rank}")
        if not 0 < self.held_out < 1 or self.batch_size < 1:
            raise InputError("held_out must be between 0 and 1 and batch_size at least 1")
        if not self.ridge or not all(p > 0 for p in self.ridge):
            raise InputError("ridge needs at least one penalty, all positive")


MAX_FIT_SAMPLES = 10_000  # the fit keeps every target in memory: 11,776 float64s each on the bundled network (0.9 GB)


def fit_face_encoder(G, opts: FaceEncoderFitOptions = FaceEncoderFitOptions(), *, callback: Optional[Callable[[int], None]] = None) -> tuple[Encoder, dict]:
    """A dlib-face encoder for G, its linear head fitted by ridge regression on generated images.

    Renders `opts.samples` images from known latents (the trainer's truncation and style mixing),
    reads their face features, and solves for the head that predicts ws - w_avg. The penalty is
    picked on a held-out share; the head is then refitted on every sample and reduced to
    `opts.rank` (reduced-rank regression: the fitted values' top singular directions).
    Returns (encoder, report) where the report has the held-out latent errors as fractions of
    w_avg's (the constant guess), full rank and reduced.
    """
    from .models.encoder import FACE_BACKBONE, new_encoder

    encoder = new_encoder(G, backbone=FACE_BACKBONE, input_resolution=opts.render_resolution, head_rank=opts.rank)
    sampling = EncoderTrainOptions(render_resolution=opts.render_resolution)
    gen = torch.Generator().manual_seed(opts.seed)
    feats, targets = [], []
    for done in range(0, opts.samples, opts.batch_size):
        ws, images = sample_batch(G, min(opts.batch_size, opts.samples - done), sampling, gen)
        feats.append(encoder.features(images).double().cpu())  # raw: its standardisation is still the identity
        targets.append((ws - G.w_avg).flatten(1).double().cpu())
        if callback:
            callback(done + len(ws))
    X, Y = torch.cat(feats), torch.cat(targets)  # [S, F], [S, num_ws * w_dim]
    split = max(1, int(len(X) * (1 - opts.held_out)))

    def solve(X: Tensor, Y: Tensor, penalty: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mean, std = X.mean(0), X.std(0).clamp_min(1e-6)
        Xs, y_mean = (X - mean) / std, Y.mean(0)
        A = Xs.T @ Xs + penalty * len(X) * torch.eye(X.shape[1], dtype=X.dtype)
        return torch.linalg.solve(A, Xs.T @ (Y - y_mean)), mean, std, y_mean

    def error(W, mean, std, y_mean, X, Y) -> float:  # as a fraction of the constant guess's (w_avg)
        return float(((X - mean) / std @ W + y_mean - Y).square().mean() / Y.square().mean())

    tried = {p: error(*solve(X[:split], Y[:split], p), X[split:], Y[split:]) for p in opts.ridge}
    penalty = min(tried, key=tried.get)
    W, mean, std, y_mean = solve(X[:split], Y[:split], penalty)
    rank = min(opts.rank, len(X) - 1, *W.shape)  # centred features of S samples span S - 1 directions at most
    down, up = _reduce_rank(W, (X[:split] - mean) / std, rank)
    report = {"samples": len(X), "penalty": penalty, "rank": rank, "held_out_error": tried[penalty],
              "held_out_error_reduced": error(down @ up, mean, std, y_mean, X[split:], Y[split:]),
              "tried": [[p, e] for p, e in tried.items()],  # (a list: checkpoints allow only str and int keys)
              "options": {**dataclasses.asdict(opts), "ridge": list(opts.ridge)}}
    W, mean, std, y_mean = solve(X, Y, penalty)
    down, up = _reduce_rank(W, (X - mean) / std, rank)
    if rank < opts.rank:
        log.warning("the head's rank is %d, not %d: %d samples give no more directions", rank, opts.rank, len(X))
        encoder = new_encoder(G, backbone=FACE_BACKBONE, input_resolution=opts.render_resolution, head_rank=rank)
    with torch.no_grad():
        encoder.feature_mean.copy_(mean.float())
        encoder.feature_std.copy_(std.float())
        encoder.head[0].weight.copy_(down.T.float())  # [rank, F]
        encoder.head[1].weight.copy_(up.T.float())  # [num_ws * w_dim, rank]
        encoder.head[1].bias.copy_(y_mean.float())
    log.info("fitted a face encoder on %d samples: held-out latent error %.3f of w_avg's (penalty %g)", len(X), tried[penalty], penalty)
    return encoder.eval(), report


def _reduce_rank(W: Tensor, Xs: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """W [F, O] -> (W V, V^T) with V [O, rank] (or fewer where Xs W has fewer) the top right singular
    vectors of the fitted values Xs W."""
    _, R = torch.linalg.qr(Xs)  # Xs W = Q (R W), so R W has the fitted values' singular directions
    _, _, Vh = torch.linalg.svd(R @ W, full_matrices=False)
    V = Vh[:rank].T
    return W @ V, V.T
