"""Encoder commands of the `stylelift` CLI: train, fit and run an encoder that guesses W+ latents."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import DEFAULT_NETWORK, MAX_SEED, DeviceOpt, NetworkOpt, OnceEach, PlainFlagsGroup, app, check_new_file, check_not_read, check_outdir, fail, load, loss_terms, not_empty, output_failed, output_option, printable, say, user_errors

encoder_app = typer.Typer(cls=PlainFlagsGroup, no_args_is_help=True, help="An encoder that guesses W+ latents in one pass (fitted on dlib's face ResNet, or a ResNet trained).")
app.add_typer(encoder_app, name="encoder")


def learning_rate(value: float) -> float:
    """Option callback: a learning rate is a number in (0, 1] (NaN is not)."""
    if not 0 < value <= 1:
        raise typer.BadParameter(f"{value} is not a learning rate in (0, 1]")
    return value


def check_image_loss(spec: str) -> None:
    """Refuse, before any work, image terms that are unknown or need weights that are not here
    (`encoder train` reads VGG16's only from torch's cache: it has no --perceptual-weights)."""
    from .projector.losses import check_weights_for

    check_weights_for(loss_terms(spec, "--image-loss"), otherwise="(encoder train reads them only from there), or give --image-loss mse, l1, ms-ssim, face or face-id")


@encoder_app.command("train", cls=OnceEach)
@user_errors
def encoder_train(
    out: Annotated[Path, output_option("Encoder checkpoint to write (also written every --checkpoint-every steps).")],
    network: NetworkOpt = DEFAULT_NETWORK,
    steps: Annotated[int, typer.Option(min=1, help="Training steps in all (a resumed run continues to this count).")] = 20_000,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Generated images per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate, in (0, 1].", callback=learning_rate)] = 1e-4,
    backbone: Annotated[Optional[str], typer.Option(help="resnet18 or resnet34 (default resnet18; a resumed run keeps its own; dlib-face encoders are made by `encoder fit`).")] = None,
    input_resolution: Annotated[Optional[int], typer.Option(min=32, max=4096, help="Encoder input size (default 256; a resumed run keeps its own).")] = None,
    image_loss: Annotated[str, typer.Option(help="Image reconstruction terms, weighted as project's --loss (mse, l1, ms-ssim, face, face-id, face-age; lpips and vgg16 need ImageNet VGG16 weights in torch's cache), or none.")] = "mse",
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 500,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start afresh over OUT (replaced at the first checkpoint).")] = False,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the sampled training latents.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Train an encoder on images the network generates (known latents): latent MSE + image loss."""
    import operator

    from .encoder_training import EncoderTrainOptions, train_encoder
    from .models.encoder import BACKBONES, FACE_BACKBONE, load_encoder, new_encoder
    from .progress import StepProgress
    from .projector.losses import same_loss

    if out.suffix.lower() != ".pt":
        raise typer.BadParameter(f"--out {out}: the name must end in .pt")
    if backbone == FACE_BACKBONE:
        raise typer.BadParameter(f"{FACE_BACKBONE} encoders are fitted, not trained: use `stylelift encoder fit`")
    if backbone is not None and backbone not in BACKBONES:
        raise typer.BadParameter(f"--backbone must be {' or '.join(BACKBONES)}, not {backbone!r:.30}")
    if resume and overwrite:
        raise typer.BadParameter("--resume continues OUT and --overwrite starts afresh over it: give one")
    if image_loss != "none":
        loss_terms(image_loss, "--image-loss")  # its terms, a usage error; the weights they need, after
    check_not_read(out, [network])  # first: the advice below would be --overwrite
    check_new_file(out, resume or overwrite, remedy="pass --resume to continue it, --overwrite to start afresh, or choose another --out")
    if image_loss != "none":
        check_image_loss(image_loss)
    G, dev = load(network, device)
    state = None
    if resume:
        encoder, state = load_encoder(out, G=G, device=dev)
        if encoder.config.backbone == FACE_BACKBONE:
            fail(f"{out} is a fitted {FACE_BACKBONE} encoder; fit another with `stylelift encoder fit`")
        for name, given in (("backbone", backbone), ("input_resolution", input_resolution)):
            if given is not None and given != getattr(encoder.config, name):
                fail(f"{out} was trained with {name} {getattr(encoder.config, name)}; --resume continues with it (drop --{name.replace('_', '-')})")
    else:
        encoder = new_encoder(G, backbone=backbone or "resnet18", input_resolution=256 if input_resolution is None else input_resolution, seed=seed)
    opts = EncoderTrainOptions(
        steps=steps, batch_size=batch_size, lr=lr, image_loss=image_loss if image_loss != "none" else "mse",
        image_weight=0.0 if image_loss == "none" else 1.0, checkpoint_every=checkpoint_every, seed=seed,
        render_resolution=encoder.config.input_resolution,
    )
    saved = (state or {}).get("options")
    if isinstance(saved, dict):  # a resumed run must be the run it continues, only longer
        if not all(isinstance(k, str) and plain_value(v) for k, v in saved.items()):  # (a tensor would not compare as one value)
            fail(f"{out}: its training options are damaged (a key that is not an option's name, or a value that is not a number or a name); start a new run with another --out")
        same = {"image_loss": same_loss}  # (the others are equal values)
        changed = [k for k, v in saved.items() if k not in ("steps", "checkpoint_every") and not same.get(k, operator.eq)(v, getattr(opts, k, v))]
        if changed:
            fail(f"{out} was trained with other settings ({', '.join(dict.fromkeys(as_option(k, saved) for k in changed))}); resume with the same options")
    side = -(-encoder.config.input_resolution // 32)  # the ResNet's last feature map is side x side
    if batch_size * side * side < 2:
        fail(f"--batch-size {batch_size} at input resolution {encoder.config.input_resolution}: batch norm needs two values per channel; use --batch-size 2 or more")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = int(state.get("step", 0)) if state else 0
    if state is not None:  # said once every setting is found to be the run's own
        say(f"resuming {out} at step {start}")
    if start >= steps:
        say(f"{out} is at step {start} already; nothing to train (ask for more --steps to go on)")
        return
    with StepProgress("training", steps, completed=start) as bar, stop_between_steps() as stop:
        done = train_encoder(G, encoder, opts, out=out, state=state, stop=stop, callback=lambda step, rec: bar.update(step, " ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "step")))
    if done.get("stopped"):
        with contextlib.suppress(OSError):  # after a SIGHUP the terminal may be gone
            typer.secho(f"interrupted: {out} holds step {done['step']} of {steps}; continue with --resume", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(stop.exit_code)
    say(f"wrote {out}")


def plain_value(v) -> bool:
    """A training option's value as a checkpoint stores it: a number, a name, None, or a short list of numbers (truncation's range)."""
    if type(v) in (list, tuple):
        return len(v) <= 16 and all(type(x) in (int, float) for x in v)
    return v is None or type(v) in (str, int, float, bool)


OPTION_OF = {"lr": "--lr", "batch_size": "--batch-size", "image_loss": "--image-loss", "image_weight": "--image-loss", "seed": "--seed", "render_resolution": "--input-resolution"}


def as_option(key: str, saved: dict) -> str:
    """A saved training setting as the option that gives it (`image_weight 0` is --image-loss none)."""
    if key in ("image_loss", "image_weight"):
        return f"--image-loss {'none' if saved.get('image_weight') == 0 else saved.get('image_loss')!s:.40}"
    return f"{OPTION_OF.get(key, key)} {saved[key]!s:.30}"


class stop_between_steps:
    """Within it, Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a dropped ssh; unless ignored, as
    under nohup) asks the training to stop after the step under way, so that it writes a checkpoint
    (a second one stops at once). Called, it says whether to stop; after a stop, `exit_code` is the
    shell's for that signal (130, 143, 129)."""

    def __init__(self):
        self.signum = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 2)

    def _asked(self, signum, frame) -> None:
        import signal

        if self.signum is not None:  # asked twice: stop now, as that signal does
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
        with contextlib.suppress(OSError):  # a closed terminal (SIGHUP): the checkpoint matters, not the line
            typer.secho(f"\nstopping after this step, to write a checkpoint{again}", fg=typer.colors.YELLOW, err=True)

    def __enter__(self):
        import signal
        import threading

        from .fileio import stopping_signals

        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._asked) for sig in stopping_signals()}
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in (self._old or {}).items():
            signal.signal(sig, handler)


@encoder_app.command("fit", cls=OnceEach)
@user_errors
def encoder_fit(
    out: Annotated[Path, output_option("Encoder file to write.")],
    network: NetworkOpt = DEFAULT_NETWORK,
    samples: Annotated[int, typer.Option(min=10, max=10_000, help="Generated images to fit on.")] = 3000,
    rank: Annotated[int, typer.Option(min=1, help="Rank of the linear head, at most the 1,536 features it reads (the shipped encoder: 128).")] = 128,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the sampled latents.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Fit a dlib-face encoder in minutes on a CPU: dlib's pretrained face ResNet, frozen, and a linear head by ridge regression."""
    from .encoder_training import FaceEncoderFitOptions, fit_face_encoder
    from .errors import InputError
    from .models.encoder import save_encoder
    from .progress import StepProgress

    if out.suffix.lower() != ".pt":
        raise typer.BadParameter(f"--out {out}: the name must end in .pt")
    try:
        opts = FaceEncoderFitOptions(samples=samples, rank=rank, seed=seed)  # checked before minutes of rendering
    except InputError as e:  # a rank above the features' count: the command line's mistake
        raise typer.BadParameter(str(e)) from None
    check_not_read(out, [network])
    check_new_file(out, overwrite)
    G, _ = load(network, device)
    with StepProgress("rendering", samples) as bar:
        encoder, report = fit_face_encoder(G, opts, callback=bar.update)
    out.parent.mkdir(parents=True, exist_ok=True)  # (now: a fit that fails leaves no folder behind)
    save_encoder(out, encoder, training={"fit": report})
    say(f"held-out latent error {report['held_out_error_reduced']:.3f} of w_avg's at rank {report['rank']} "
               f"({report['held_out_error']:.3f} at full rank, penalty {report['penalty']:g}); wrote {out}")


def encoded_before(latent_path: Path, same: dict, aligned: bool, face_index: int = 0) -> bool:
    """Whether a latent file is `encoder run`'s output for this photo with these options (and this
    encoder's content, where the file records it: an encoder retrained under one name is another)."""
    from .projector.run import earlier_meta

    meta, _ = earlier_meta(latent_path)
    if meta is None:
        return False
    compared = {k: v for k, v in same.items() if k != "stylelift" and (k in meta or k not in LATER_KEYS)}  # files of earlier versions lack these
    alignment = meta.get("alignment")
    same_face = not isinstance(alignment, dict) or alignment.get("face_index", 0) == face_index
    return all(meta.get(k) == v for k, v in compared.items()) and ("alignment" in meta) == aligned and same_face


LATER_KEYS = ("encoder_sha256", "space", "resolution")  # what `encoder run` records since a later version



@encoder_app.command("run", cls=OnceEach)
@user_errors
def encoder_run(
    photos: Annotated[list[str], typer.Argument(help="Photos: files, folders or globs.")],
    encoder_spec: Annotated[str, typer.Option("--encoder", callback=lambda value: not_empty(value, "give an encoder file or 'encoder'"), help="Encoder file, or 'encoder': the one shipped for the bundled network.")] = "encoder",
    network: NetworkOpt = DEFAULT_NETWORK,
    do_align: Annotated[bool, typer.Option("--align/--no-align", help="Align the face FFHQ-style first (else centre-crop).")] = True,
    face_index: Annotated[int, typer.Option(min=0, help="Which face of each photo, 0 = the largest (as `align --face-index`).")] = 0,
    outdir: Annotated[Path, output_option("Where to write NAME.npz and NAME_enc.png.")] = Path("encoded"),
    overwrite: Annotated[bool, typer.Option(help="Replace latent files that exist (a projection of the same photo, say).")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """One pass of the encoder per photo: a latent file and its image."""
    import torch

    from . import __version__
    from .cli import expand_photos
    from .errors import InputError, StyleliftError, per_item_error
    from .fileio import file_id, sha256_if_readable, special_file, written_together
    from .images import save_image, to_tensor, to_uint8
    from .latents import LatentFile, save_latents
    from .models import network_id
    from .models.encoder import load_encoder, resolve_encoder_path
    from .projector.files import replacing_photo
    from .projector.run import ProjectJob, prepare

    if face_index and not do_align:
        raise typer.BadParameter("--face-index picks a face to align; it needs --align")
    paths, failed = expand_photos(photos)
    check_outdir(outdir)  # before the network and encoder load (each photo said it)
    encoder_path = resolve_encoder_path(encoder_spec)
    G, dev = load(network, device)
    encoder, _ = load_encoder(encoder_path, G=G, device=dev)
    job = ProjectJob(network=network, align=do_align, outdir=outdir, device=dev, face_index=face_index)
    meta_base = {"network_id": network_id(G), "method": "encoder", "encoder": encoder_path.name, "encoder_sha256": sha256_if_readable(encoder_path),
                 "space": "w+", "resolution": G.img_resolution, "stylelift": __version__}
    stems: dict[str, Path] = {}
    photos = frozenset(file_id(p) for p in paths) - {None}  # never written over: --outdir may be the photos' own folder
    for path in paths:
        latent_path = outdir / f"{path.stem}.npz"
        taken = None
        if special_file(path):  # before it is hashed: a named pipe would be waited on
            taken = "not a regular file, not a photo"
        elif stems.setdefault(path.stem, path) != path:
            taken = f"its outputs would overwrite those of {printable(stems[path.stem].name)} (same name); rename it or use another --outdir"
        elif clash := next(filter(None, (replacing_photo(p, photos) for p in (latent_path, outdir / f"{path.stem}_enc.png"))), None):
            taken = printable(clash, 500)
        elif latent_path.exists() and not overwrite:
            if (outdir / f"{path.stem}_enc.png").is_file() and encoded_before(latent_path, {**meta_base, "photo_sha256": sha256_if_readable(path)}, do_align, face_index):
                say(f"{printable(path.name)}: already done (use --overwrite to redo)")
                continue
            taken = f"{printable(latent_path, 500)} exists; pass --overwrite to replace it, or another --outdir"
        if taken is not None:
            typer.secho(f"error: {printable(path.name)}: {taken}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        try:
            item = prepare(path, job, G.img_resolution)
        except Exception as e:  # this photo fails; the others still run
            typer.secho(f"error: {printable(per_item_error(e, path.name), 1000)}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        target = to_tensor(item.target).to(dev)
        with torch.no_grad():
            ws = encoder(target)
            image = G.synthesis(ws) if torch.isfinite(ws).all() else None
        meta = {**meta_base, "photo": path.name, "photo_sha256": sha256_if_readable(path)}
        if item.face is not None:
            meta["alignment"] = dict(item.face.transform_meta(), photo_path=str(path.resolve()))
        try:  # this photo's files; a failure (a full disk) is its own, and the others still run
            if image is None:
                raise InputError(f"the encoder's guess holds NaN or infinite values (is {encoder_path.name} damaged?)")
            with written_together([outdir / f"{path.stem}_enc.png", latent_path]) as (enc_png, latent_tmp):  # the latent file is renamed last: it says the photo is done
                save_image(to_uint8(image)[0], enc_png, icc_profile=item.profile)  # as project's images
                save_latents(latent_tmp, LatentFile(w=ws.cpu().numpy(), meta=meta))
        except (StyleliftError, OSError) as e:
            output_failed(path.name, e)
            failed += 1
            continue
        say(f"{printable(path.name)}{item.face.among() if item.face is not None else ''}: -> {printable(latent_path, 500)}")
    if failed:
        raise typer.Exit(1)
