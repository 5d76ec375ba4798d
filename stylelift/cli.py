"""The `stylelift` command: parse, call the library, report. No math here."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Callable, Optional, Sequence

import numpy as np
import typer
from typer.core import TyperCommand, TyperGroup

from . import __version__
from .align import MAX_SIZE as ALIGN_MAX_SIZE
from .errors import InputError, StyleliftError, error_message, is_out_of_memory, per_item_error, printable, shortened
from .fileio import FULL_ERRNOS, check_writable, file_id, file_in_the_way, stopping_signals
from .runtime import keep_freed_memory
from .seeds import MAX_SEED, seed_digits

def plain_flags(params: list) -> list:
    """Flags (--overwrite, --help) shown without a value in --help: Typer 0.29 shows them as
    taking a `<bool>`, which reads as if `--overwrite true` were asked for."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class PlainFlagsGroup(TyperGroup):
    def get_params(self, ctx):
        return plain_flags(super().get_params(ctx))


app = typer.Typer(
    cls=PlainFlagsGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Lift photos into the latent space of StyleGAN generators and edit them there.",
)

DEFAULT_NETWORK = "mobile-ffhq"  # the bundled offline face generator


ITEM_OPTIONS = {"seeds", "latents", "direction", "rows", "cols", "photo", "labels", "condition_on"}  # options of one value naming what to work on


class OnceEach(TyperCommand):
    """A command that refuses an option naming what to work on given twice (`--latents a.npz
    --latents b.npz` reads as two files, and the parser would silently keep the last one). A
    setting given twice keeps its last value, as on most command lines (an alias's default overridden)."""

    def get_params(self, ctx):
        return plain_flags(super().get_params(ctx))

    def make_parser(self, ctx):
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_once(args):
            opts, rest, order = parse(args)  # order: each option once per time it was given
            seen = set()
            for param in order:
                if param.name in ITEM_OPTIONS and not getattr(param, "multiple", False) and param.name in seen:
                    ctx.fail(f"{max(param.opts, key=len)} is given more than once; it takes one value (the last would be used alone)")
                seen.add(param.name)
            return opts, rest, order

        parser.parse_args = parse_once
        return parser


NetworkOpt = Annotated[
    str,
    typer.Option("--network", "-n", callback=lambda value: not_empty(value, "name a network file, a URL or a known name"), help="Network file (NVIDIA .pkl, rosinality .pt, stylelift .pt), URL, or known name."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: the GPU when torch sees one)")]
CutoffOpt = Annotated[Optional[int], typer.Option(min=0, help="Truncate only the first N ws (default: all; NVIDIA's StyleGAN samples use 8).")]
PasteRegionOpt = Annotated[Optional[str], typer.Option(help="What --paste-back pastes: face (the face and forehead, outlined by landmarks; the default) or square (the whole aligned square, hair and background too).")]
ClassOpt = Annotated[Optional[int], typer.Option("--class", help="Class of the seeds' latents (conditional networks).")]


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {printable(message, 1000)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def say(text: str) -> None:
    """A result line on stdout; an error writing it names stdout ("stdout: No space left on device"
    under `> file` on a full disk), where it would otherwise read as if an output file had failed."""
    if sys.stdout is None:  # closed when Python started (`>&-`): the work goes on, and `run` says so at the end
        return
    try:
        typer.echo(text)
    except OSError as e:
        if e.filename is None and not isinstance(e, BrokenPipeError):  # (a closed pipe: see user_errors)
            e.filename = "stdout"
        raise


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def output_failed(photo: str, e: BaseException) -> None:
    """The error line of a photo whose files could not be written (a full disk, a name too long);
    the run goes on with the others."""
    stop_if_interrupted(e)
    typer.secho(f"error: {printable(photo)}: {printable(error_message(e), 1000)}", fg=typer.colors.RED, err=True)


def stop_if_interrupted(e: BaseException) -> None:
    """Stop as a Ctrl-C (exit 130) or SIGTERM (SystemExit) does when `e` was raised while one
    unwound the stack: torch's zip writer raises its own RuntimeError when stopped half-way."""
    seen = set()
    cause = e.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, KeyboardInterrupt):
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None
        if isinstance(cause, SystemExit):
            raise cause from None
        cause = cause.__context__


def stdout_is_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    import select

    try:
        events = select.poll()
        events.register(sys.stdout.fileno(), select.POLLOUT)
        return any(flags & (select.POLLERR | select.POLLHUP) for _, flags in events.poll(0))  # Linux: ERR; BSDs: HUP
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (a test runner's), or no poll
        return False


def _reported(fn: Callable, *args, **kwargs):
    """`fn`'s result, its expected errors said in one line (see `user_errors`)."""
    try:
        return fn(*args, **kwargs)
    except BrokenPipeError as e:
        if not stdout_is_gone():  # another pipe (a subprocess's): a real error
            fail(error_message(e))
        # whoever read stdout stopped (`stylelift info X | head -3`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush of stdout fails no more
        raise typer.Exit(1) from None
    except (StyleliftError, OSError) as e:  # OSError: missing files, a file where a folder should be, full disk, ...
        stop_if_interrupted(e)
        fail(error_message(e))
    except (MemoryError, RuntimeError) as e:  # RuntimeError: torch's GPU out-of-memory error is one
        stop_if_interrupted(e)
        if not is_out_of_memory(e):
            raise
        fail("out of memory: ask for fewer images, frames or samples at once (--batch-size)")
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130)


def user_errors(fn: Callable) -> Callable:
    """Turn expected errors into one red line on stderr and exit code 1 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = {}  # put back when the command is over (the CLI run in-process, as by CliRunner, leaves none of its own)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (kill, a batch scheduler) and SIGHUP (a closing terminal, a dropped ssh) unwind
            # like Ctrl-C, so the temporary files of half-done writes are removed and existing outputs
            # stay as they were (a SIGHUP that nohup ignores stays ignored)
            for sig in stopping_signals():
                if sig != signal.SIGINT:  # (Python's own: KeyboardInterrupt)
                    previous[sig] = signal.signal(sig, _terminated)
        try:
            return _reported(fn, *args, **kwargs)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


MAX_LIST = 100_000  # items one option may name
OUTPUT_BYTES = 2 << 30  # the most image bytes a grid, an edit or a GIF may hold (mp4 frames and single images are streamed)


def too_big(count: int, width: int, height: int) -> bool:
    """Whether `count` RGB images of this size would hold more than OUTPUT_BYTES."""
    return count * width * height * 3 > OUTPUT_BYTES


def check_outdir(outdir: Path) -> None:
    """Before any work: --outdir can be made (no file where it or a folder above it goes) and written to."""
    if (blocker := file_in_the_way(outdir)) is not None:
        fail(f"--outdir {outdir}: {blocker} is a file, not a folder")
    check_writable(outdir)


def check_new_file(path: Path, overwrite: bool, *, remedy: str = "pass --overwrite to replace it") -> None:
    """Refuse, before any work, an output file that is a folder, or that exists without --overwrite
    (`remedy` says what to do instead)."""
    if path.is_dir():
        fail(f"{path} is a folder; name the file to write")
    if path.exists() and not overwrite:
        fail(f"{path} exists; {remedy}")
    if (blocker := file_in_the_way(path.parent)) is not None:
        fail(f"{path}: {blocker} is a file, not a folder")
    check_writable(path.parent)


def check_not_read(out: Path, reads: Sequence, option: str = "--out", *, what: str = "") -> None:
    """Refuse, whatever --overwrite says, an output (`what`, else `option`) that is one of the files
    the command reads (by any name: a link, another case on macOS); `reads` may hold None and names of no file."""
    def read_as(r) -> Path:  # ~/net.pt as the loaders read it (~name of no such user: as written, as they fall back to)
        try:
            return Path(r).expanduser()
        except RuntimeError:
            return Path(r)

    if (out_id := file_id(out)) is not None and (read := next((r for r in reads if r is not None and file_id(read_as(r)) == out_id), None)):
        fail(f"{what or option} {printable(out)} is {printable(read)}, which this command reads; give another {option}")


def check_seed_options(items: Optional[Sequence[str]], *, class_idx: Optional[int] = None, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None) -> None:
    """--class and --trunc apply to the latents sampled from seeds (`items`: seeds and latent files;
    None: seeds only). Asked for with only latent files, they would do nothing, so they are refused
    (a usage error) rather than ignored. (--trunc-cutoff with --trunc 1, which scripts sweeping psi
    give, is taken: it truncates nothing, as psi 1 does.)"""
    from .generation import is_seed

    if items is None or any(is_seed(item) for item in items):
        return
    asked = [name for name, given in (("--class", class_idx is not None), ("--trunc", truncation_psi != 1), ("--trunc-cutoff", truncation_cutoff is not None)) if given]
    if asked:
        raise typer.BadParameter(f"{' and '.join(asked)} appl{'y' if len(asked) > 1 else 'ies'} to seeds; latent files already hold their ws (drop {'them' if len(asked) > 1 else 'it'})")


def loss_terms(spec: str, option: str = "") -> dict[str, float]:
    """A loss spec's terms and weights; a malformed one (an unknown term, a bad weight) is a usage
    error (of `option`, named when the error is not an option callback's, which click names).
    Weights a term needs that are not here are a file problem, said later."""
    from .projector.losses import parse_loss_spec

    try:
        return parse_loss_spec(spec)
    except InputError as e:
        raise typer.BadParameter(f"{option}: {e}" if option else str(e)) from None


def loss_value(value: str) -> str:
    """Option callback for project's --loss: 'auto' or terms `loss_terms` reads."""
    if value != "auto":
        loss_terms(value)
    return value


def psi_value(value: float) -> float:
    """Option callback: a truncation psi, finite and within float32's range (the networks' arithmetic)."""
    return in_float32(finite(value))


def in_float32(value: float, what: str = "") -> float:
    """A usage error for a number float32 cannot hold (`what` names the option)."""
    from .models.base import FLOAT32_MAX

    if abs(value) > FLOAT32_MAX:
        raise typer.BadParameter(f"{what}{value:g} is beyond float32's range")
    return value


def output_path(value: object) -> Path:
    """Parser of the output options: an empty name is refused (as a Path it is ".", and the
    outputs would land in the current folder)."""
    if not str(value).strip():
        raise typer.BadParameter("is empty; name a file or folder")
    return Path(value)


def not_empty(value: Optional[str], what_to_do: str) -> Optional[str]:
    """Option callback: a name that is not empty (it names nothing: a usage error)."""
    if value is not None and not value.strip():
        raise typer.BadParameter(f"is empty; {what_to_do}")
    return value


def input_path(value: object) -> Path:
    """Parser of options naming a file to read: an empty name is refused (as a Path it is ".", a
    folder, which the reader would call one)."""
    if not str(value).strip():
        raise typer.BadParameter("is empty; name a file")
    return Path(value)


def input_option(help: str, **kwargs):
    """typer.Option for a file to read (see `input_path`)."""
    return typer.Option(parser=input_path, metavar="<path>", help=help, **kwargs)


def output_option(help: str):
    """typer.Option for a file or folder to write (see `output_path`)."""
    return typer.Option(parser=output_path, metavar="<path>", help=help)


def fraction(value: float) -> float:
    """Option callback: a number from 0 to 1 (NaN named as such, not as out of range)."""
    if not 0 <= finite(value) <= 1:
        raise typer.BadParameter(f"{value} is not between 0 and 1")
    return value


def finite(value: Optional[float]) -> Optional[float]:
    """Option callback: NaN and infinity are not settings."""
    if value is not None and not np.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def parse_int_list(text: str, *, what: str = "seeds") -> list[int]:
    """'0,3,5-9' -> [0, 3, 5, 6, 7, 8, 9]."""
    if not text.strip():
        raise typer.BadParameter(f"{what} is empty; use e.g. 0,3,5-9")
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)  # ASCII digits: int() would also read '١' as 1
        if not part:
            raise typer.BadParameter(f"{what} {text!r} has an empty item (a comma too many?)")
        if not m:
            raise typer.BadParameter(f"cannot read {part!r} in {what} {text!r}; use e.g. 0,3,5-9")
        for given in (m.group(1), m.group(2) or m.group(1)):
            if seed_digits(given) is None:
                raise typer.BadParameter(f"seed {shortened(given.lstrip('0'))} in {what} {shortened(text)!r} is above {MAX_SEED} (seeds are 32-bit)")
        lo, hi = int(seed_digits(m.group(1))), int(seed_digits(m.group(2) or m.group(1)))
        if hi < lo:
            raise typer.BadParameter(f"range {part!r} in {what} runs backwards")
        if len(out) + hi - lo + 1 > MAX_LIST:
            raise typer.BadParameter(f"{what} {text!r} names more than {MAX_LIST} items")
        out.extend(range(lo, hi + 1))
    return out


class DownloadBar:
    """`progress(done, total)` for a download: a rich bar on stderr from the server's answer on, when
    stderr is a terminal; a log file gets lines instead (rich would leave a blank line there), one
    when the server answers and, when it gives the size, one at each tenth of the file.
    `done` counts the bytes received (0: nothing was downloaded)."""

    def __init__(self, label: str):
        self.label, self.done, self.bar = label, 0, None
        self.next_tenth = 1  # off a terminal: the tenth of the file at which the next line is written

    def __call__(self, done: int, total: Optional[int]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        self.done = done
        if self.bar is None:
            console = Console(stderr=True)
            columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
            self.bar = Progress(*columns, transient=True, console=console, disable=not console.is_terminal)
            if not console.is_terminal:
                typer.echo(f"{self.label} ({'size unknown' if total is None else f'{total / 2**20:.1f} MB'}) ...", err=True)
            self.bar.start()
            short = self.label if len(self.label) <= 60 else f"{self.label[:38]}...{self.label[-19:]}"  # the bar's line: the host and the file name
            self.task = self.bar.add_task(short, total=None)  # markup off: a URL's [red] stays text
        self.bar.update(self.task, completed=done, total=total)
        if self.bar.disable and total and self.next_tenth * total <= done * 10 < 10 * total:
            typer.echo(f"{self.label}: {100 * done // total}% ({done / 2**20:.1f} of {total / 2**20:.1f} MB)", err=True)
            self.next_tenth = done * 10 // total + 1

    def __enter__(self) -> "DownloadBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def load_network(network: str, device="cpu"):
    """`load_generator`, with a progress bar while a URL downloads the first time."""
    from .models import load_generator
    from .models.download import cache_dir, shown

    with DownloadBar(f"downloading {printable(shown(network))}") as bar:
        G = load_generator(network, device=device, download_progress=bar)
    if bar.done:  # said once the copy has loaded as a network (a login page saved as ffhq.pkl gets its error alone)
        typer.echo(f"downloaded {printable(shown(network))} ({bar.done / 2**20:.1f} MB) into {cache_dir() / 'downloads'}", err=True)
    return G


def load(network: str, device: str):
    """(the network, the device) for a command's --network and --device."""
    dev = resolve_device(device)
    return load_network(network, dev), dev


def resolve_device(name: str):
    """--device: 'auto' (the current CUDA GPU when there is one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    from .devices import auto_device, device_named, usable_device

    if name == "auto":
        return auto_device()
    try:
        device_named(name)
    except InputError as e:
        raise typer.BadParameter(str(e)) from None
    return usable_device(name)  # a GPU this machine lacks: one error line, exit code 1


def show_version(value: bool) -> None:
    if value:
        say(f"stylelift {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details (give it before the command).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    keep_freed_memory()  # a CLI run is one job: reuse freed tensor memory (stylelift/runtime.py)


@app.command(cls=OnceEach)
@user_errors
def generate(
    network: NetworkOpt = DEFAULT_NETWORK,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 0,3,5-9 (NVIDIA's z convention); 0-7 when neither --seeds nor --latents is given.")] = None,
    latents: Annotated[Optional[Path], input_option("Render the ws stored in a latent .npz (key 'w') instead of seeds.")] = None,
    trunc: Annotated[float, typer.Option(help="Truncation psi for seeds (1 = none).", callback=psi_value)] = 1.0,
    trunc_cutoff: CutoffOpt = None,
    noise_mode: Annotated[Optional[str], typer.Option(help="const | random | none (default: const, or a latent file's own noise maps when it has them).")] = None,
    class_idx: ClassOpt = None,
    outdir: Annotated[Path, output_option("Where to write the images.")] = Path("out"),
    grid: Annotated[bool, typer.Option(help="Also write grid.png with all images.")] = True,
    device: DeviceOpt = "auto",
) -> None:
    """Render images from seeds (seed0000.png, ...) or from a latent file NAME.npz (NAME00.png, ...), and grid.png."""
    from . import generation

    if noise_mode not in (None, "const", "random", "none"):
        raise typer.BadParameter(f"--noise-mode must be const, random or none, not {noise_mode!r}")
    if (seeds is None) == (latents is None):
        if latents is None:
            seeds = "0-7"
        else:
            raise typer.BadParameter("give --seeds or --latents, not both")
    seed_list = list(dict.fromkeys(parse_int_list(seeds))) if seeds is not None else None  # each seed once: one file each
    check_seed_options(None if latents is None else [f"./{latents}"], class_idx=class_idx, truncation_psi=trunc, truncation_cutoff=trunc_cutoff)  # (a file named 12 is no seed)
    dev = resolve_device(device)
    check_outdir(outdir)  # before the network is loaded and the first image rendered
    G = load_network(network, dev)
    if noise_mode in ("random", "none") and not G.synthesis.noise_layers():
        fail(f"--noise-mode {noise_mode} does nothing here: this network has no noise inputs (its noise, if any, is built into its weights)")
    if seed_list is not None:
        images = generation.iter_seed_images(
            G, seed_list, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, noise_mode=noise_mode or "const", class_idx=class_idx, device=dev
        )
        names = [f"seed{s:04d}.png" for s in seed_list]
    else:
        count, images = generation.iter_latent_file_images(G, latents, noise_mode=noise_mode, device=dev)
        names = [f"{latents.stem}{i:02d}.png" for i in range(count)]
    grid_path = outdir / "grid.png" if grid else None
    if grid_path is not None and too_big(len(names), G.img_resolution, G.img_resolution):
        typer.secho(f"note: not writing grid.png: {len(names)} images of {G.img_resolution}x{G.img_resolution} are too many for one picture", fg=typer.colors.YELLOW, err=True)
        grid_path = None
    paths = [outdir / n for n in names]
    if folder := next((p for p in paths + [grid_path] if p is not None and p.is_dir()), None):  # before any rendering
        fail(f"{folder} is a folder, not a file; move it or give another --outdir")
    for path in paths + [grid_path] * (grid_path is not None):
        check_not_read(path, [latents], "--outdir", what="the image")
    generation.write_images(images, paths, grid_path=grid_path)  # each image is written as it is rendered
    say(f"wrote {len(names)} image{'s' * (len(names) != 1)}{' and grid.png' if grid_path is not None else ''} to {outdir}/")


@app.command(cls=OnceEach)
@user_errors
def info(network: Annotated[str, typer.Argument(help="Network file or name.")]) -> None:
    """Print a network's format, resolution, latent sizes, mapping depth and channel widths."""
    from .models import describe_generator

    G = load_network(network)
    for key, value in describe_generator(G).items():
        say(f"{printable(key, 60):>18}: {printable(value)}")  # a file's meta may have any keys (not only str)


@app.command(cls=OnceEach)
@user_errors
def convert(
    source: Annotated[str, typer.Argument(help="A StyleGAN2 or StyleGAN network file (an NVIDIA pickle, a rosinality .pt or .model), or a name.")],
    dest: Annotated[Path, typer.Argument(parser=output_path, metavar="DEST", help="Output file (stylelift format, e.g. ffhq.stylelift.pt).")],
    overwrite: Annotated[bool, typer.Option(help="Replace DEST if it exists.")] = False,
) -> None:
    """Write a StyleGAN2 or StyleGAN network (NVIDIA's, rosinality's) in stylelift's own format (config + weights, no code)."""
    from .models import network_id, save_generator
    from .models.checkpoint import check_savable

    if dest.suffix.lower() not in (".pt", ".pth"):
        raise typer.BadParameter(f"{dest.name}: a stylelift network file is a torch file; name it NAME.pt")
    check_not_read(dest, [source], "DEST")  # --overwrite would replace the network converted with its conversion
    check_new_file(dest, overwrite)
    G = load_network(source)
    check_savable(G)  # before the folder is made
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_generator(G, dest)
    say(f"wrote {dest} ({G.source_format} -> stylelift, {network_id(G)})")


# a folder's photos; HEIC (iPhones) is read with the pillow-heif package, and each such photo says so without it
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif"}


OUTPUT_STILLS = {"project": ("_proj", "_target", "_pasted"), "encoder": ("_enc",)}  # what each writes beside NAME.npz


def earlier_output(path: Path, aligned_in: Optional[Path] = None) -> bool:
    """Whether an image in a folder is one stylelift wrote there: NAME_proj.png (NAME_target,
    NAME_pasted) beside the latent file NAME.npz of a projection, NAME_enc.png beside that of
    `encoder run`, and in `aligned_in` (align's --outdir, resolved) align's crop NAME.png beside its record
    NAME_align.json of another photo (elsewhere align's crops are what project takes). A folder of
    photos that is also the --outdir would otherwise have its outputs taken as photos on the next
    run. An image with a latent file of its own is a photo done before."""
    from .projector.run import earlier_meta

    if path.suffix.lower() != ".png" or not path.is_file():
        return False
    if aligned_in is not None and path.parent.resolve() == aligned_in and aligned_from_another_photo(path):
        return True
    for method, ends in OUTPUT_STILLS.items():
        for end in ends:
            source = path.with_name(path.stem.removesuffix(end) + ".npz")
            if path.stem.endswith(end) and len(path.stem) > len(end) and source.is_file():
                meta, _ = earlier_meta(source)
                if meta is not None and str(meta.get("method", "project")) == method:
                    own, _ = earlier_meta(path.with_suffix(".npz"))  # None when it has none
                    return own is None or own.get("photo") != path.name
    return False


def aligned_from_another_photo(path: Path) -> bool:
    """Whether `path` is align's crop: its NAME_align.json names the photo it was cut from, not itself
    (a photo's own name is never recorded so: align refuses to write a crop over a photo it reads)."""
    from .fileio import parse_json

    record = path.with_name(f"{path.stem}_align.json")
    try:
        if not record.is_file() or record.stat().st_size > 1 << 20:  # a record is a few hundred bytes
            return False
        photo = parse_json(record.read_text(encoding="utf-8")).get("photo")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not a dict
        return False
    return isinstance(photo, str) and Path(photo).absolute() != path.absolute()


def expand_photos(items: list[str], *, aligned_in: Optional[Path] = None) -> tuple[list[Path], int]:
    """Files, folders (their images, sorted) and globs -> (photo paths in order without repeats,
    the number of globs that matched nothing, each reported in one line: a failure of the run).
    No photo at all ends the run (with no second message when a glob has said so)."""
    import glob

    aligned_in = aligned_in.resolve() if aligned_in is not None else None  # once, not per image
    if any(not item.strip() for item in items):  # Path("") is ".": the current folder's images would be taken
        raise typer.BadParameter("an empty photo name; name photos, folders or globs (use . for the current folder)")
    out: list[Path] = []
    misses = earlier = 0
    for item in items:
        path = Path(item)
        if path.is_dir():
            # hidden files are left out as a glob leaves them: macOS writes ._NAME.jpg beside each photo on some drives
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
            kept = [p for p in images if not earlier_output(p, aligned_in)]
            earlier += len(images) - len(kept)
            out += kept
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(item))
            if not matches:
                typer.secho(f"error: no photo matches {item}", fg=typer.colors.RED, err=True)
                misses += 1
            kept = [p for p in matches if not earlier_output(p, aligned_in)]
            earlier += len(matches) - len(kept)
            out += kept
        else:
            out.append(path)
    if earlier:
        crops = "; align's NAME.png beside NAME_align.json" if aligned_in is not None else ""
        typer.secho(f"note: left out {earlier} image{'s' * (earlier > 1)} that stylelift wrote (NAME_proj.png, NAME_target.png, NAME_pasted.png, NAME_enc.png beside NAME.npz{crops})", fg=typer.colors.YELLOW, err=True)
    seen: dict[Path, Path] = {}  # one photo named two ways is done once, under the name first given
    for p in out:
        seen.setdefault(p.resolve() if p.exists() else p, p)
    if not seen:
        if misses:
            raise typer.Exit(1)
        fail("no photos given (no images in the folders named)" if items else "no photos given")
    return list(seen.values()), misses


@app.command(cls=OnceEach)
@user_errors
def align(
    photos: Annotated[list[str], typer.Argument(help="Photos: files, folders or globs.")],
    size: Annotated[int, typer.Option(min=16, max=ALIGN_MAX_SIZE, help="Side of the aligned square in pixels.")] = 1024,
    outdir: Annotated[Path, output_option("Where to write NAME.png (and NAME_align.json).")] = Path("aligned"),
    face_index: Annotated[Optional[int], typer.Option(min=0, help="Which face of each photo, 0 = the largest (the default; --all-faces writes each).")] = None,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Write every face as NAME_face<K>.png.")] = False,
    cnn: Annotated[bool, typer.Option("--cnn", help="Use dlib's CNN face detector (slower, finds more faces).")] = False,
) -> None:
    """Crop faces the way FFHQ was made (dlib landmarks), one file per face."""
    import json

    from .align import align_faces
    from .fileio import write_text_atomic, written_together
    from .images import load_photo, photo_profile, save_image

    if all_faces and face_index is not None:
        raise typer.BadParameter("give --face-index or --all-faces, not both")
    paths, failed = expand_photos(photos, aligned_in=outdir)  # its own earlier crops there are no photos
    check_outdir(outdir)  # made at the first face written: photos that all fail leave no folder
    stems: dict[str, Path] = {}
    photos_given = {file_id(p) for p in paths} - {None}  # never written over: --outdir may be the photos' own folder
    for path in paths:
        if stems.setdefault(path.stem, path) != path:  # NAME.png would overwrite the other photo's
            typer.secho(f"error: {printable(path, 500)}: its outputs would overwrite those of {printable(stems[path.stem].name)} (same name); align it with another --outdir", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        try:
            image = load_photo(path)
            faces = align_faces(image, size=size, cnn=cnn, name=path.name, only=None if all_faces else (face_index or 0))
        except Exception as e:  # this photo fails; the others still run
            typer.secho(f"error: {printable(per_item_error(e, path.name), 1000)}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        stems_out = [f"{path.stem}_face{k}" if all_faces else path.stem for k in range(len(faces))]
        if clash := next((p for stem in stems_out for p in (outdir / f"{stem}.png", outdir / f"{stem}_align.json") if file_id(p) in photos_given), None):
            typer.secho(f"error: {printable(path.name)}: its aligned face would replace the photo {printable(clash, 500)}; give another --outdir", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        try:  # this photo's files, all or none; a failure (a full disk) is its own, and the others still run
            outputs = [outdir / f"{stem}{end}" for stem in stems_out for end in (".png", "_align.json")]  # a crop and its record per face
            with written_together(outputs) as tmps:
                for face, crop, record in zip(faces, tmps[0::2], tmps[1::2]):
                    save_image(np.asarray(face.image), crop, icc_profile=photo_profile(image))
                    write_text_atomic(record, json.dumps({"photo": str(path), **face.transform_meta()}))
        except (StyleliftError, OSError) as e:
            output_failed(path.name, e)
            failed += 1
            continue
        found = faces[0].found
        turned = f" (found with the photo turned {faces[0].turned} degrees)" if faces[0].turned else ""
        if all_faces or found == 1:
            say(f"{printable(path.name)}: {found} face{'s' * (found != 1)}{turned} -> {outdir}/")
        else:
            say(f"{printable(path.name)}: face {faces[0].index} of the {found} found ({'the largest; ' if faces[0].index == 0 else ''}--all-faces writes each){turned} -> {outdir}/{printable(path.stem)}.png")
    if failed:
        raise typer.Exit(1)


@app.command(cls=OnceEach)
@user_errors
def project(
    photos: Annotated[list[str], typer.Argument(help="Photos: files, folders or globs.")],
    network: NetworkOpt = DEFAULT_NETWORK,
    space: Annotated[str, typer.Option(help="w (one w for all layers) or w+ (one w per layer).")] = "w+",
    steps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Optimisation steps (the learning rate ramps up from 0, as in NVIDIA's projector: --steps 1 returns the start).")] = 1000,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Optimise the noise maps too.")] = True,
    w_noise: Annotated[float, typer.Option(callback=fraction, help="Noise added to w in the first 3/4 of the run, in units of w's spread (NVIDIA's projector: 0.05; it measured worse on the bundled network, see README).")] = 0.0,
    loss: Annotated[str, typer.Option(callback=loss_value, help="auto (LPIPS when its ImageNet weights are here, else mse=1,ms-ssim=1,face=0.1,face-id=0.1), or weighted terms such as lpips=1,mse=0.1; terms: mse, l1, ms-ssim, face, face-id, face-age (offline), lpips, vgg16 (ImageNet weights).")] = "auto",
    perceptual_weights: Annotated[Optional[Path], input_option("torchvision VGG16 ImageNet weights for lpips/vgg16.")] = None,
    init: Annotated[str, typer.Option(callback=lambda value: not_empty(value, "give avg, a latent file or an encoder"), help="avg, a latent .npz, an encoder .pt (stylelift encoder fit/train), or 'encoder': the one shipped for the bundled network.")] = "avg",
    do_align: Annotated[bool, typer.Option("--align/--no-align", help="Align the face FFHQ-style first (else centre-crop).")] = True,
    face_index: Annotated[int, typer.Option(min=0, help="Which face of each photo, 0 = the largest (as `align --face-index`).")] = 0,
    paste_back: Annotated[bool, typer.Option("--paste-back", help="Also write the projection pasted into the photo.")] = False,
    paste_region: PasteRegionOpt = None,
    outdir: Annotated[Path, output_option("Where to write the results.")] = Path("projected"),
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write NAME_proj.mp4 of the optimisation.")] = True,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Photos optimised together.")] = 1,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the optimisation's random streams.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Redo photos that already have results.")] = False,
) -> None:
    """Find the latent code (and noise maps) whose image looks like each photo."""
    from .projector.run import ProjectJob, run_project_job

    if space not in ("w", "w+"):
        raise typer.BadParameter(f"--space must be w or w+, not {space!r:.20}")
    if paste_back and not do_align:
        raise typer.BadParameter("--paste-back needs --align (the alignment says where the face goes back)")
    if face_index and not do_align:
        raise typer.BadParameter("--face-index picks a face to align: it needs --align")
    check_paste_region(paste_region, paste_back)
    paths, misses = expand_photos(photos)
    job = ProjectJob(
        network=network, space=space, steps=steps, optimize_noise=noise, loss=loss, perceptual_weights=perceptual_weights,
        init=init, align=do_align, face_index=face_index, paste_back=paste_back, paste_region=paste_region or "face", outdir=outdir, video=video, batch_size=batch_size,
        device=resolve_device(device), seed=seed, overwrite=overwrite, w_noise=w_noise,
    )

    def report(msg: str, error: bool = False, note: bool = False) -> None:
        try:
            if error or note:
                typer.secho(printable(msg, 1000), fg=typer.colors.RED if error else None, err=True)
            else:
                say(printable(msg, 1000))  # a result line: "stdout: No space left on device" if it cannot be written
        except OSError:  # a note on a full or closed stderr (2>/dev/full) costs the note, not the run
            if not note:
                raise

    failures = misses + run_project_job(job, paths, report=report, load=load_network)
    if failures:
        raise typer.Exit(1)


def check_paste_region(region: Optional[str], paste_back: bool) -> None:
    from .paste import PASTE_REGIONS

    if region is not None and region not in PASTE_REGIONS:
        raise typer.BadParameter(f"--paste-region must be {' or '.join(PASTE_REGIONS)}, not {printable(region, 20)!r}")
    if region is not None and not paste_back:
        raise typer.BadParameter("--paste-region says what --paste-back pastes; add --paste-back")


# what a write to a full, too-large, gone or read-only stream reports (EDQUOT: not on every system)
WRITE_ERRNOS = FULL_ERRNOS | {errno.EIO, errno.EPIPE, errno.EBADF}


def run() -> None:
    try:
        try:
            app()
        except SystemExit as e:
            if sys.stdout is None and e.code in (0, None):  # its results (or --help) went nowhere: a failure, as `ls >&-` says
                raise OSError(errno.EBADF, os.strerror(errno.EBADF), "stdout") from None
            raise
    except KeyboardInterrupt:  # outside a command (reading its options): said as within one (user_errors)
        with contextlib.suppress(OSError):
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except OSError as e:  # writing --help or --version (the commands' own errors are user_errors')
        if e.filename != "stdout" and (e.filename is not None or e.errno not in WRITE_ERRNOS):  # not an output's (a failing import in an option's callback)
            raise
        if isinstance(e, BrokenPipeError) and stdout_is_gone():  # `stylelift --help | head -1`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        else:
            e.filename = "stdout"  # what is written outside a command goes there
            with contextlib.suppress(OSError):  # stderr full too: nothing can be said
                typer.secho(f"error: {error_message(e)}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    finally:
        # the command is over, its files written or not: a signal now would only break into the
        # interpreter's shutdown (torch's exit handlers) with a traceback, and the exit code would
        # stay 0; it ends the process at once instead (an ignored one stays ignored)
        for sig in stopping_signals():
            signal.signal(sig, _exit_at_once)


def _exit_at_once(signum, frame) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # (a closed or full stream: what is lost is lost)
            pass
    os._exit(128 + signum)


from . import cli_editing, cli_encoder  # noqa: E402,F401  (registers the editing and encoder commands on `app`)
