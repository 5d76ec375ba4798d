"""Editing commands of the `stylelift` CLI: truncation-sweep, mix, interpolate, edit, directions."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
from pathlib import Path
from typing import Annotated, Iterable, Iterator, Optional

import numpy as np
import typer

from . import cli
from .errors import InputError, MissingFileError
from .fileio import check_writable, file_in_the_way, parse_json, raise_about, signals_deferred
from .seeds import seed_digits, seed_too_big
from .cli import DEFAULT_NETWORK, MAX_SEED, ClassOpt, CutoffOpt, DeviceOpt, NetworkOpt, OnceEach, PasteRegionOpt, app, check_new_file, check_outdir, check_seed_options, fail, in_float32, load, output_option, parse_int_list, printable, psi_value, say, too_big, user_errors

directions_app = typer.Typer(cls=cli.PlainFlagsGroup, no_args_is_help=True, help="Find attribute directions in W: learn, sefa, pca.")
app.add_typer(directions_app, name="directions")

TruncOpt = Annotated[float, typer.Option(help="Truncation psi for seeds (1 = none).", callback=psi_value)]
BatchOpt = Annotated[int, typer.Option(min=1, max=1024, help="Images rendered per network call.")]
def fps_option(default: int):
    """--fps, None when not given (`video_fps` gives its default)."""
    return Annotated[Optional[int], typer.Option(min=1, max=240, show_default=False, help=f"Frames per second of a video (.mp4 or .gif): {default} unless given.")]


def video_fps(fps: Optional[int], out: Path, default: int) -> int:
    """--fps for a video; given for a still, it would do nothing, so it is refused, not ignored."""
    if fps is not None and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise typer.BadParameter(f"--fps is for a video (.mp4 or .gif); {printable(out.name)} is a still")
    return default if fps is None else fps
MAX_VALUES = 10_000  # values one START:STOP:COUNT may ask for
OUTPUT_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".gif")


def check_out(out: Path, *, video: bool) -> None:
    """Refuse, before any work, an output name whose format we cannot write, then one that cannot be written."""
    check_out_name(out, video=video)
    check_out_place(out)


def check_out_name(out: Path, *, video: bool) -> None:
    """A usage error for an output name whose format we cannot write (a folder of that name is said as one)."""
    ok = OUTPUT_IMAGE_SUFFIXES + (VIDEO_SUFFIXES if video else ())
    if out.suffix.lower() not in ok:
        check_not_folder(out)
        check_named_before_suffix(out, ok)
        raise typer.BadParameter(f"--out {out}: the name must end in {', '.join(ok)}")


def check_named_before_suffix(out: Path, suffixes: Iterable[str]) -> None:
    """A usage error for an --out that is a suffix alone (".png": to Python a hidden file's name without one)."""
    if not out.suffix and out.name.lower() in suffixes:
        raise typer.BadParameter(f"--out {out}: give the file a name before its suffix, e.g. out{out.name.lower()}")


def check_out_place(out: Path, reads: Iterable = ()) -> None:
    """After the usage checks, before any work: `out` is no folder, none of the files the command
    `reads` (a latent file named lat.png), and its folder can be made and written."""
    check_not_folder(out, out.suffix or ".png")
    cli.check_not_read(out, list(reads))
    if (blocker := file_in_the_way(out.parent)) is not None:
        fail(f"{out}: {blocker} is a file, not a folder")
    check_writable(out.parent)


def check_not_folder(out: Path, suffix: str = ".png") -> None:
    """What is on disk, not the name given: exit 1, as `check_new_file` says it for the other commands."""
    if out.is_dir():
        fail(f"{out} is a folder; name the file to write, e.g. {out / 'NAME'}{suffix}")


MAX_IMAGE_SIDE = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500, ".gif": 65535, ".png": 2**31 - 1, ".mp4": 16384}  # what each format (ffmpeg's H.264 encoder) holds


def check_output_size(count: int, width: int, height: int, what: str, *, out: Path, cols: Optional[int] = None) -> None:
    """Refuse, before rendering, an output that would hold more image bytes than `cli.OUTPUT_BYTES`,
    or a picture larger than its format allows (`count` tiles, `cols` to a row as `make_grid` lays
    them out; each frame alone in a video, and an .mp4's frames go to ffmpeg as they come, so only
    one is held)."""
    suffix = out.suffix.lower()
    if suffix == ".mp4":
        count, what = 1, f"one frame of {what}"
    side_w, side_h = width, height  # a frame of a video; a grid's picture:
    if suffix not in VIDEO_SUFFIXES:
        cols = cols or math.ceil(math.sqrt(count))
        side_w, side_h = width * cols, height * math.ceil(count / cols)  # as make_grid lays them out
    limit = MAX_IMAGE_SIDE.get(suffix)
    if limit is not None and max(side_w, side_h) > limit:  # first: "ask for at most 0" below would not help
        fail(f"{what} would be {side_w}x{side_h} pixels, more than a {suffix} holds ({limit} a side); write a .png{' or a .gif' if suffix == '.mp4' else ''}, or fewer images")
    if too_big(count, width, height):
        gib = count * width * height * 3 / 2**30
        fail(f"{what} would hold {count} images of {width}x{height} ({gib:.1f} GiB); ask for at most {cli.OUTPUT_BYTES // (3 * width * height)}")


def named_direction(value: Optional[str]) -> Optional[str]:
    """Option callback: --direction and --condition name something."""
    return cli.not_empty(value, "name a shipped direction (age, gender) or a direction file (.npy)")


def layer_spec(value: Optional[str]) -> Optional[str]:
    """Option callback: a layer spec some network could take, read before any network loads (a usage
    error); `layers_option` checks its indices against the network's ws."""
    from .editing.layers import layer_spec_items

    if value is not None:
        try:
            layer_spec_items(value)
        except InputError as e:
            raise typer.BadParameter(str(e)) from None
    return value


def layers_option(spec: Optional[str], G, option: str):
    """`parse_layers` for a command's option, whose name starts the message of a bad spec; None stays None (all)."""
    from .editing import parse_layers

    if spec is None:
        return None
    try:
        return parse_layers(spec, G.layer_resolutions)
    except InputError as e:
        raise InputError(f"{option}: {e}") from None


def check_mp4_writer(out: Path) -> None:
    """Before rendering: an .mp4 needs an ffmpeg that runs."""
    from .errors import VideoError
    from .images import find_ffmpeg

    if out.suffix.lower() == ".mp4":
        try:
            find_ffmpeg()
        except VideoError as e:
            fail(f"{e}; write a .gif instead, or install ffmpeg")


def parse_range(text: str, *, what: str) -> list[float]:
    """'-3:3:7' -> 7 values from -3 to 3; '0.5' or '0,0.5,1' -> those values."""
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            if not 1 <= int(n) <= MAX_VALUES:
                raise typer.BadParameter(f"{what} {text!r}: COUNT must be 1 to {MAX_VALUES}")
            if not np.isfinite([float(lo), float(hi)]).all() or abs(float(hi) - float(lo)) > 1e300:
                raise typer.BadParameter(f"{what} {text!r}: START and STOP must be finite numbers")
            values = [float(v) for v in np.linspace(float(lo), float(hi), int(n))]
        else:
            values = [float(v) for v in text.split(",")]
        if len(values) > MAX_VALUES:
            raise typer.BadParameter(f"{what} lists {len(values)} values; at most {MAX_VALUES}")
        if not np.isfinite(values).all():
            raise typer.BadParameter(f"{what} {text!r}: the values must be finite numbers")
        return values
    except ValueError:
        raise typer.BadParameter(f"cannot read {what} {text!r}; use START:STOP:COUNT or a comma list") from None


def split_items(text: str, *, what: str) -> list[str]:
    """'1,2,a.npz,5-7' -> ['1', '2', 'a.npz', '5', '6', '7']; an empty item is refused, as in --seeds."""
    items: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise typer.BadParameter(f"{what} {text!r} has an empty item; list seeds and latent files separated by commas")
        try:
            items += expand_seed_lists([part])  # a range of seeds (a malformed one is told so), else a seed or a file
        except typer.BadParameter as e:
            raise typer.BadParameter(f"{what} {e.message}") from None
    return items


def expand_seed_lists(items: list[str]) -> list[str]:
    """Positional items, each a latent file or seeds as --seeds takes them ('7', '0-3', '1,5-6'),
    expanded in order. A file that is not named as a single seed is a file, whatever its name looks
    like; digits, commas and dashes that name no file are read as seeds (so '0,1,' is told of its
    empty item)."""
    out: list[str] = []
    for item in items:
        if not item.strip():
            raise typer.BadParameter("an empty item: give seeds (e.g. 42) and latent files (.npz)")
        if re.fullmatch(r"[0-9]+", item):  # one seed ('007' is seed 7)
            if (digits := seed_digits(item)) is None:
                raise typer.BadParameter(seed_too_big(item))
            out.append(digits)
            continue
        if re.fullmatch(r"[0-9,\s-]*[0-9][0-9,\s-]*", item) and not os.path.isfile(item):
            try:
                out += [str(s) for s in parse_int_list(item)]
            except typer.BadParameter as e:
                raise typer.BadParameter(f"{item!r} is neither a latent file nor a list of seeds: {e.message}") from None
        else:
            out.append(item)
    return out


def save_output(images: Iterable[np.ndarray], out: Path, *, cols: Optional[int] = None, fps: int = 30, icc_profile: Optional[bytes] = None) -> None:
    """Write the images as one grid picture or a video, whichever `out` names. Frames that come from
    an iterator are rendered as an mp4 is written: its folder is made at the first one (and kept
    when a later one fails: another run may be writing there too; a still or a GIF makes its
    folder once every image is rendered), and the iterator is closed however the writing ends."""
    from .images import GIF_MAX_FPS, make_grid, save_image, write_video

    check_out(out, video=True)
    frames = iter(images)
    try:
        first = next(frames, None)
        if first is None:
            raise InputError(f"no images to write to {out.name}")
        if out.suffix.lower() == ".mp4":  # written frame by frame as they come: its folder is needed now
            out.parent.mkdir(parents=True, exist_ok=True)
            write_video(out, itertools.chain([first], frames), fps=fps)
        else:  # all rendered first (a GIF's timing needs every frame): a failing one leaves no folder
            images = [first, *frames]
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix.lower() == ".gif":
                write_video(out, images, fps=fps)
            else:
                save_image(make_grid(images, cols=cols), out, icc_profile=icc_profile)
        if out.suffix.lower() == ".gif" and fps > GIF_MAX_FPS:
            typer.secho(f"note: a GIF plays at most {GIF_MAX_FPS} frames a second, so {out.name} does (every frame kept); write an .mp4 for {fps}", fg=typer.colors.YELLOW, err=True)
    finally:
        if hasattr(frames, "close"):
            frames.close()  # a progress bar inside ends before the error is printed
    say(f"wrote {out}")


def shown(images: Iterable[np.ndarray], total: int, label: str = "rendering") -> Iterator[np.ndarray]:
    """`images` as they come, with a progress bar on stderr (a line every tenth off a terminal)."""
    from .progress import StepProgress

    with StepProgress(label, total, transient=True) as bar:
        for k, image in enumerate(images, 1):
            yield image
            bar.update(k)


def trunc_hint(trunc: float, *items: str) -> str:
    """What to change when an image made from these items is not finite: --trunc, when it was given
    and one of them is a seed (a latent file's own w is not truncated)."""
    from .generation import is_seed

    return "ask for a --trunc nearer 0" if trunc != 1 and any(is_seed(item) for item in items) else ""


@app.command("truncation-sweep", cls=OnceEach)
@user_errors
def truncation_sweep(
    network: NetworkOpt = DEFAULT_NETWORK,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, one row each; 0-3 when neither --seeds nor --latents is given.")] = None,
    latents: Annotated[Optional[list[Path]], cli.input_option("Latent files (from project), one row each after the seeds; repeat the option for more.")] = None,
    psi: Annotated[str, typer.Option(help="psi values, START:STOP:COUNT or a comma list (0.5,0.7,1), one column each.")] = "-1:1:9",
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    out: Annotated[Path, output_option("Grid image to write.")] = Path("truncation.png"),
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
) -> None:
    """The StyleGAN paper's truncation figure: seeds (and latent files) down, psi across."""
    import torch

    from .editing import truncate
    from .generation import is_seed, item_name, item_noises, iter_render_ws, latents_for_items, noises_by_item

    psis = parse_range(psi, what="--psi")
    for p in psis:
        in_float32(p, "--psi ")
    seed_list = parse_int_list(seeds) if seeds is not None else [] if latents else parse_int_list("0-3")
    items = [str(s) for s in seed_list] + [str(p) if not is_seed(str(p)) else f"./{p}" for p in latents or []]  # a file named 12 is not seed 12
    check_seed_options(items, class_idx=class_idx)
    check_out_name(out, video=False)  # the last usage check: a folder of that name is said as one
    if missing := next((p for p in latents or [] if not p.exists()), None):  # an option of files: not "neither a seed nor a latent file"
        raise MissingFileError(f"no latent file {missing}")
    check_out_place(out, reads=latents or [])
    G, dev = load(network, device)
    check_output_size(len(items) * len(psis), G.img_resolution, G.img_resolution, "the grid", out=out, cols=len(psis))
    ws = latents_for_items(G, items, class_idx=class_idx, device=dev)
    grid = torch.cat([truncate(ws[i : i + 1], G.w_avg, p, trunc_cutoff) for i in range(len(ws)) for p in psis])
    row_noises = noises_by_item(item_noises(G, items, dev), lambda k: k // len(psis))  # latent files bring their noise maps, the same in every column

    def names(k: int) -> str:
        return f"{item_name(items[k // len(psis)])} at psi {psis[k % len(psis)]:g}"

    images = iter_render_ws(G, grid, batch_size=batch_size, noises=row_noises, names=names, hint="ask for --psi values nearer 0")
    save_output(shown(images, len(grid)), out, cols=len(psis))


@app.command(cls=OnceEach)
@user_errors
def mix(
    rows: Annotated[str, typer.Option(help="Row sources: seeds and/or latent files, e.g. 1,2,a.npz.")],
    cols: Annotated[str, typer.Option(help="Column sources: seeds and/or latent files.")],
    styles: Annotated[str, typer.Option(callback=layer_spec, help="Layers taken from the column source: coarse, middle, fine, or 0-3,8.")] = "coarse",
    network: NetworkOpt = DEFAULT_NETWORK,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    out: Annotated[Path, output_option("Grid image to write.")] = Path("mix.png"),
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
) -> None:
    """Style-mixing grid: sources on the top row and left column, each cell mixes its row and column."""
    import torch

    from .editing import mixing_grid
    from .generation import item_name, item_noises, iter_render_ws, latents_for_items, render_ws

    row_items, col_items = split_items(rows, what="--rows"), split_items(cols, what="--cols")
    check_seed_options(row_items + col_items, class_idx=class_idx, truncation_psi=trunc, truncation_cutoff=trunc_cutoff)
    check_out_name(out, video=False)  # the last usage check: a folder of that name is said as one
    check_out_place(out, reads=row_items + col_items)
    G, dev = load(network, device)
    layers = layers_option(styles, G, "--styles")
    check_output_size((len(row_items) + 1) * (len(col_items) + 1), G.img_resolution, G.img_resolution, "the grid", out=out, cols=len(col_items) + 1)
    row_ws = latents_for_items(G, row_items, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, device=dev)
    col_ws = latents_for_items(G, col_items, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, device=dev)
    noises = item_noises(G, row_items + col_items, dev)  # latent files bring their noise maps
    cell_noises = None
    if noises is not None:
        mixed, r, c = set(layers), len(row_items), len(col_items)

        def cell_noises(start: int, stop: int) -> list:  # noise input k sits in the layer that reads ws[k]
            i, j = torch.arange(start, stop).div(c, rounding_mode="floor"), torch.arange(start, stop) % c  # cell (i, j), row-major
            return [maps[r + j] if k in mixed else maps[i] for k, maps in enumerate(noises)]

    n_rows, n_cols = len(row_items), len(col_items)
    row_noises, col_noises = (None, None) if noises is None else ([m[:n_rows] for m in noises], [m[n_rows:] for m in noises])
    row_imgs = render_ws(G, row_ws, batch_size=batch_size, noises=row_noises, names=lambda k: item_name(row_items[k]), hint=lambda k: trunc_hint(trunc, row_items[k]))
    col_imgs = render_ws(G, col_ws, batch_size=batch_size, noises=col_noises, names=lambda k: item_name(col_items[k]), hint=lambda k: trunc_hint(trunc, col_items[k]))

    def cell_name(k: int) -> str:
        return f"the cell of {item_name(row_items[k // n_cols])} and {item_name(col_items[k % n_cols])}"

    def cell_hint(k: int) -> str:
        return trunc_hint(trunc, row_items[k // n_cols], col_items[k % n_cols])

    cells = list(shown(iter_render_ws(G, mixing_grid(row_ws, col_ws, layers), batch_size=batch_size, noises=cell_noises, names=cell_name, hint=cell_hint), n_rows * n_cols, "rendering the mixed cells"))  # the sources were rendered first
    blank = np.full_like(cells[0], 255)
    tiles = [blank] + col_imgs
    for i, row_img in enumerate(row_imgs):
        tiles += [row_img] + cells[i * len(col_imgs) : (i + 1) * len(col_imgs)]
    save_output(tiles, out, cols=len(col_imgs) + 1)


@app.command(cls=OnceEach)
@user_errors
def interpolate(
    items: Annotated[list[str], typer.Argument(callback=expand_seed_lists, help="Two or more seeds (or lists such as 0-3 or 1,5) and/or latent files, in order.")],
    network: NetworkOpt = DEFAULT_NETWORK,
    frames: Annotated[int, typer.Option(min=2, max=MAX_VALUES, help="Frames in all (at least one per item).")] = 60,
    fps: fps_option(30) = None,
    space: Annotated[str, typer.Option(help="w (lerp of ws) or z (slerp of z, seeds only).")] = "w",
    loop: Annotated[bool, typer.Option("--loop", help="Return to the first item at the end.")] = False,
    easing: Annotated[str, typer.Option(help="linear or smooth.")] = "linear",
    grid: Annotated[bool, typer.Option("--grid", help="Write a still strip of the frames instead of a video.")] = False,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    out: Annotated[Optional[Path], output_option(".mp4 or .gif, or .png with --grid (default: interpolation.mp4, or interpolation.png with --grid).")] = None,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
) -> None:
    """A video (or strip) moving through the given latents in order."""
    import torch

    from .editing import interpolation_path
    from .editing.interpolation import between, path_steps
    from .generation import is_seed, item_noises, iter_render_ws, latents_for_items, mapped_z, z_from_seed

    if len(items) < 2:
        raise typer.BadParameter("give at least two seeds or latent files")
    check_seed_options(items, class_idx=class_idx, truncation_psi=trunc, truncation_cutoff=trunc_cutoff)
    if space not in ("w", "z"):
        raise typer.BadParameter(f"--space must be w or z, not {space!r:.20}")
    if easing not in ("linear", "smooth"):
        raise typer.BadParameter(f"--easing must be linear or smooth, not {easing!r:.20}")
    if frames < max(2, len(items)):
        raise typer.BadParameter(f"--frames must be at least {max(2, len(items))}: a frame for each of the {len(items)} items")
    if space == "z" and not all(is_seed(i) for i in items):
        raise typer.BadParameter("--space z needs seeds; latent files live in W (use --space w)")
    out = out or Path("interpolation.png" if grid else "interpolation.mp4")
    if not grid and out.suffix.lower() not in VIDEO_SUFFIXES:
        check_not_folder(out, ".mp4")
        check_named_before_suffix(out, VIDEO_SUFFIXES)
        raise typer.BadParameter("--out must end in .mp4 or .gif (or pass --grid for a still)")
    if grid and out.suffix.lower() in VIDEO_SUFFIXES:
        raise typer.BadParameter(f"--grid writes a still strip: give --out NAME.png, not {out.name}")
    if grid and fps is not None:
        raise typer.BadParameter("--fps is for a video; --grid writes a still strip")
    fps = video_fps(fps, out, 30)
    if grid:
        check_out_name(out, video=False)
    check_out_place(out, reads=items)
    G, dev = load(network, device)
    frame_noises = None
    steps = path_steps(len(items), frames, loop=loop, easing=easing)  # where each frame lies: (item a, item b, t)
    if space == "z":
        zs = torch.from_numpy(np.concatenate([z_from_seed(int(i), G.z_dim) for i in items])).float()
        path_z = interpolation_path(zs, frames, loop=loop, easing=easing, spherical=True)
        ws = mapped_z(G, path_z, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, batch_size=batch_size, device=dev)  # one class for the whole path
    else:
        keys = latents_for_items(G, items, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, device=dev)
        ws = interpolation_path(keys.cpu(), frames, loop=loop, easing=easing).to(dev)
        noises = item_noises(G, items, dev)  # latent files bring their noise maps: lerped as their ws are
        if noises is not None:

            def frame_noises(start: int, stop: int) -> list:
                return [torch.stack([between(maps[a], maps[b], t) for a, b, t in steps[start:stop]]) for maps in noises]

    if grid or out.suffix.lower() == ".gif":
        check_output_size(frames, G.img_resolution, G.img_resolution, "the strip" if grid else "the GIF", out=out, cols=frames)
    check_mp4_writer(out)  # an mp4 is written as its frames come: no size to check, but it needs ffmpeg

    def frame_hint(k: int) -> str:  # the items frame k is made of: a key's own frame is that key alone
        a, b, t = steps[k]
        return trunc_hint(trunc, *([items[a]] if t == 0 else [items[b]] if t == 1 else [items[a], items[b]]))

    images = iter_render_ws(G, ws, batch_size=batch_size, noises=frame_noises, names=lambda k: f"frame {k + 1} of {len(ws)}", hint=frame_hint)
    save_output(shown(images, len(ws)), out, cols=len(ws), fps=fps)  # an mp4 takes the frames as they are rendered


@app.command(cls=OnceEach)
@user_errors
def edit(
    items: Annotated[list[str], typer.Argument(callback=expand_seed_lists, help="Latent files (from project) and/or seeds (or lists such as 0-3 or 1,5): one row of the strip each.")],
    direction: Annotated[str, typer.Option(callback=named_direction, help="age, gender (shipped for the bundled network) or a direction .npy.")],
    strength: Annotated[str, typer.Option(help="Strengths START:STOP:COUNT or a list.")] = "-3:3:7",
    unit: Annotated[str, typer.Option(help="What a strength of 1 is: w (a distance of 1 in W along the unit direction, InterFaceGAN's unit) or sigma (one standard deviation of the network's w along it, GANSpace's, measured on 10,000 samples; w varies far more along some PCA and SeFa directions than along others).")] = "w",
    layers: Annotated[Optional[str], typer.Option(callback=layer_spec, help="Apply only on these layers: coarse, middle, fine, 0-7, all (default: the direction's own, else all).")] = None,
    network: NetworkOpt = DEFAULT_NETWORK,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    paste_back: Annotated[bool, typer.Option("--paste-back", help="Paste each edited face into the original photo (one latent file).")] = False,
    photo: Annotated[Optional[Path], cli.input_option("The original photo for --paste-back (default: the one the latent file names).")] = None,
    paste_region: PasteRegionOpt = None,
    out: Annotated[Path, output_option("A strip (.png, .jpg, .webp, .bmp, .tif), one row per item and one column per strength, or .mp4/.gif for a video with one frame per strength, the items side by side (the default 7 strengths at --fps 10 last 0.7 s; --strength -3:3:61 --fps 30 gives two seconds).")] = Path("edit.png"),
    fps: fps_option(10) = None,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
) -> None:
    """Move latents along an attribute direction at several strengths."""
    import torch

    from .editing import apply_direction, parse_layers, w_std_along
    from .editing.shipped import resolve_direction
    from .generation import is_seed, item_name, item_noises, iter_render_ws, latents_for_items, noises_by_item
    from .images import check_photo_path, make_grid, photo_profile
    from .latents import load_latents

    if unit not in ("w", "sigma"):
        raise typer.BadParameter(f"--unit must be w or sigma, not {unit!r:.20}")
    if paste_back and len(items) > 1:
        raise typer.BadParameter("--paste-back pastes into one photo: give one latent file")
    if paste_back and is_seed(items[0]):
        raise typer.BadParameter(f"--paste-back: {items[0]} is a seed; it needs a latent file made by `stylelift project` from a photo")
    if len(items) > cli.MAX_LIST:
        raise typer.BadParameter(f"{len(items)} items; at most {cli.MAX_LIST}")
    check_seed_options(items, class_idx=class_idx, truncation_psi=trunc, truncation_cutoff=trunc_cutoff)
    if photo is not None and not paste_back:
        raise typer.BadParameter("--photo is the photo --paste-back pastes into; add --paste-back")
    cli.check_paste_region(paste_region, paste_back)
    strengths = parse_range(strength, what="--strength")
    check_out_name(out, video=True)  # the last usage checks: a folder of that name is said as one
    fps = video_fps(fps, out, 10)
    check_out_place(out, reads=[*items, direction])
    if photo is not None:
        check_photo_path(photo)  # before the network loads (its errors are one line, as project's)
    video = out.suffix.lower() in VIDEO_SUFFIXES
    G, dev = load(network, device)
    res, k, n = G.img_resolution, len(items), len(strengths)
    if video:  # each frame: the items side by side
        check_output_size(n, k * res, res, "the edit", out=out)
        check_mp4_writer(out)
    else:
        check_output_size(k * n, res, res, "the edit", out=out, cols=n)
    d = resolve_direction(direction, G)
    vector = d.vector
    if unit == "sigma":
        sigma = w_std_along(G, d.vector)
        typer.echo(f"1 sigma along {printable(direction, 100)} is {sigma:.3g} in W", err=True)
        vector = d.vector * sigma
    layer_idx = layers_option(layers, G, "--layers")  # else the layers the direction's sidecar names, else all
    try:
        if layers is None and (spec := d.default_layers) is not None:
            layer_idx = parse_layers(spec, G.layer_resolutions)
    except InputError as e:  # the sidecar's mistake, not the user's
        fail(f"{Path(direction).with_suffix('.json').name}, the sidecar of {Path(direction).name}: {e} (or give --layers)")
    ws = latents_for_items(G, items, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, device=dev)
    noises = item_noises(G, items, dev)  # latent files bring their noise maps
    if paste_back:  # checked now, not after the rendering
        target = paste_target(None if is_seed(items[0]) else load_latents(items[0]), photo, items[0], n, out=out, region=paste_region or "face")

    def edited_at(i: int, strength: float) -> torch.Tensor:
        try:
            return apply_direction(ws[i : i + 1], vector, strength, layer_idx)
        except InputError as e:
            raise InputError(f"{item_name(items[i])} at strength {strength:g}: {e}") from None

    # image m is item m % k at strength m // k in a video (frame by frame, the items side by side),
    # item m // n at strength m % n in a strip (row by row)
    order = [(m % k, m // k) if video else (m // n, m % n) for m in range(k * n)]
    edited = torch.cat([edited_at(i, strengths[j]) for i, j in order])

    def hint(m: int) -> str:  # what to change when image m is not finite
        i, j = order[m]
        knobs = ["--strength values"] * (strengths[j] != 0) + ["a --trunc"] * (trunc != 1 and is_seed(items[i]))
        return f"ask for {' or '.join(knobs)} nearer 0" if knobs else ""

    rendered = shown(iter_render_ws(G, edited, batch_size=batch_size, noises=noises_by_item(noises, lambda m: order[m][0]),
                                    names=lambda m: f"{item_name(items[order[m][0]])} at strength {strengths[order[m][1]]:g}", hint=hint), k * n)
    with contextlib.closing(rendered):  # its progress bar ends before an error is printed
        images = rendered
        if paste_back:  # one latent file
            from PIL import Image

            from .paste import paste_back as paste

            face, original = target
            images = (np.asarray(paste(Image.fromarray(im), face, original, region=paste_region or "face")) for im in rendered)
        if video:  # each frame as it is rendered: an mp4 of any length is never held in memory
            frames = images if k == 1 else (make_grid([first, *itertools.islice(images, k - 1)], cols=k) for first in images)
            save_output(frames, out, fps=fps)
        else:
            profile = photo_profile(target[1]) if paste_back else None  # pasted into the photo: its colour profile
            save_output(images, out, cols=n, icc_profile=profile)


def paste_target(latents, photo: Optional[Path], item: str, count: int, *, out: Path, region: str = "face"):
    """(the AlignedFace, the photo) that --paste-back pastes `count` edited faces of `item` into,
    checked before anything is rendered."""
    from .align import AlignedFace, with_landmarks
    from .fileio import file_id, sha256_if_readable
    from .images import load_photo

    if latents is None:
        fail(f"--paste-back: {item} is a seed; it needs a latent file made by `stylelift project` from a photo")
    align = latents.meta.get("alignment") or None
    if align is None:
        fail(f"--paste-back needs a latent file made by `stylelift project` with alignment; {item} has none")
    face = AlignedFace.from_meta(align, what=item)
    photo_path = photo or align.get("photo_path")
    if not isinstance(photo_path, (str, Path)) or not photo_path:
        fail(f"--paste-back: {item} does not name the photo it was projected from; pass it with --photo PATH")
    if not Path(photo_path).is_file():
        fail(f"--paste-back: the photo {item} was projected from is no longer at {printable(photo_path)}; pass it with --photo PATH")
    if file_id(out) is not None and file_id(out) == file_id(Path(photo_path)):
        fail(f"--out {printable(out)} is the photo the edit is pasted into; give another --out (the photo is never written over)")
    original = load_photo(Path(photo_path))
    if original.size != face.source_size:  # paste_back would say so, after the rendering
        fail(f"--paste-back: {printable(Path(photo_path).name)} is {original.width}x{original.height}, but {printable(item)} was aligned in a "
             f"{face.source_size[0]}x{face.source_size[1]} photo; pass the photo it was projected from with --photo")
    check_output_size(count, original.width, original.height, "the edit pasted into the photo", out=out, cols=count)  # photo-sized images
    projected = latents.meta.get("photo_sha256")
    if isinstance(projected, str) and projected != sha256_if_readable(Path(photo_path)):  # a size check alone passed a mirrored copy
        typer.secho(f"warning: {printable(Path(photo_path).name)} is not the photo {printable(item)} was projected from (another SHA-256); "
                    "the face goes where that photo's face was", fg=typer.colors.YELLOW, err=True)
    if region == "face":  # found once, not for every strength (records from before they were kept have none)
        face = with_landmarks(face, original)
    return face, original


# ----------------------------------------------------------------------------------------------
# directions


@directions_app.command("learn", cls=OnceEach)
@user_errors
def directions_learn(
    ctx: typer.Context,
    attribute: Annotated[str, typer.Option(help="age or gender (labelled by the offline classifier; for age the youngest and oldest 30% are the two classes, as with any labels that are not 0/1), or any name with --labels.")],
    out: Annotated[Path, output_option("Direction file to write (.npy, with a .json sidecar).")],
    network: NetworkOpt = DEFAULT_NETWORK,
    samples: Annotated[int, typer.Option(min=10, max=1_000_000, help="Latents to sample and label (each labelled w is kept for the fit, about 12 KB each: 12 GB a million).")] = 1000,
    labels: Annotated[Optional[Path], cli.input_option("CSV of seed,label or latent_file,label instead of the classifier.")] = None,
    condition_on: Annotated[Optional[str], typer.Option("--condition", callback=named_direction, help="Remove the component along this direction: a shipped one (age, gender; bundled network) or a .npy file.")] = None,
    save_labels: Annotated[Optional[Path], output_option("Also write the classifier's labels as an item,label CSV of seeds, after a comment line that records the sampling (reusable with --labels).")] = None,
    layers: Annotated[Optional[str], typer.Option(callback=layer_spec, help="Record the layers the edit is meant for (coarse, middle, fine, 4-22, ...); `edit` uses them by default.")] = None,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="First seed of the sampled latents.")] = 0,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """InterFaceGAN: label sampled faces, fit a linear boundary in W, save its unit normal."""
    from .editing import save_direction
    from .editing.learn import EXTREME_FRACTION, MIN_FIT, fewest_for_ends, learn_direction
    from .editing.shipped import SHIPPED

    if out.suffix.lower() != ".npy":
        check_named_before_suffix(out, (".npy",))
        raise typer.BadParameter(f"--out {out}: a direction file ends in .npy")
    if save_labels is not None and labels is not None:
        raise typer.BadParameter("--save-labels writes the classifier's labels; with --labels there are none to write")
    if not attribute.strip():
        raise typer.BadParameter("--attribute is empty; name what the labels measure, e.g. age")
    if labels is not None and (given := [f"--{name}" for name in ("samples", "seed") if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]):  # (typer's own copy of click's enum)
        raise typer.BadParameter(f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} the faces the classifier labels; with --labels the CSV names them")
    if labels is None and attribute not in ("age", "gender"):
        raise typer.BadParameter(f"the offline classifier knows age and gender, not {attribute!r:.30}; pass --labels CSV for another attribute")
    if labels is None and attribute == "age" and samples < (fewest := fewest_for_ends()):  # (the library says it too, after loading the network)
        raise typer.BadParameter(f"--samples {samples} is too few for age: its boundary is fitted on the youngest and oldest {EXTREME_FRACTION:.0%}, {MIN_FIT} faces at least; ask for {fewest} or more")
    if labels is None and seed + samples - 1 > MAX_SEED:
        raise typer.BadParameter(f"--seed {seed} with --samples {samples} runs past seed {MAX_SEED} (seeds are 32-bit); start at --seed {MAX_SEED - samples + 1} or lower")
    if save_labels is not None and save_labels.resolve() in (out.resolve(), out.with_suffix(".json").resolve()):  # (dl/../dl/g.json too)
        raise typer.BadParameter("--save-labels names the direction file or its sidecar; name another file")
    reads = [Path(p) for p in (labels, condition_on) if p is not None and p not in SHIPPED]  # (a shipped direction is named, not a file here)
    cli.check_not_read(out, reads)  # before the checks below, which would advise --overwrite
    cli.check_not_read(out.with_suffix(".json"), reads, what="--out's sidecar")
    check_new_file(out, overwrite)  # these are checked now, not after the labelling
    check_new_file(out.with_suffix(".json"), overwrite, remedy="it would be replaced by the direction's sidecar; pass --overwrite to replace it")
    if save_labels is not None:
        check_new_file(save_labels, overwrite)
    G, dev = load(network, device)
    layers_option(layers, G, "--layers")
    from .progress import StepProgress

    bar = StepProgress("labelling", samples) if labels is None else None  # a labels CSV's faces were labelled before
    with bar if bar is not None else contextlib.nullcontext():
        d = learn_direction(
            G, attribute=attribute, samples=samples, labels_csv=labels, condition_on=condition_on,
            truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, first_seed=seed, batch_size=batch_size, device=dev, save_labels=save_labels,
            progress=lambda done, total, terms: bar.update(done, terms) if bar is not None else None,
        )
    if layers is not None:
        d.meta["layers"] = layers
    out.parent.mkdir(parents=True, exist_ok=True)
    save_direction(out, d)
    rough = f"; too few to tell much: label more {'rows of ' + labels.name if labels is not None else 'with --samples'}" if d.meta["held_out"] < 50 else ""
    conditioned = f", {d.meta['conditioned_accuracy']:.3f} once conditioned on {d.meta['conditioned_on']}" if "conditioned_accuracy" in d.meta else ""
    say(f"wrote {out} (held-out accuracy {d.meta['accuracy']:.3f}{conditioned} on {d.meta['held_out']} samples{rough})")


def earlier_set(outdir: Path, prefix: str) -> list[Path]:
    """The files of an earlier `directions PREFIX` run in `outdir`: PREFIX_00.npy, PREFIX_00.json, ...
    named as the command names them, each pair's sidecar saying the command made it."""
    if not outdir.is_dir():
        return []
    found = []
    for sidecar in outdir.glob(f"{prefix}_*.json"):
        if not sidecar.is_file():  # a named pipe would be waited on
            continue
        digits = sidecar.stem[len(prefix) + 1 :]
        if not (re.fullmatch(r"[0-9]{2,}", digits) and digits == f"{int(digits):02d}"):  # ASCII digits only ('²' is a digit to isdigit)
            continue
        try:
            made_by = parse_json(sidecar.read_text(encoding="utf-8")).get("method")
        except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object: not ours to touch
            continue
        if made_by == prefix:
            found += [p for p in (sidecar.with_suffix(".npy"), sidecar) if p.is_file()]
    return sorted(found)


def check_new_directions(outdir: Path, prefix: str, k: int, overwrite: bool) -> None:
    """Before any work: `outdir` holds none of the files this run writes and no earlier PREFIX_NN set,
    or --overwrite was given. A whole earlier set counts, not only the names this run writes: a
    smaller --k onto it would leave a folder holding two runs' directions under one numbering."""
    check_outdir(outdir)
    ours = {outdir / f"{prefix}_{i:02d}{suffix}" for i in range(k) for suffix in (".npy", ".json")}
    if folders := sorted(p.name for p in ours if p.is_dir()):  # found half-way through the writing, they would leave two sets
        fail(f"{outdir}/{folders[0]} is a folder where a direction file goes; move it or write to another --outdir")
    if overwrite or not outdir.is_dir():
        return
    taken = sorted({p.name for p in ours if p.exists()} | {p.name for p in earlier_set(outdir, prefix)})
    if taken:
        fail(f"{outdir}/ already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; pass --overwrite to replace them, or another --outdir")


def write_directions(outdir: Path, prefix: str, directions: list) -> None:
    """Write the set PREFIX_00.npy ..., then remove what is left of an earlier, larger set (--overwrite):
    the files `earlier_set` finds, never others. The set is written into a hidden folder in
    `outdir` first and moved in once whole, so a run stopped while writing leaves the earlier set as it was."""
    import tempfile

    from .editing import save_direction

    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outdir, prefix=f".{prefix}-") as staging:
        try:
            for i, d in enumerate(directions):
                save_direction(Path(staging) / f"{prefix}_{i:02d}.npy", d)
        except OSError as e:  # (a full disk) named by the file asked for, not by its place in the hidden folder
            raise_about(e, {Path(staging) / f"{prefix}_{i:02d}{end}": outdir / f"{prefix}_{i:02d}{end}" for end in (".npy", ".json")})
        written = sorted(os.listdir(staging))
        stale = [path for path in earlier_set(outdir, prefix) if path.name not in written]
        with signals_deferred():  # a set moved in part way, or beside the rest of an earlier one, would be half of each
            for name in written:
                os.replace(Path(staging) / name, outdir / name)
            for path in stale:
                path.unlink()


@directions_app.command("sefa", cls=OnceEach)
@user_errors
def directions_sefa(
    outdir: Annotated[Path, output_option("Folder for sefa_00.npy, ...")] = Path("directions"),
    network: NetworkOpt = DEFAULT_NETWORK,
    layers: Annotated[Optional[str], typer.Option(callback=layer_spec, help="Layers whose affines to factorise (default all).")] = None,
    k: Annotated[int, typer.Option(min=1, max=4096, help="How many directions.")] = 10,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier set of these directions in --outdir.")] = False,
) -> None:
    """Closed-form factorisation of the style affine weights (SeFa)."""
    from .editing import Direction, sefa
    from .models import network_id

    check_new_directions(outdir, "sefa", k, overwrite)
    G, _ = load(network, "cpu")
    idx = layers_option(layers, G, "--layers")
    vecs, values = sefa(G, layers=idx, k=k)
    metas = [{"network_id": network_id(G), "method": "sefa", "index": i, "eigenvalue": float(ev), "layers": layers} for i, ev in enumerate(values)]  # layers: the spec `edit` reads
    write_directions(outdir, "sefa", [Direction(v[None], m) for v, m in zip(vecs, metas)])
    say(f"wrote {len(vecs)} directions to {outdir}/" + (f" (asked for {k}; that is all there are)" if len(vecs) < k else ""))


@directions_app.command("pca", cls=OnceEach)
@user_errors
def directions_pca(
    outdir: Annotated[Path, output_option("Folder for pca_00.npy, ...")] = Path("directions"),
    network: NetworkOpt = DEFAULT_NETWORK,
    samples: Annotated[int, typer.Option(min=2, max=10_000_000, help="Sampled w.")] = 10_000,
    k: Annotated[int, typer.Option(min=1, max=4096, help="How many components.")] = 10,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Sampling seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier set of these directions in --outdir.")] = False,
) -> None:
    """Principal components of sampled w (GANSpace)."""
    from .editing import Direction, pca_directions
    from .models import network_id

    check_new_directions(outdir, "pca", k, overwrite)
    G, _ = load(network, "cpu")
    vecs, var = pca_directions(G, samples=samples, k=k, seed=seed)
    metas = [{"network_id": network_id(G), "method": "pca", "index": i, "variance": float(ev), "samples": samples} for i, ev in enumerate(var)]
    write_directions(outdir, "pca", [Direction(v[None], m) for v, m in zip(vecs, metas)])
    say(f"wrote {len(vecs)} directions to {outdir}/" + (f" (asked for {k}; {samples} samples in {G.w_dim}-D give no more)" if len(vecs) < k else ""))
