"""What `stylelift project` writes for each photo, and how it tells a photo is already done.

NAME.npz (w, noise maps, meta), NAME_target.png, NAME_proj.png, NAME_proj.mp4 (target | projection
during the optimisation), NAME_pasted.png (with paste-back), NAME_metrics.json. The set is written to temporary names and
renamed only once all of it is written, so a run that fails or is stopped part-way leaves an
earlier set whole; the metrics file is renamed last, so its presence marks a finished photo. A
video or pasted photo an earlier run left, which this run does not write, is removed before the
renames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import InputError, StyleliftError
from ..fileio import check_name_lengths, file_id, to_json, write_text_atomic, written_together
from ..images import save_image, write_video
from ..latents import LatentFile, load_latents, save_latents

PASTE_REGION_KEY = "stylelift paste region"  # NAME_pasted.png's text chunk: face or square


@dataclass(frozen=True)
class ProjectionFiles:
    outdir: Path
    stem: str

    def path(self, suffix: str) -> Path:
        return self.outdir / f"{self.stem}{suffix}"

    @property
    def latent(self) -> Path:
        return self.path(".npz")

    @property
    def metrics(self) -> Path:
        return self.path("_metrics.json")

    def done(self) -> bool:
        return self.latent.exists() and self.metrics.exists()

    def pasted_with(self, region: str) -> bool:
        """Whether NAME_pasted.png is there, pasted with `region` (it says which in a PNG text chunk;
        files from before there was a choice pasted the whole square)."""
        path = self.path("_pasted.png")
        if not path.is_file():
            return False
        try:
            with Image.open(path, formats=["PNG"]) as image:  # (the chunk comes before the pixels: `info`, not `text`, which reads them all)
                return image.info.get(PASTE_REGION_KEY, "square") == region
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # damaged: pasted again
            return False

    def save_pasted(self, pasted: Image.Image, region: str, *, icc_profile: Optional[bytes] = None, to: Optional[Path] = None) -> None:
        """Write NAME_pasted.png (or `to`, a temporary name for it), recording the region."""
        save_image(np.asarray(pasted), to or self.path("_pasted.png"), icc_profile=icc_profile, text={PASTE_REGION_KEY: region})

    def check_writable(self, *, video: bool, pasted: bool, photos: frozenset = frozenset()) -> None:
        """Refuse a set of outputs with a folder in the way, which would fail half-way through
        writing it, or one that would replace a photo of the run (`photos`: their `file_id`s)."""
        outputs = [self.latent, self.path("_target.png"), self.path("_proj.png"), self.metrics]
        outputs += [self.path("_proj.mp4")] * video + [self.path("_pasted.png")] * pasted
        check_name_lengths(outputs)  # before the optimisation, not at its last file
        for path in outputs:
            if path.is_dir():
                raise InputError(f"{path} is a folder; move it or write to another --outdir")
            refuse_replacing(path, photos)

    def stale(self, *, video: bool, pasted: bool, photos: frozenset = frozenset()) -> tuple[Path, ...]:
        """The optional outputs of an earlier projection (its NAME.npz is here) that this run will
        not write (a video, a pasted photo), to remove once its own are written: left, they would
        pass for this run's. Nothing without an earlier projection (the files are the user's), and
        never a photo of the run."""
        try:
            projected = str(load_latents(self.latent).meta.get("method", "project")) == "project"
        except FileNotFoundError:
            projected = False
        except (StyleliftError, OSError):  # there, but damaged: taken as an earlier projection's (left, the video would pass for this run's)
            projected = self.latent.is_file()
        unwritten = [self.path("_proj.mp4")] * (not video) + [self.path("_pasted.png")] * (not pasted)
        return tuple(path for path in unwritten if projected and path.is_file() and file_id(path) not in photos)


def replacing_photo(path: Path, photos: frozenset) -> Optional[str]:
    """Why an output may not be written: it is one of the run's photos (`photos`: their `file_id`s); else None."""
    return f"its {path.name} would replace the photo {path}; give another --outdir" if file_id(path) in photos else None


def refuse_replacing(path: Path, photos: frozenset) -> None:
    if why := replacing_photo(path, photos):
        raise InputError(why)


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, to_json(data, what=path.name, indent=2) + "\n")


def write_projection(
    files: ProjectionFiles,
    *,
    latents: LatentFile,
    target: np.ndarray,
    projection: np.ndarray,
    frames: Optional[list[np.ndarray]],
    pasted: Optional[Image.Image],
    metrics: dict,
    paste_region: str = "face",
    fps: int = 30,
    icc_profile: Optional[bytes] = None,
    stale: tuple[Path, ...] = (),
) -> None:
    """Write one photo's files as a set, and remove `stale` ones (`ProjectionFiles.stale`); the
    pictures carry the photo's colour profile (`photo_profile`), if any."""
    files.check_writable(video=bool(frames), pasted=pasted is not None)
    paths = [files.latent, files.path("_target.png"), files.path("_proj.png")]
    paths += [files.path("_proj.mp4")] * bool(frames) + [files.path("_pasted.png")] * (pasted is not None) + [files.metrics]  # the "done" mark last
    # an earlier "done" mark and the files an earlier run wrote that this one does not go just before
    # the renames, all with signals deferred: a set stopped then would be half of each
    with written_together(paths, remove=(files.metrics, *stale)) as tmps:
        tmp = dict(zip(paths, tmps))
        save_latents(tmp[files.latent], latents)
        save_image(target, tmp[files.path("_target.png")], icc_profile=icc_profile)
        save_image(projection, tmp[files.path("_proj.png")], icc_profile=icc_profile)  # the photo's pixel values, so its profile too
        if frames:
            write_video(tmp[files.path("_proj.mp4")], frames, fps=fps)
        if pasted is not None:
            files.save_pasted(pasted, paste_region, icc_profile=icc_profile, to=tmp[files.path("_pasted.png")])
        write_json(tmp[files.metrics], metrics)
