"""stylelift: lift photos into the latent space of StyleGAN generators and edit them there.

The public names below are imported on first use (PEP 562), so `stylelift --help` and a command's
own checks do not wait for torch: `import stylelift` alone takes a few milliseconds.
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

# CPU speed (measured on a shared 2-core machine: 3x faster MobileStyleGAN forward and backward):
# idle OpenMP threads sleep instead of spinning, and torch backs large tensors with huge pages.
# Read when torch starts, so they only apply if stylelift is imported first; users' settings win.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "AlignedFace": "align",
    "NoFaceError": "align",
    "align_face": "align",
    "apply_direction": "editing",
    "load_direction": "editing",
    "CheckpointError": "errors",
    "InputError": "errors",
    "MissingFileError": "errors",
    "StyleliftError": "errors",
    "UnsafeCheckpointError": "errors",
    "LatentFile": "latents",
    "load_latents": "latents",
    "save_latents": "latents",
    "Generator": "models",
    "StyleGAN": "models",
    "StyleGAN2Config": "models",
    "StyleGANConfig": "models",
    "load_generator": "models",
    "network_id": "models",
    "save_generator": "models",
    "NetworkNotFoundError": "models.checkpoint",
    "paste_back": "paste",
    "ProjectionOptions": "projector",
    "ProjectionResult": "projector",
    "project": "projector",
    "MissingWeightsError": "projector.losses",
}

__all__ = [
    "AlignedFace",
    "CheckpointError",
    "Generator",
    "InputError",
    "LatentFile",
    "MissingFileError",
    "MissingWeightsError",
    "NetworkNotFoundError",
    "NoFaceError",
    "ProjectionOptions",
    "ProjectionResult",
    "StyleGAN",
    "StyleGAN2Config",
    "StyleGANConfig",
    "StyleliftError",
    "UnsafeCheckpointError",
    "align_face",
    "apply_direction",
    "load_direction",
    "load_generator",
    "load_latents",
    "network_id",
    "paste_back",
    "project",
    "save_generator",
    "save_latents",
]  # what _PUBLIC maps


def _lazy_attributes(package: str, public: dict[str, str]):
    """A package's module `__getattr__` (PEP 562): a public name (`public`: name -> the submodule that
    defines it), or a submodule (`stylelift.images`), imported when first asked for."""

    def __getattr__(name: str):
        if name in public:
            value = getattr(_importlib.import_module(f".{public[name]}", package), name)
        elif name.isidentifier() and not name.startswith("__"):
            try:
                value = _importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":  # the submodule exists; something it imports is missing
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(_sys.modules[package], name, value)
        return value

    return __getattr__


__getattr__ = _lazy_attributes(__name__, _PUBLIC)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .align import AlignedFace, NoFaceError, align_face
    from .editing import apply_direction, load_direction
    from .errors import CheckpointError, InputError, MissingFileError, StyleliftError, UnsafeCheckpointError
    from .latents import LatentFile, load_latents, save_latents
    from .models import Generator, StyleGAN, StyleGAN2Config, StyleGANConfig, load_generator, network_id, save_generator
    from .models.checkpoint import NetworkNotFoundError
    from .paste import paste_back
    from .projector import ProjectionOptions, ProjectionResult, project
    from .projector.losses import MissingWeightsError
