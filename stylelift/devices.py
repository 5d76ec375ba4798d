"""Which device the networks run on: one reading of 'cpu', 'cuda', 'cuda:N' for the library and the CLI.

A device is checked where a user names it (load_generator, project, load_encoder, the CLI's
--device) and given back as tensors report it: plain 'cuda' is the current GPU, 'cuda:N'.

Apple's 'mps' is refused: stylelift keeps its losses and statistics in float64, which MPS does
not have, and it has never been run there; the CPU is the way on a Mac.
"""

from typing import Union

import torch

from .errors import InputError

DeviceLike = Union[str, torch.device]
KNOWN = "'cpu', 'cuda' or 'cuda:N'"


def device_named(device: DeviceLike) -> torch.device:
    """The device a name or torch.device stands for, if stylelift runs on its kind (the name only:
    whether this machine has it is `usable_device`'s question)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r:.30}: use {KNOWN}") from None
    if dev.type == "mps":
        raise InputError("device 'mps': stylelift does not run on Apple's MPS (it computes in float64, which MPS lacks); use 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r:.30}: use {KNOWN}")
    return torch.device("cpu") if dev.type == "cpu" else dev  # tensors on 'cpu:1' report 'cpu'


def usable_device(device: DeviceLike) -> torch.device:
    """`device_named`, present on this machine, as its tensors report it ('cuda' -> 'cuda:N')."""
    dev = device_named(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {str(dev)!r} asked for, but torch sees no CUDA GPU on this machine")
        if dev.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        if dev.index >= count:
            raise InputError(f"device {str(dev)!r}: this machine has {count} CUDA GPU(s), numbered from 0")
    return dev


def auto_device() -> torch.device:
    """The current CUDA GPU when torch sees one, else the CPU."""
    return usable_device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def same_device(actual: torch.device, asked: DeviceLike) -> bool:
    """Whether a tensor on `actual` is on the device a user `asked` for: "cuda" means any cuda:N."""
    asked = torch.device(asked)
    return actual.type == asked.type and (asked.index is None or actual.index == asked.index)
