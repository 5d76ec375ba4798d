"""Projection: find the latents (and noise maps) whose image matches a target, generator frozen.

Follows NVIDIA's projector (Karras et al. 2020, §5 / stylegan2-ada-pytorch `projector.py`): Adam
with a ramped learning rate, optional Gaussian noise on w that decays over the first 3/4 of the
run, a noise-map regulariser and per-step renormalisation, w statistics from 10,000 mapped samples.
Differences, on purpose: the noise on w is off by default (NVIDIA's 0.05 is one option away; see
`ProjectionOptions`); W+ as well as W (in W+ each layer's w gets its own decaying noise, as in
rosinality's W+ projector; in W one noise vector serves every layer, as in NVIDIA's); the
optimised noise maps are returned (so the saved latent + noise re-render the reconstruction
exactly); a batch of targets is optimised together with per-sample losses and per-sample random
streams, so each result equals projecting it alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..devices import device_named, same_device
from ..errors import InputError, is_real, is_whole
from ..models.base import check_generator, check_images, check_noises, check_seed, synthesize_at
from ..models.sampling import w_statistics
from ..models.stylegan2 import frozen_weights_kept
from .losses import CombinedLoss, LossContext, parse_loss_spec
from .schedules import lr_at, noise_regularization, normalize_noises_, w_noise_scale_at

log = logging.getLogger(__name__)

SPACES = ("w", "w+")


@dataclass(frozen=True)
class ProjectionOptions:
    """The optimiser's knobs; the defaults are NVIDIA's, but for the learning rate's shortest ramp-up,
    the noise on w and the result kept (the best state, not the last): each below, with what was measured."""

    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    # NVIDIA's 5% ramp-up is one step in a 20-step run, whose next step at lr 0.1 throws away much of
    # an encoder's guess. On the bundled network (4 held-out faces, offline loss) a ramp of at least
    # 10 steps raised the PSNR from the shipped encoder's guess after 10 / 20 / 50 steps from
    # 17.7 / 19.4 / 27.3 to 20.3 / 22.2 / 27.8 dB, and from w_avg from 16.6 / 19.2 / 24.3 to 17.5 / 19.7 / 25.0 dB
    # (runs of 200 steps or more keep NVIDIA's schedule).
    lr_rampup_min_steps: int = 10
    # Noise added to w early on, in units of w_std, decaying to 0 at `noise_ramp` of the run. NVIDIA's
    # projector adds 0.05 (from w_avg, to explore); stylelift adds none unless asked. On the bundled
    # network (benchmarks/projection_quality.py, 500 steps, W+, offline loss) 0.05 lowered the final
    # PSNR of three generated faces from 39.4 / 32.9 / 39.0 to 35.2 / 31.4 / 32.6 dB and made them
    # 2.5-4x slower to reach 30 dB; on real photos it was no better (numbers in the README). From
    # given latents (a latent file, an encoder's guess) it also wipes out the head start.
    initial_noise_factor: float = 0.0
    noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    working_resolution: int = 256  # loss computed at this size (area-downsampled); 0 = full size
    # Each target's result is the state with the lowest distance (the loss without the noise maps'
    # regulariser) among those measured without noise on w: the start, every step, and the state
    # after the last step (measured once more). The last step's state alone (False: NVIDIA's result)
    # can be worse than the start: 5 / 10 steps from a finished 150-step projection of the astronaut,
    # the learning rate ramping up again, ended at 18.2 / 23.8 dB from 27.2.
    keep_best: bool = True

    def __post_init__(self):
        f = self.initial_noise_factor
        if f is None:  # what older versions took for "choose by the start": now always the default
            object.__setattr__(self, "initial_noise_factor", 0.0)
        elif not is_real(f) or f < 0:
            raise InputError(f"initial_noise_factor must be a finite number >= 0, got {f!r:.30}")
        # lr 0 keeps the start (tests use it); ramps are fractions of the run (beyond 1: unfinished at the end)
        for name in ("lr", "lr_rampup", "lr_rampdown", "noise_ramp", "noise_reg_weight"):
            v = getattr(self, name)
            if not is_real(v) or v < 0 or (name == "noise_ramp" and v == 0):  # the w noise decays over noise_ramp: never 0
                raise InputError(f"{name} must be a finite number {'>' if name == 'noise_ramp' else '>='} 0, got {v!r:.30}")
        if not is_whole(self.lr_rampup_min_steps) or self.lr_rampup_min_steps < 0:
            raise InputError(f"lr_rampup_min_steps must be a whole number >= 0, got {self.lr_rampup_min_steps!r:.30}")
        if not isinstance(self.keep_best, (bool, np.bool_)):
            raise InputError(f"keep_best must be True or False, got {self.keep_best!r:.20}")
        r = self.working_resolution
        if not is_whole(r) or r < 0:
            raise InputError(f"working_resolution must be a whole number of pixels >= 0 (0 = full size), got {r!r:.30}")

    def working_size(self, resolution: int) -> int:
        """The side at which a network of `resolution` px is compared with its target."""
        return min(self.working_resolution or resolution, resolution)


@dataclass
class ProjectionResult:
    """What `project` returns: the latents found for each target, the noise maps optimised with
    them, the image they give, and each step's loss terms."""

    ws: Tensor  # [N, num_ws, w_dim]
    noises: Optional[list[Tensor]]  # per noise layer [N, 1, r, r]; None when noise was not optimised
    image: Tensor  # [N, C, H, W]: synthesis(ws, noises) at full resolution, as the network gives it (about [-1, 1], not clipped)
    history: list[dict] = field(default_factory=list)  # per step: lr, loss terms (batch means)
    final_loss: Optional[Tensor] = None  # [N] distance of the returned ws and noise maps (at the working resolution)


StepCallback = Callable[[int, Tensor, dict], None]  # (step, working-res synth [N,C,R,R], losses)



def resized(img: Tensor, size: int) -> Tensor:
    """Images [N, C, R, R] at size x size: area-averaged down (a target, a render), bilinear up."""
    if img.shape[-1] == size:
        return img
    if img.shape[-1] > size:
        return F.interpolate(img, size=(size, size), mode="area")
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def _real_array(x) -> bool:
    try:
        return np.asarray(x).dtype.kind in "fiub"
    except (ValueError, TypeError):  # ragged lists and the like
        return False


def _initial_ws(G, init, n: int, space: str, w_avg: Tensor) -> Tensor:
    """Starting latents [N, 1 or num_ws, w_dim]."""
    if init is None or (isinstance(init, str) and init == "avg"):
        ws = w_avg.reshape(1, 1, -1).repeat(n, 1, 1)
    else:
        real = (not init.is_complex()) if isinstance(init, Tensor) else not isinstance(init, str) and _real_array(init)
        if not real:
            raise InputError(f"init must be 'avg' or latents [N, 1 or {G.num_ws}, {G.w_dim}] (a tensor or an array; a LatentFile's .w), got {type(init).__name__}"
                             + (" (an encoder's guess is a tensor: run the encoder, or `stylelift project --init`)" if isinstance(init, str) else ""))
        if isinstance(init, Tensor) and init.is_meta:
            raise InputError("init is on the meta device: it holds no numbers")
        ws = torch.as_tensor(np.asarray(init) if not isinstance(init, Tensor) else init.detach()).float().to(w_avg.device)
        if ws.ndim == 2:
            ws = ws.unsqueeze(1)
        if ws.ndim != 3 or ws.shape[2] != G.w_dim or ws.shape[1] not in (1, G.num_ws):
            raise InputError(f"init latents must be [N, 1 or {G.num_ws}, {G.w_dim}], got {list(ws.shape)}")
        if ws.shape[0] == 1 and n > 1:
            ws = ws.repeat(n, 1, 1)
        if ws.shape[0] != n:
            raise InputError(f"init holds {ws.shape[0]} latents for {n} targets")
        if not torch.isfinite(ws).all():
            raise InputError("init latents hold NaN or infinite values")
    if space == "w":
        return ws.mean(dim=1, keepdim=True)  # W: one w per sample
    return ws.repeat(1, G.num_ws // ws.shape[1], 1) if ws.shape[1] == 1 else ws


def _synthesise(G, ws: Tensor, noises, working: int) -> Tensor:
    """Image at the working resolution, using a cheaper native output when the network has one."""
    return resized(synthesize_at(G, ws, working, noises=noises), working)  # (enlarged from a smaller network)


def project(
    G,
    target: Tensor,
    *,
    space: str = "w+",
    steps: int = 1000,
    init: Union[None, str, Tensor, np.ndarray] = None,
    optimize_noise: bool = True,
    loss: str = "mse",
    device: Union[None, str, torch.device] = None,
    seed: int = 0,
    options: ProjectionOptions = ProjectionOptions(),
    perceptual_weights: Optional[Path] = None,
    callback: Optional[StepCallback] = None,
    init_noises: Optional[Sequence[Tensor]] = None,
) -> ProjectionResult:
    """Optimise latents so that G's image matches `target` [N, C, H, W] in [-1, 1].

    `loss` names weighted terms ("lpips=1", "mse=1,ms-ssim=1,face=0.1,face-id=0.1", ...); the default
    is plain MSE, which needs nothing; `stylelift project --loss auto` picks LPIPS when its ImageNet
    weights are here, else that offline mix.

    The generator is never modified (its requires_grad flags are restored on exit). Each of the N
    targets gets its own latent, noise maps and random stream seeded with `seed`, so a batch gives
    what N separate calls would (to float rounding: batched convolutions sum in another order).
    It works inside `torch.no_grad()` / `torch.inference_mode()` / `torch.autocast()` too (in float32).

    `init_noises` are the noise maps to start from (a latent file's, one per noise input
    [1 or N, 1, r, r], as `generation.stored_noises` gives them), with `init` its ws: refining a
    projection starts where it ended. Without them the maps start random, as NVIDIA's do. Maps that
    carry image content (optimised without the regulariser) keep it: the result is the state
    nearest the target, and a short refinement rarely finds a nearer one with whiter maps.
    """
    check_generator(G, "project(G, target)")
    if space not in SPACES:
        raise InputError(f"space must be 'w' or 'w+', got {space!r}")
    if not is_whole(steps) or steps < 1:
        raise InputError(f"steps must be a whole number >= 1, got {steps!r:.20}")
    seed = check_seed(seed)  # numpy's ints too
    if not isinstance(loss, str):
        raise InputError(f"loss is a spec such as 'mse=1,ms-ssim=1', got {type(loss).__name__}")
    if not isinstance(options, ProjectionOptions):
        raise InputError(f"options must be a ProjectionOptions, got {type(options).__name__}")
    if not isinstance(optimize_noise, (bool, np.bool_)):
        raise InputError(f"optimize_noise must be True or False, got {optimize_noise!r:.20}")
    if init_noises is not None and not optimize_noise:
        raise InputError("init_noises are the noise maps the optimisation starts from; with optimize_noise=False there is none")
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be a function (step, image, record), got {type(callback).__name__}")
    device = G.w_avg.device if device is None else device_named(device)  # G is there already: the name only (None: wherever G is)
    if any(t.is_inference() for t in (*G.parameters(), *G.buffers())):
        raise InputError("the generator was loaded inside torch.inference_mode(), so autograd cannot go through it; load it outside to project with it")
    if not same_device(G.w_avg.device, device):
        raise InputError(f"the generator is on {G.w_avg.device}, but projection was asked on {device}")
    device = G.w_avg.device
    target = check_images(target, G.img_channels, "target", "project").detach().to(device)
    n = target.shape[0]
    if init_noises is not None:  # checked here, also on a network without noise inputs (an empty list then)
        try:
            check_noises(init_noises, [layer.resolution for layer in G.synthesis.noise_layers()], n)
        except InputError as e:
            raise InputError(f"init_noises: {e}") from None
        if not all(torch.isfinite(x).all() for x in init_noises if x is not None):
            raise InputError("init_noises hold NaN or infinite values")
    working = options.working_size(G.img_resolution)
    weights = parse_loss_spec(loss)

    saved_flags = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        # every step has the same shapes: let cuDNN time its algorithms once (H200, 1024 px, W, batch 1:
        # 0.077 -> 0.066 s per step; batch 8: 0.200 -> 0.176). Restored below, like the grad flags,
        # before the final image, so that it is rendered as `generate --latents` will render it.
        torch.backends.cudnn.benchmark = True
    try:
        # the optimisation needs autograd even when the caller has turned it off (inference code wraps
        # calls in torch.no_grad() or inference_mode()); the clone makes an inference-mode target a
        # normal tensor, which autograd may keep for the backward pass; and the networks run in the
        # float32 they were made for under a caller's autocast too (its image would not be the file's)
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False), frozen_weights_kept(G):
            target = target.clone()
            ws, noises, history, last = _optimise(G, target, n, space, steps, init, optimize_noise, weights, device, seed, options, working, perceptual_weights, callback, init_noises)
    finally:
        for p, flag in zip(G.parameters(), saved_flags):
            p.requires_grad_(flag)
        torch.backends.cudnn.benchmark = cudnn_benchmark
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        image = G.synthesis(ws, noises=noises)
    return ProjectionResult(ws=ws, noises=noises, image=image, history=history, final_loss=last)


def _optimise(G, target, n, space, steps, init, optimize_noise, weights, device, seed, options, working, perceptual_weights, callback, init_noises):
    w_avg, w_std = w_statistics(G)
    gens = [torch.Generator(device=device).manual_seed(seed) for _ in range(n)]

    def per_sample_randn(shape: tuple[int, ...]) -> Tensor:
        return torch.stack([torch.randn(shape, generator=g, device=device) for g in gens])

    w_opt = _initial_ws(G, init, n, space, w_avg).detach().clone().requires_grad_(True)
    noise_factor = options.initial_noise_factor
    layers = G.synthesis.noise_layers()
    noises = None
    params = [w_opt]
    if optimize_noise and layers:
        noises = [per_sample_randn((1, layer.resolution, layer.resolution)).requires_grad_(True) for layer in layers]
        if init_noises is not None:  # (the random maps are drawn all the same: the w noise that follows is the same)
            noises = [r if x is None else x.detach().to(device, torch.float32).reshape(-1, *r.shape[1:]).expand_as(r).clone().requires_grad_(True)
                      for x, r in zip(init_noises, noises)]  # (a None: that map starts random)
        params += noises
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=options.lr)

    target_small = resized(target, working)
    dist = CombinedLoss(weights, target_small, LossContext(device, perceptual_weights))
    history = []
    best = None  # per target: (distance, w, noise maps) of the nearest state measured as it is
    for step in range(steps):
        lr = lr_at(step, steps, lr=options.lr, rampup=options.lr_rampup, rampdown=options.lr_rampdown, rampup_min_steps=options.lr_rampup_min_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        scale = w_noise_scale_at(step, steps, w_std=w_std, initial=noise_factor, ramp=options.noise_ramp)
        ws = w_opt + per_sample_randn(tuple(w_opt.shape[1:])) * scale
        if space == "w":
            ws = ws.repeat(1, G.num_ws, 1)
        synth = _synthesise(G, ws, noises, working)
        d = dist(synth)  # [N]
        reg = noise_regularization(noises) if noises else torch.zeros_like(d)
        total = d + options.noise_reg_weight * reg
        if scale == 0 and options.keep_best:  # (with noise on w, the loss is not that of w_opt)
            best = _kept_best(best, d, w_opt, noises)  # before the update changes them in place
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        optimizer.step()
        if noises:
            normalize_noises_(noises)
        numbers = {"loss": d.detach().double().mean(), **dist.last}  # float64: a mean of large finite losses stays finite
        if noises:
            numbers["noise_reg"] = reg.detach().float().mean()
        values = torch.stack([v.double() for v in numbers.values()] + [torch.isfinite(d.detach()).all().double()]).tolist()  # one wait for the GPU
        record = {"step": step, "lr": lr, **dict(zip(numbers, values[:-1]))}
        if not values[-1]:  # a target's loss is not finite: every later step would be NaN too, and the run end in latents of NaN
            spec = ",".join(f"{k}={v:g}" for k, v in weights.items())
            bad = (~torch.isfinite(d.detach())).nonzero().flatten().tolist()
            which = f" of target {', '.join(str(i + 1) for i in bad)} of {n}" if n > 1 else ""
            became = d.detach()[bad[0]].item()
            raise InputError(f"the loss{which} became {became} at step {step + 1} (loss {spec}): ask for smaller weights, or a start (init) nearer the network's w_avg")
        history.append(record)
        if callback is not None:
            callback(step, synth.detach(), record)

    with torch.no_grad():  # the state the last step left, measured: the result when nothing before it was better
        synth = _synthesise(G, w_opt.repeat(1, G.num_ws, 1) if space == "w" else w_opt, noises, working)
        best = _kept_best(best, dist(synth), w_opt, noises)
    last, ws, kept_noises = best
    if space == "w":
        ws = ws.repeat(1, G.num_ws, 1)
    return ws, kept_noises, history, last


def _kept_best(best, d: Tensor, w: Tensor, noises) -> tuple:
    """(distance [N], w, noise maps) with each target's entries from the new state where its distance
    to the target is lower than the kept one's (a NaN never is), copied: the optimiser changes w in
    place. The distance, not the total with the noise maps' regulariser, which at 1e5 times their
    autocorrelation would rank states by how white their noise is."""
    new = (d.detach(), w.detach(), [x.detach() for x in noises] if noises else None)
    if best is None:
        return new[0].clone(), new[1].clone(), [x.clone() for x in new[2]] if new[2] else None
    better = new[0] < best[0]  # [N]

    def pick(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(better.view(-1, *[1] * (a.ndim - 1)), a, b)

    return pick(new[0], best[0]), pick(new[1], best[1]), [pick(a, b) for a, b in zip(new[2], best[2])] if new[2] else None
