"""What every checkpoint reader returns: a config and a state dict in stylelift's parameter names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from torch import Tensor

from .stylegan import StyleGANConfig
from .stylegan2 import StyleGAN2Config


@dataclass
class RawNetwork:
    """A network read from a file, before a torch module is built from it.

    `state_dict` uses stylelift's (= NVIDIA PyTorch) names and must load into
    `Generator(config)` (`StyleGAN(config)` for a StyleGANConfig) with `strict=True`, except that `mapping.w_avg` may be absent when the
    file does not store it (`has_w_avg=False`); the loader then estimates it by sampling.
    """

    config: Union[StyleGAN2Config, StyleGANConfig]
    state_dict: dict[str, Tensor]
    format: str  # "stylelift" | "nvidia-pytorch" | "nvidia-tensorflow" | "rosinality"
    has_w_avg: bool = True
    info: dict[str, Any] = field(default_factory=dict)  # extra facts for `stylelift info` (class name, pickle version, ...)
