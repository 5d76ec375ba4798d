"""stylelift: lift photos into the latent space of StyleGAN generators and edit them there."""

import os as _os

# CPU speed (measured on a shared 2-core machine: 3x faster MobileStyleGAN forward and backward):
# idle OpenMP threads sleep instead of spinning, and torch backs large tensors with huge pages.
# Read when torch starts, so they only apply if stylelift is imported first; users' settings win.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

from .align import AlignedFace, NoFaceError, align_face
from .editing import apply_direction, load_direction
from .errors import CheckpointError, InputError, MissingFileError, StyleliftError, UnsafeCheckpointError
from .latents import LatentFile, load_latents, save_latents
from .models import Generator, StyleGAN, StyleGAN2Config, StyleGANConfig, load_generator, network_id, save_generator
from .models.checkpoint import NetworkNotFoundError
from .paste import paste_back
from .projector import ProjectionOptions, ProjectionResult, project
from .projector.losses import MissingWeightsError

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
]
