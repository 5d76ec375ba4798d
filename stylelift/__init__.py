"""stylelift: lift photos into the latent space of StyleGAN generators and edit them there."""

__version__ = "0.1.0"

from .errors import CheckpointError, InputError, StyleliftError, UnsafeCheckpointError
from .latents import LatentFile, load_latents, save_latents
from .models import Generator, StyleGAN2Config, load_generator, network_id, save_generator

__all__ = [
    "CheckpointError",
    "Generator",
    "InputError",
    "LatentFile",
    "StyleGAN2Config",
    "StyleliftError",
    "UnsafeCheckpointError",
    "load_generator",
    "load_latents",
    "network_id",
    "save_generator",
    "save_latents",
]
