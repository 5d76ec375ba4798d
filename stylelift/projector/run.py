"""`stylelift project` for many photos: prepare targets, project in batches, write the files.

A photo that fails (unreadable, no face) is reported in one line and the others still get done.
"""

from __future__ import annotations

import logging
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..errors import InputError, StyleliftError, VideoError, error_message, is_out_of_memory, per_item_error
from ..fileio import check_writable, file_id, file_in_the_way, file_stamp, sha256_if_readable
from ..generation import stored_noises
from ..images import find_ffmpeg, load_photo, photo_profile, to_tensor, to_uint8
from ..latents import LatentFile, load_latents
from ..progress import StepProgress
from .files import ProjectionFiles, refuse_replacing, write_projection
from .losses import CLI_ADVICE, LossContext, check_weights_for, load_lpips, lpips_available, lpips_problem, parse_loss_spec, read_vgg16_weights, same_loss, vgg16_weights_available
from .metrics import projection_metrics
from .project import ProjectionOptions, project, resized

log = logging.getLogger(__name__)

# `--loss auto` without ImageNet weights. benchmarks/offline_loss_study.py (100 steps, W+, two
# generated faces and the astronaut photo): adding dlib's face terms raised PSNR on all three
# targets, kept more fine detail, and brought the dlib descriptor distance from 0.31-0.49 down
# to 0.11-0.15, for 20% more time per step. They assume FFHQ-aligned faces, so photos that were
# not aligned by stylelift get the pixel terms only.
OFFLINE_LOSS_UNALIGNED = "mse=1,ms-ssim=1"
OFFLINE_LOSS = OFFLINE_LOSS_UNALIGNED + ",face=0.1,face-id=0.1"
VIDEO_FRAMES = 100


@dataclass
class ProjectJob:
    network: str
    space: str = "w+"
    steps: int = 1000
    optimize_noise: bool = True
    loss: str = "auto"
    perceptual_weights: Optional[Path] = None
    init: str = "avg"
    align: bool = True
    face_index: int = 0  # which face when aligning, 0 = the largest
    paste_back: bool = False
    paste_region: str = "face"  # what --paste-back pastes: "face" (and forehead) or the whole "square"
    outdir: Path = Path("projected")
    video: bool = True
    batch_size: int = 1
    device: torch.device = torch.device("cpu")
    seed: int = 0
    overwrite: bool = False
    w_noise: float = 0.0  # noise on w early on, in w_std (NVIDIA's projector: 0.05)


@dataclass
class Prepared:
    path: Path
    files: ProjectionFiles
    target: np.ndarray  # uint8 HWC at the network's resolution
    profile: Optional[bytes]  # the photo's ICC profile (the photo itself is read again to paste into: a folder's would fill memory)
    face: Optional[object]  # AlignedFace when aligned
    stamp: tuple = ()  # the photo file's `file_stamp` when it was read (`check_unchanged`)
    stale: tuple[Path, ...] = ()  # an earlier run's outputs this one does not write (ProjectionFiles.stale)

    def check_unchanged(self) -> None:
        """Refuse a photo whose file changed since it was prepared: its hash, and the face's place in
        the photo read again to paste into, would be another photo's."""
        if file_stamp(self.path) != self.stamp:
            raise InputError(f"{self.path.name} changed while the run went on; project it again")


def resolve_loss(spec: str, perceptual_weights: Optional[Path], *, aligned: bool = True) -> str:
    """`auto` -> LPIPS when its weights exist, else the offline mix (face terms for aligned faces only)."""
    if perceptual_weights is not None:  # read before any work, whether the loss or only the LPIPS metric uses it
        read_vgg16_weights(perceptual_weights)
    if spec == "auto":
        spec = "lpips=1" if lpips_available(perceptual_weights) else OFFLINE_LOSS if aligned else OFFLINE_LOSS_UNALIGNED
    check_weights_for(parse_loss_spec(spec), perceptual_weights, otherwise=CLI_ADVICE)  # checked before any work
    return spec


def centre_crop(photo: Image.Image, size: int) -> Image.Image:
    w, h = photo.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a big photo, already read (load_photo refuses what is too big)
        return photo.crop(box).resize((size, size), Image.Resampling.LANCZOS)


def prepare(path: Path, job: ProjectJob, resolution: int) -> Prepared:
    stamp = file_stamp(path)
    photo = load_photo(path)
    face = None
    if job.align:
        from ..align import align_face

        face = align_face(photo, size=resolution, face_index=job.face_index, name=path.name)
        image = face.image
    else:
        image = centre_crop(photo, resolution)
    return Prepared(path, ProjectionFiles(job.outdir, path.stem), np.asarray(image), photo_profile(photo), face, stamp)


def _init_latents(job: ProjectJob, G):
    """(None (w_avg), a ws tensor [1, num_ws, w_dim] from a latent file, or an Encoder; the latent
    file's noise maps when it has them and noise is optimised, else None)."""
    if job.init == "avg":
        return None, None
    from ..models.encoder import SHIPPED, load_encoder, resolve_encoder_path

    path = resolve_encoder_path(job.init)
    if path.suffix.lower() == ".pt":
        return load_encoder(path, G=G, device=job.device)[0], None
    if path.suffix.lower() != ".npz":
        raise InputError(f"--init must be avg, {SHIPPED} (the shipped one), a latent .npz or an encoder .pt, got {job.init}")

    latents = load_latents(path)
    latents.check_made_for(G, name=path.name)
    maps = None
    if latents.noises and job.optimize_noise:  # a projection refined starts where it ended, noise maps too
        try:
            maps = stored_noises(G, latents.noises, job.device, name=path.name) or None
        except InputError:  # maps laid out for another network (a file without meta): its w is still a start
            log.warning("%s: its noise maps do not fit this network's noise inputs; the projection starts from random ones", path.name)
    return torch.from_numpy(latents.w[:1]), maps


# what an earlier run's latent file records of its options, compared before it counts as done
COMPARED = {"network_id": "network", "space": "space", "steps": "steps", "loss": "loss", "seed": "seed", "noise_optimized": "noise", "w_noise": "w noise", "init": "init", "init_sha256": None}
SAME_WHEN = {"loss": same_loss}  # (the others are equal values)


def earlier_meta(latent: Path, G=None) -> tuple[Optional[dict], Optional[str]]:
    """(the meta of an earlier run's latent file, None) or (None, why it cannot be read, or, given
    G, why its w does not fit G: a file without meta, as NVIDIA's projector writes, says no network)."""
    try:
        found = load_latents(latent)
    except (StyleliftError, OSError) as e:
        return None, f"but its {latent.name} cannot be read ({error_message(e)})"
    if G is not None and found.w.shape[1:] != (G.num_ws, G.w_dim):
        return None, f"but its {latent.name} does not fit this network (w {list(found.w.shape)}, not [N, {G.num_ws}, {G.w_dim}])"
    return found.meta, None


def earlier_run_differs(files: ProjectionFiles, earlier: dict, path: Path, job: ProjectJob, meta: dict, *, ignore: tuple[str, ...] = ()) -> Optional[str]:
    """None when the finished outputs in `files` (their latent file's meta: `earlier`) are this
    run's: the same photo, the options that meta records, and every file this run writes (but a
    pasted photo, which `paste_earlier` makes from the latent file). Else how they differ, in words."""
    if earlier.get("photo_sha256") not in (None, sha256_if_readable(path)):  # files made before the hash was kept have none
        return f"from another photo of that name ({earlier.get('photo')})"
    alignment = earlier.get("alignment")
    if (alignment is not None) != job.align and "photo" in earlier:
        return "with --align" if alignment is not None else "with --no-align"
    if isinstance(alignment, dict) and job.align and alignment.get("face_index", 0) != job.face_index:
        return f"for face {alignment.get('face_index', 0)!r:.10} of the photo (now {job.face_index})"
    differ = [f"{name} {earlier[key]!r} (now {meta[key]!r})" if name else "another content of that --init file"
              for key, name in COMPARED.items() if key in earlier and key not in ignore and not SAME_WHEN.get(key, operator.eq)(earlier[key], meta[key])]
    if differ:
        return "with " + ", ".join(differ)
    if job.video and not files.path("_proj.mp4").is_file():  # the optimisation's frames are gone with it
        return f"without {files.path('_proj.mp4').name}"
    if job.paste_back and not files.pasted_with(job.paste_region) and alignment is None:
        return f"without {files.path('_pasted.png').name}, and without the alignment it needs"
    return None


def paste_earlier(G, files: ProjectionFiles, path: Path, alignment: dict, *, region: str = "face") -> None:
    """Write NAME_pasted.png for an earlier projection asked for again with --paste-back: its latent
    file rendered (with its noise maps, so the image is the one NAME_proj.png shows) and pasted
    into the photo, instead of projecting it again."""
    from ..align import AlignedFace
    from ..paste import paste_back
    from ..generation import item_noises, render_ws

    face = AlignedFace.from_meta(alignment, what=files.latent.name)
    ws = torch.as_tensor(load_latents(files.latent).w, dtype=torch.float32)
    image = render_ws(G, ws, noises=item_noises(G, [str(files.latent)], G.w_avg.device))[0]
    photo = load_photo(path)
    pasted = paste_back(Image.fromarray(image), face, photo, region=region)
    files.save_pasted(pasted, region, icc_profile=photo_profile(photo))


def run_project_job(job: ProjectJob, paths: list[Path], report: Callable[..., None], *, load: Optional[Callable] = None) -> int:
    """Project every photo; returns the number that failed. `load(network, device)` loads the
    generator once the job's options are checked (default `load_generator`). `report(message)` gets
    each photo's result; with error=True its failure, with note=True what is said on the way."""
    from ..models import load_generator, network_id
    from ..models.encoder import resolve_encoder_path

    loss = resolve_loss(job.loss, job.perceptual_weights, aligned=job.align)
    blocker = file_in_the_way(job.outdir)
    if blocker is not None:
        raise InputError(f"--outdir {job.outdir}: {blocker} is a file, not a folder")
    check_writable(job.outdir)  # before the optimisation, not after it
    problem = lpips_problem(job.perceptual_weights)
    lpips_metric = problem is None
    if problem is not None and vgg16_weights_available(job.perceptual_weights):  # a weights file that cannot be used: say so
        report(f"no LPIPS in the metrics{'' if job.loss != 'auto' else ' or the loss'}: {problem}", note=True)
    G = load(job.network, job.device) if load is not None else load_generator(job.network, device=job.device)
    init, init_noises = _init_latents(job, G)
    report(f"network {getattr(G, 'source', job.network)} ({G.img_resolution}px, {G.num_ws} ws), space {job.space}, loss {loss}", note=True)
    meta_base = {
        "network": getattr(G, "source", job.network),
        "network_id": network_id(G),
        "space": job.space,
        "steps": job.steps,
        "loss": loss,
        "seed": job.seed,
        "noise_optimized": job.optimize_noise and bool(G.synthesis.noise_layers()),  # the bundled network has no noise inputs
        "w_noise": job.w_noise,
        "init": job.init,
        "init_sha256": None if job.init == "avg" else sha256_if_readable(resolve_encoder_path(job.init)),  # retrained under one name: not the same start
        "stylelift": __version__,
        "resolution": G.img_resolution,
    }
    todo, failures = plan_photos(G, job, paths, meta_base, report)
    if job.video and todo:  # before any optimisation, and not for a folder that is all done already
        try:
            find_ffmpeg()
        except VideoError as e:
            raise InputError(f"{e}; pass --no-video, or install ffmpeg") from None
    return failures + project_in_batches(G, todo, job, loss, init, meta_base, report, lpips_metric=lpips_metric, init_noises=init_noises)


def plan_photos(G, job: ProjectJob, paths: list[Path], meta_base: dict, report: Callable[..., None]) -> tuple[list[Prepared], int]:
    """(the photos to project, prepared; how many failed): photos done earlier with these options are
    skipped (pasted into the photo when --paste-back asks for it anew), the rest checked and read."""
    todo, failures, stems = [], 0, {}
    photos = frozenset(file_id(p) for p in paths) - {None}  # never written over: --outdir may be the photos' own folder
    for path in paths:
        if stems.setdefault(path.stem, path) != path:  # NAME.npz etc. would overwrite the other photo's
            report(f"error: {path}: its outputs would overwrite those of {stems[path.stem]} (same name); rename it or project it with another --outdir", error=True)
            failures += 1
            continue
        files = ProjectionFiles(job.outdir, path.stem)
        earlier, unreadable = earlier_meta(files.latent, G) if not job.overwrite and files.latent.exists() else (None, None)
        if earlier is not None and (method := str(earlier.get("method", "project"))[:40]) != "project":  # `encoder run` into this folder, say
            report(f"error: {path.name}: {files.latent} holds latents made by {method!r}, not by a projection; pass --overwrite to replace them, or another --outdir", error=True)
            failures += 1
            continue
        if files.done() and not job.overwrite and path.is_file():  # a photo that is gone is reported below, as missing
            ignore = () if G.synthesis.noise_layers() else ("noise_optimized",)  # older files said True on networks without noise
            why = unreadable or earlier_run_differs(files, earlier, path, job, meta_base, ignore=ignore)
            failures += _done_earlier(G, job, files, path, earlier, why, photos, report)
            continue
        try:
            files.check_writable(video=job.video, pasted=job.paste_back, photos=photos)
            item = prepare(path, job, G.img_resolution)
            item.stale = files.stale(video=job.video, pasted=job.paste_back, photos=photos)  # (project's alone: encoder run prepares too)
            todo.append(item)
        except Exception as e:  # this photo fails; the others still run
            report(f"error: {per_item_error(e, path.name)}", error=True)
            failures += 1
    return todo, failures


def _done_earlier(G, job: ProjectJob, files: ProjectionFiles, path: Path, earlier: dict, why: Optional[str], photos: frozenset, report: Callable[..., None]) -> int:
    """Report a photo whose files are there (`why` they are not this run's, or None); paste its
    projection into the photo when --paste-back asks for a NAME_pasted.png it lacks. Returns 1 on
    failure, else 0."""
    if why is not None:
        report(f"error: {path.name}: done earlier {why}; pass --overwrite to redo it with these options, or another --outdir", error=True)
        return 1
    if not job.paste_back or files.pasted_with(job.paste_region):
        report(f"{path.name}: already done (use --overwrite to redo)")
        return 0
    try:
        refuse_replacing(files.path("_pasted.png"), photos)
        paste_earlier(G, files, path, earlier["alignment"], region=job.paste_region)
    except Exception as e:
        if not _expected(e):
            raise
        said = per_item_error(e, path.name).removeprefix(f"{path.name}: ")
        report(f"error: {path.name}: pasting its earlier projection: {said}", error=True)
        return 1
    report(f"{path.name}: already done; pasted its projection into the photo -> {files.path('_pasted.png')}")
    return 0


def project_in_batches(G, todo: list[Prepared], job: ProjectJob, loss: str, init, meta_base: dict, report: Callable[..., None], *, lpips_metric: bool, init_noises=None) -> int:
    """Project the prepared photos `job.batch_size` at a time and write their files; returns how
    many failed. A batch that fails is redone one photo at a time, so one photo's failure is its own."""
    failures = 0
    batches = [todo[start : start + job.batch_size] for start in range(0, len(todo), job.batch_size)]
    while batches:
        batch = batches.pop(0)
        try:
            results = _project_batch(G, batch, job, loss, init, meta_base, lpips_metric=lpips_metric, init_noises=init_noises)
        except _OptimisationFailed as failed:  # nothing of the batch was written
            if len(batch) > 1:
                report(f"a batch of {len(batch)} photos failed ({_why(failed.error, alone=False)}); projecting them one at a time", note=True)
                batches[:0] = [[item] for item in batch]  # so that one photo's failure is its own
                continue
            results = [failed.error]
        except Exception as e:  # before any photo's files (the LPIPS metric's weights, say)
            if not _expected(e):
                raise  # a bug, not this batch's failure
            results = [e] * len(batch)
        for item, r in zip(batch, results):
            if isinstance(r, BaseException):
                report(f"error: {item.path.name}: {_why(r)}", error=True)
                failures += 1
                continue
            face = f", face distance {r['face_distance']:.3f}" if r.get("face_distance") is not None else ""
            which = item.face.among() if item.face is not None else ""
            removed = f"; removed the earlier run's {' and '.join(p.name for p in item.stale)}" if item.stale else ""
            report(f"{item.path.name}{which}: done -> {item.files.latent} (PSNR {r['psnr']:.1f} dB, SSIM {r['ssim']:.3f}{face}){removed}")
    return failures


class _OptimisationFailed(Exception):
    """A batch's optimisation failed (out of memory, a loss that overflows, ...): nothing was written."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _why(e: BaseException, *, alone: bool = True) -> str:
    if is_out_of_memory(e) or isinstance(e, MemoryError):
        return "out of memory, even for one photo at a time" if alone else "out of memory"
    return error_message(e)


def _expected(e: BaseException) -> bool:
    """An error that is a photo's or a batch's failure, not a bug: stylelift's own, an output that
    cannot be written (OSError: a full disk, a folder in the way), running out of memory."""
    return isinstance(e, (StyleliftError, OSError, MemoryError)) or is_out_of_memory(e)


def _project_batch(G, batch: list[Prepared], job: ProjectJob, loss: str, init, meta_base: dict, *, lpips_metric: bool, init_noises=None) -> list[dict]:
    """Project one batch and write its files; returns each photo's metrics."""
    device = job.device
    target = to_tensor(np.stack([p.target for p in batch])).to(device)
    frames: list[list[np.ndarray]] = [[] for _ in batch]
    every = max(1, job.steps // VIDEO_FRAMES)
    options = ProjectionOptions(initial_noise_factor=job.w_noise)
    target_small_u8 = to_uint8(resized(target, options.working_size(G.img_resolution)))  # what the loss sees
    names = ", ".join(p.path.name for p in batch)

    with StepProgress(names if len(names) <= 40 else names[:39] + "…", job.steps, transient=True) as bar:

        def callback(step: int, synth: torch.Tensor, record: dict) -> None:
            bar.update(step + 1, " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "lr")))
            if job.video and (step % every == 0 or step == job.steps - 1):
                synth_u8 = to_uint8(synth)
                for i in range(len(batch)):
                    frames[i].append(np.concatenate([target_small_u8[i], synth_u8[i]], axis=1))

        try:
            if isinstance(init, torch.nn.Module):  # an encoder: its guess for each photo
                with torch.no_grad():
                    init = init(target)
            result = project(
                G, target, space=job.space, steps=job.steps, init=init, optimize_noise=job.optimize_noise, loss=loss,
                device=device, seed=job.seed, options=options, perceptual_weights=job.perceptual_weights, callback=callback, init_noises=init_noises,
            )
        except Exception as e:
            if not _expected(e):
                raise  # a bug
            raise _OptimisationFailed(e) from e

    lpips_model = load_lpips(LossContext(device, job.perceptual_weights)) if lpips_metric else None
    images_u8 = to_uint8(result.image)

    def write_one(i: int, item: Prepared) -> dict:
        """Write photo i's files; returns its metrics."""
        noises = {k: n[i].cpu().numpy() for k, n in enumerate(result.noises)} if result.noises else {}
        item.check_unchanged()  # (the hash below is of the file now)
        photo = load_photo(item.path) if job.paste_back else None
        meta = dict(meta_base, photo=item.path.name, photo_sha256=sha256_if_readable(item.path), final_loss=float(result.final_loss[i]))
        if item.face is not None:
            meta["alignment"] = dict(item.face.transform_meta(), photo_path=str(item.path.resolve()))
        latents = LatentFile(w=result.ws[i : i + 1].cpu().numpy(), noises=noises, meta=meta)
        one_target = target[i : i + 1]
        metrics = projection_metrics(one_target, result.image[i : i + 1], item.target, images_u8[i], lpips_model=lpips_model)
        metrics.update(steps=job.steps, loss=loss, space=job.space)
        pasted = None
        if job.paste_back:
            if item.face is None:
                raise InputError("--paste-back needs --align")
            from ..paste import paste_back

            pasted = paste_back(Image.fromarray(images_u8[i]), item.face, photo, region=job.paste_region)
        write_projection(
            item.files, latents=latents, target=item.target, projection=images_u8[i],
            frames=frames[i] if job.video else None, pasted=pasted, metrics=metrics, paste_region=job.paste_region, icc_profile=item.profile, stale=item.stale,
        )
        return metrics

    written: list = []  # each photo's metrics, or the error that kept its files from being written
    for i, item in enumerate(batch):
        try:
            written.append(write_one(i, item))
        except Exception as e:
            if not _expected(e):
                raise
            written.append(e)
    return written
