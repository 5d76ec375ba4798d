"""What users do with latents: truncation, style mixing, interpolation, attribute directions."""

from .boundary import fit_boundary, held_out_accuracy
from .directions import Direction, apply_direction, condition, load_direction, save_direction
from .discovery import pca_directions, sefa, w_std_along
from .interpolation import interpolation_path, lerp, slerp
from .layers import parse_layers, style_ranges
from .mixing import mix_styles, mixing_grid, truncate
from .shipped import resolve_direction

__all__ = [
    "Direction",
    "apply_direction",
    "condition",
    "fit_boundary",
    "held_out_accuracy",
    "interpolation_path",
    "lerp",
    "load_direction",
    "mix_styles",
    "mixing_grid",
    "parse_layers",
    "pca_directions",
    "resolve_direction",
    "save_direction",
    "sefa",
    "slerp",
    "style_ranges",
    "truncate",
    "w_std_along",
]
