"""Rendering seeds and stored latents, following NVIDIA's generate.py conventions exactly."""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .errors import InputError, MissingFileError, describe, is_whole
from .images import make_grid, save_image, to_uint8
from .latents import load_latents
from .devices import device_named
from .models.base import check_noise_mode, check_psi, check_seed, check_truncation_cutoff, check_ws, native_output
from .seeds import MAX_SEED

log = logging.getLogger(__name__)


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """NVIDIA's convention: `np.random.RandomState(seed).randn(1, z_dim)` (float64)."""
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed {seed} is outside 0..{MAX_SEED} (seeds are 32-bit)")
    return np.random.RandomState(seed).randn(1, z_dim)


def seed_ws(G, seed: int, c: Optional[torch.Tensor], device, *, truncation_psi: float, truncation_cutoff: Optional[int]) -> torch.Tensor:
    """ws [1, num_ws, w_dim] of a seed's z, mapped on `device`; an error of the mapping (a psi whose
    ws overflow) names the seed."""
    z = torch.from_numpy(z_from_seed(seed, G.z_dim)).to(device)
    try:
        return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    except InputError as e:
        raise InputError(f"seed {seed}: {e}") from None


def class_label(G, class_idx: Optional[int], device) -> Optional[torch.Tensor]:
    """One-hot label [1, c_dim] for conditional networks; None for unconditional ones."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise InputError("this network is unconditional; drop --class")
        return None
    if class_idx is None:
        raise InputError(f"this network is conditional ({G.c_dim} classes); pass --class 0..{G.c_dim - 1}")
    if not is_whole(class_idx) or not 0 <= class_idx < G.c_dim:
        raise InputError(f"--class {class_idx!r:.20} is not a class of this network: 0..{G.c_dim - 1}")
    c = torch.zeros([1, G.c_dim], device=device)
    c[:, class_idx] = 1
    return c


def network_device(G, device) -> torch.device:
    """`device`, where G is, or when None G's own (a default of "cpu" met a network on a GPU with
    "z is on cpu" for a z the caller never made)."""
    return G.w_avg.device if device is None else device_named(device)


def rendered(img: torch.Tensor, ws: torch.Tensor, what: str = "", hint: str = "", noises=None) -> np.ndarray:
    """uint8 images of a synthesis output [N, C, H, W], refusing non-finite pixels: a truncation psi
    or edit strength far outside the trained range overflows float32 and would be saved as black.
    The error starts with `what` (which image) and ends with `hint` (what to change), when given;
    `noises`: the noise maps it was rendered with, when they came from a file."""
    if not torch.isfinite(img).all():
        raise not_finite(ws, what, hint, noises)
    return to_uint8(img)


NOISE_FAR = 100.0  # |noise| beyond this is no draw of the unit Gaussian the network's noise comes from


def not_finite(ws: torch.Tensor, what: str, hint: str, noises=None) -> InputError:
    """The error for an image of `ws` (and stored `noises`, if any) whose pixels are not finite (see `rendered`)."""
    noise = max((float(m.abs().max()) for m in noises or [] if m.numel()), default=0.0)
    if noise > NOISE_FAR:  # the file's noise maps, not its ws (a latent file's noise values are not checked for size when read)
        return InputError(f"{what}the network's output is not finite (the largest |noise| is {noise:.3g}): the noise maps are far outside the unit Gaussian the network draws them from")
    largest = f"the largest |w| is {ws.abs().max().item():.3g}" if torch.isfinite(ws).all() else "w is not finite"
    advice = f"; {hint}" if hint else ""
    return InputError(f"{what}the network's output is not finite ({largest}): the latents are far outside what it was trained on{advice}")


def iter_seed_images(
    G,
    seeds: Sequence[int],
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: Optional[int] = None,
    noise_mode: str = "const",
    class_idx: Optional[int] = None,
    device=None,
) -> Iterator[np.ndarray]:
    """uint8 HWC images, one per seed, as they are rendered: one at a time, as generate.py does, so
    pixels match it. The options are checked before this returns. noise_mode "random" draws each
    image's noise maps from its seed (`seeded_noises`), so a seed gives one image every time.
    `device`: where G is (None: found from G)."""
    device = network_device(G, device)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise InputError(f"seeds must be a list of whole numbers, got {seeds!r:.30}")
    seeds = list(seeds)
    if not all(is_whole(s) and s >= 0 for s in seeds):
        raise InputError(f"seeds must be whole numbers >= 0, got {[s for s in seeds if not (is_whole(s) and s >= 0)][:3]!r:.60}")
    if any(s > MAX_SEED for s in seeds):
        raise InputError(f"seed {max(seeds)} is outside 0..{MAX_SEED} (seeds are 32-bit)")
    check_psi(truncation_psi)
    check_truncation_cutoff(G.num_ws, truncation_cutoff)  # now, not at the first image
    check_noise_mode(noise_mode)
    c = class_label(G, class_idx, device)

    def images():
        for seed in seeds:
            with torch.inference_mode():  # G(z, c) in two steps, to report ws
                ws = seed_ws(G, seed, c, device, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
                img = G.synthesis(ws, noise_mode=noise_mode, noises=seeded_noises(G, seed, device) if noise_mode == "random" else None)
            yield rendered(img, ws, f"seed {seed}: ", "ask for a truncation psi (--trunc) nearer 0" if truncation_psi != 1 else "")[0]

    return images()


def generate_from_seeds(G, seeds: Sequence[int], **kwargs) -> list[np.ndarray]:
    """All of `iter_seed_images` in a list."""
    return list(iter_seed_images(G, seeds, **kwargs))


def iter_latent_file_images(G, path: os.PathLike, *, noise_mode: Optional[str] = None, device=None) -> tuple[int, Iterator[np.ndarray]]:
    """(count, images) for each w of a latent file (NVIDIA's --projected-w). With `noise_mode`
    None its stored noise maps are used when it has them (else "const"); a mode given is used
    instead of them ("random": latent i's maps drawn from seed i). The file is read and checked
    before this returns."""
    device = network_device(G, device)
    latents = load_latents(path)
    latents.check_made_for(G, name=Path(path).name)
    noises = stored_noises(G, latents.noises, device, name=Path(path).name) if latents.noises and noise_mode is None else None
    noise_mode = noise_mode or "const"
    check_noise_mode(noise_mode)

    def images():
        for i, w in enumerate(torch.from_numpy(latents.w).to(device)):
            with torch.inference_mode():
                img = G.synthesis(w.unsqueeze(0), noise_mode=noise_mode, noises=seeded_noises(G, i, device) if noise_mode == "random" else noises)
            yield rendered(img, w, f"{Path(path).name} latent {i}: ", noises=noises)[0]  # the file's own w: no option to change

    return len(latents.w), images()


def seeded_noises(G, seed: int, device) -> Optional[list[torch.Tensor]]:
    """One image's random noise maps [1, 1, r, r], one per noise input in synthesis order, drawn
    from `seed` with a generator of their own (not torch's global one, as noise_mode "random" in
    the network would); None for a network without noise inputs."""
    layers = G.synthesis.noise_layers()
    if not layers:
        return None
    gen = torch.Generator().manual_seed(check_seed(seed))
    return [torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen).to(device) for layer in layers]


def _seeded_batch(G, start: int, stop: int) -> list[torch.Tensor]:
    """`seeded_noises` of images start..stop-1, stacked: [stop - start, 1, r, r] per noise input."""
    drawn = [seeded_noises(G, k, G.w_avg.device) for k in range(start, stop)]
    return [torch.cat(maps) for maps in zip(*drawn)]


def stored_noises(G, noises: dict[int, np.ndarray], device, *, name: str = "the latent file") -> list[torch.Tensor]:
    """A latent file's noise maps (`name`'s) as the network's noise inputs take them, checked."""
    layers = G.synthesis.noise_layers()
    if not layers and noises:  # what earlier versions optimised for a StyleGAN2 made without noise (use_noise=False)
        log.info("%s has %d noise maps; this network has no noise inputs, so they change nothing and are left out", name, len(noises))
        return []
    if sorted(noises) != list(range(len(layers))):
        raise InputError(f"{name} has noise maps {sorted(noises)[:8]}, but this network has {len(layers)} noise inputs: was it made for "
                         f"another network? (`generate --latents {name} --noise-mode const` renders its w without them)")
    out = []
    for k, layer in enumerate(layers):
        t = torch.from_numpy(noises[k]).to(device)
        r = layer.resolution
        if t.ndim < 2 or t.shape[-2:] != (r, r) or t.numel() != r * r:  # one map, shared by every latent of the file
            raise InputError(f"noise map {k} is {list(t.shape)}, but layer {k} takes one {r}x{r} map ([1, {r}, {r}])")
        out.append(t.reshape(1, 1, r, r))
    return out


def item_noises(G, items: Sequence[str], device) -> Optional[list[torch.Tensor]]:
    """Noise maps for rendering seeds and latent files together, the items in order: for each noise
    input a stack [K, 1, r, r] of each latent file's stored map, or, for a seed or a file without
    maps, the network's constant one (what noise_mode "const" uses). None when no item has stored
    maps: then rendering with noise_mode "const" is the same and costs no memory."""
    stored = {}
    for i, item in enumerate(items):
        if not is_seed(item):
            latents = load_latents(item)
            if latents.noises:
                stored[i] = stored_noises(G, latents.noises, device, name=Path(item).name)
    if not stored or not G.synthesis.noise_layers():  # (a network without noise inputs: what files hold changes nothing)
        return None
    stacks = []
    for k, layer in enumerate(G.synthesis.noise_layers()):
        const = layer.noise_const.to(device).reshape(1, 1, layer.resolution, layer.resolution)
        stacks.append(torch.cat([stored[i][k] if i in stored else const for i in range(len(items))]))
    return stacks


def noises_by_item(noises: Optional[list[torch.Tensor]], item_of: Callable[[int], int]) -> Optional[Noises]:
    """`Noises` for images each of which takes its item's maps: `noises` as `item_noises` gives
    them, `item_of(m)` the item of image m (a grid's row, an edit's latent file). None for None."""
    if noises is None:
        return None

    def pick(start: int, stop: int) -> list[torch.Tensor]:
        picked = torch.tensor([item_of(m) for m in range(start, stop)], device=noises[0].device)
        return [maps[picked] if maps.shape[0] > 1 else maps for maps in noises]

    return pick


def write_images(images: Iterable[np.ndarray], paths: Sequence[Path], *, grid_path: Optional[Path] = None) -> None:
    """Write each image to its path as it comes; with `grid_path`, also all of them in one grid.
    Folders are made at the first image, so a first image that cannot be rendered leaves none."""
    kept, written = [], 0
    try:
        for img, path in zip(images, paths):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            save_image(img, path)
            written += 1
            if grid_path is not None:
                kept.append(img)
    except InputError as e:  # an image that cannot be rendered: say what was written before it, and what is left of an earlier run
        if not written:
            raise
        stale = [p for p in [*paths[written:], *[grid_path] * (grid_path is not None)] if Path(p).is_file()]
        earlier = f"; {len(stale)} file{'s' * (len(stale) != 1)} of an earlier run {'are' if len(stale) != 1 else 'is'} still there ({', '.join(Path(p).name for p in stale[:3])}{', ...' * (len(stale) > 3)})" if stale else ""
        raise InputError(f"{e} (the {written} image{'s' * (written != 1)} before it {'were' if written != 1 else 'was'} written; no grid{earlier})") from None
    if grid_path is not None and kept:  # one image too: a grid.png left from an earlier run would show other seeds
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(kept), grid_path)


def seed_label(G, items: Sequence[str], class_idx: Optional[int], device) -> Optional[torch.Tensor]:
    """The label the seeds among `items` are mapped with: `class_label`, which a conditional network
    needs when there are seeds (and an unconditional one refuses); None when no label is asked for."""
    if class_idx is None and not (G.c_dim > 0 and any(is_seed(item) for item in items)):
        return None
    return class_label(G, class_idx, device)


def item_name(item: str) -> str:
    """'seed 42' or the latent file's name, for messages."""
    return f"seed {int(item)}" if is_seed(item) else Path(item).name


def is_seed(item) -> bool:
    """42 or '42' (a Path is a file, whatever its name)."""
    if is_whole(item):
        return item >= 0
    return isinstance(item, str) and re.fullmatch(r"[0-9]+", item) is not None  # ASCII digits: '²' is a digit to str.isdigit, not to int()


def mapped_z(G, z: torch.Tensor, *, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None, class_idx: Optional[int] = None, batch_size: int = 1000, device=None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of z [N, z_dim] (a path through Z, say), mapped `batch_size` at a time
    on G's device with one class for all (conditional networks) and the truncation given."""
    device = network_device(G, device)
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise InputError(f"z must be a tensor [N, z_dim], got {describe(z)}")
    if not is_whole(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r:.20}")
    check_psi(truncation_psi)
    check_truncation_cutoff(G.num_ws, truncation_cutoff)
    c = class_label(G, class_idx, device)
    with torch.no_grad():
        return torch.cat([
            G.mapping(part.to(device), None if c is None else c.expand(len(part), -1), truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            for part in z.split(batch_size)
        ])  # fmt: skip


def latents_for_items(
    G, items: Sequence[str], *, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None, class_idx: Optional[int] = None, device=None, out_device=None,
    one_each: bool = False,
) -> torch.Tensor:
    """Seeds ('42') and latent files ('a.npz') -> ws [K, num_ws, w_dim], one per item, on `out_device`
    (default: `device`, where G is and the mapping runs, found from G when None; "cpu" keeps many
    samples out of GPU memory).

    A latent file contributes its first latent (never truncated), or with `one_each` must hold only
    one (where each item stands for one face); a file made for another network is refused.
    A conditional network maps seeds with the class `class_idx` (needed only when there are seeds).
    """
    device = network_device(G, device)
    out_device = device if out_device is None else out_device
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise InputError(f"items must be a list of seeds and latent files, got {items!r:.40}")
    items = list(items)
    if not items:
        raise InputError("items must be a non-empty list of seeds and latent files")
    check_truncation_cutoff(G.num_ws, truncation_cutoff)  # also when every item is a latent file
    c = seed_label(G, items, class_idx, device)
    out = []
    for item in items:
        if not is_seed(item) and not isinstance(item, (str, os.PathLike)):
            raise InputError(f"items are seeds (42 or '42') and latent files ('a.npz' or a Path), got {item!r:.30}")
        if isinstance(item, str) and not item.strip():
            raise InputError("an empty item: give seeds (e.g. 42) and latent files (.npz)")
        if is_seed(item):  # a Path is a file, even one named 12
            with torch.no_grad():
                ws = seed_ws(G, int(item), c, device, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff).float()
            if not torch.isfinite(ws).all():  # said here, not as "keys hold NaN" by whatever takes them next
                raise InputError(f"seed {int(item)}: its ws hold NaN or infinite values (a damaged network?)")
            out.append(ws.to(out_device))
            continue
        path = Path(item)
        if not path.exists():
            named_file = isinstance(item, os.PathLike) or path.suffix.lower() == ".npz" or os.sep in item  # cannot have meant a seed
            raise MissingFileError(f"no latent file {item}" if named_file else f"{item} is neither a seed nor an existing latent file")
        latents = load_latents(path)
        latents.check_made_for(G, name=path.name)
        if len(latents.w) > 1 and one_each:
            raise InputError(f"{item} holds {len(latents.w)} latents where one face is asked for: give each its own latent file")
        if len(latents.w) > 1:
            log.warning("%s holds %d latents; only its first is used here (generate --latents renders them all)", path.name, len(latents.w))
        out.append(torch.from_numpy(latents.w[:1]).to(out_device))
    return torch.cat(out)


# Noise maps for rendering K images: one map per noise input, [1, 1, r, r] shared by every image
# (a projection's) or [K, 1, r, r], one per image; or a function (start, stop) giving those of
# images start..stop-1, for sets too large to hold at once.
Noises = Union[list[torch.Tensor], Callable[[int, int], list[torch.Tensor]]]


@torch.inference_mode()
def render_ws(G, ws: torch.Tensor, **kwargs) -> list[np.ndarray]:
    """uint8 HWC images for ws [K, num_ws, w_dim]: all of `iter_render_ws` in a list."""
    return list(iter_render_ws(G, ws, **kwargs))


def iter_render_ws(
    G,
    ws: torch.Tensor,
    *,
    batch_size: int = 8,
    noise_mode: str = "const",
    noises: Optional[Noises] = None,
    max_resolution: Optional[int] = None,
    names: Optional[Callable[[int], str]] = None,
    hint: Union[str, Callable[[int], str]] = "",
) -> Iterator[np.ndarray]:
    """uint8 HWC images for ws [K, num_ws, w_dim], rendered `batch_size` at a time and given out
    one by one as they are (for outputs too big to hold), with `noises` (see `Noises`) when given;
    noise_mode "random" without them draws image k's maps from seed k (`seeded_noises`), so the
    images do not depend on the batch size. `max_resolution` asks for a smaller native output where
    the network has one (else full size).

    An image whose pixels are not finite is an InputError naming it (`names(k)` for image k, e.g.
    "seed 4 at strength 3"; else "image k+1 of K") and ending with `hint` (or `hint(k)`), what the
    user can change.
    """
    check_ws(ws, G.num_ws, G.w_dim)
    if not is_whole(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r:.20}")
    if noise_mode == "random" and noises is None and G.synthesis.noise_layers():
        noises = functools.partial(_seeded_batch, G)

    if noises is not None and not callable(noises):
        if not all(isinstance(m, torch.Tensor) and m.ndim >= 2 for m in noises):
            raise InputError("noises must be a list of tensors, one per noise input: [r, r], [1, r, r] or [K, 1, r, r]")
        noises = [m.reshape(1, 1, *m.shape[-2:]) if m.ndim < 4 and m.shape[:-2].numel() == 1 else m for m in noises]  # one map, as G.synthesis takes it too
        if any(m.shape[0] not in (1, ws.shape[0]) for m in noises):
            raise InputError(f"noise maps for {ws.shape[0]} images must be one shared map or one per image, got {[m.shape[0] for m in noises]} maps")
    out_res = native_output(G, max_resolution)
    kwargs = {"out_res": out_res} if out_res else {}
    for start in range(0, ws.shape[0], batch_size):
        stop = min(start + batch_size, ws.shape[0])
        batch_ws = ws[start:stop].to(G.w_avg.device)
        if noises is None or callable(noises):
            batch_noises = noises(start, stop) if noises is not None else None
        else:
            batch_noises = [m if m.shape[0] == 1 else m[start:stop] for m in noises]
        with torch.inference_mode():
            img = G.synthesis(batch_ws, noise_mode=noise_mode, noises=batch_noises, **kwargs)
        bad = (~torch.isfinite(img)).flatten(1).any(dim=1)
        if bad.any():
            k = start + int(bad.int().argmax())  # the first image that failed
            what = names(k) if names is not None else f"image {k + 1} of {ws.shape[0]}"
            raise not_finite(batch_ws[k - start], f"{what}: ", hint(k) if callable(hint) else hint, [m[k - start] if m.shape[0] > 1 else m for m in batch_noises or []])
        yield from to_uint8(img)
