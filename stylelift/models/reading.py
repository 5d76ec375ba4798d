"""What every checkpoint reader shares: the shape check of a state dict against the generator its
config describes, float weights, one-line descriptions of odd values for error messages, settings
read with checks, and the variables of NVIDIA's TensorFlow networks."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, StyleliftError, first_line
from .safe_pickle import ArrayRecord, TFNetwork
from .stylegan import StyleGANConfig
from .stylegan import expected_shapes as stylegan_shapes
from .stylegan2 import StyleGAN2Config


def expected_shapes(cfg: StyleGAN2Config) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of `Generator(cfg)`, without building it (tests check they agree)."""
    shapes: dict[str, tuple[int, ...]] = {}
    embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim > 0 else 0
    hidden = cfg.mapping_layer_features or cfg.w_dim
    features = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    if cfg.c_dim > 0:
        shapes.update({"mapping.embed.weight": (embed, cfg.c_dim), "mapping.embed.bias": (embed,)})
    for i in range(cfg.mapping_layers):
        shapes.update({f"mapping.fc{i}.weight": (features[i + 1], features[i]), f"mapping.fc{i}.bias": (features[i + 1],)})
    shapes["mapping.w_avg"] = (cfg.w_dim,)

    def modulated(name: str, in_ch: int, out_ch: int, k: int, r: Optional[int]) -> None:
        shapes.update({f"{name}.weight": (out_ch, in_ch, k, k), f"{name}.bias": (out_ch,)})
        shapes.update({f"{name}.affine.weight": (in_ch, cfg.w_dim), f"{name}.affine.bias": (in_ch,)})
        if r is not None and cfg.use_noise:
            shapes.update({f"{name}.noise_strength": (), f"{name}.noise_const": (r, r)})

    ch = cfg.block_channels
    for r in cfg.block_resolutions:
        b = f"synthesis.b{r}"
        if r == 4:
            shapes[f"{b}.const"] = (ch[4], 4, 4)
        else:
            modulated(f"{b}.conv0", ch[r // 2], ch[r], 3, r)
            if cfg.architecture == "resnet":
                shapes[f"{b}.skip.weight"] = (ch[r], ch[r // 2], 1, 1)
        modulated(f"{b}.conv1", ch[r], ch[r], 3, r)
        if cfg.architecture == "skip" or r == cfg.img_resolution:
            modulated(f"{b}.torgb", ch[r], cfg.img_channels, 1, None)
    return shapes


def check_shapes(source: str, cfg: Union[StyleGAN2Config, StyleGANConfig], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise CheckpointError unless `shapes` are exactly the tensors of the generator `cfg`
    describes (StyleGAN2 or StyleGAN; w_avg optional)."""
    if isinstance(cfg, StyleGANConfig):
        expected, kind = stylegan_shapes(cfg), "StyleGAN"
    else:
        expected, kind = expected_shapes(cfg), "StyleGAN2"
    missing = [k for k in expected if k not in shapes and k != "mapping.w_avg"]
    extra = [k for k in shapes if k not in expected]
    wrong = [
        f"{k} {list(shapes[k])} (expected {list(expected[k])})"
        for k in shapes
        if k in expected and tuple(shapes[k]) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing {some(missing)}")
    if extra:
        problems.append(f"unexpected {some(extra)}")
    if wrong:
        problems.append(f"wrong shape {some(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit a {kind} generator: {'; '.join(problems)}")


def check_floating(source: str, name: str, t: Tensor) -> None:
    """Integer, bool or complex tensors are not weights."""
    if not t.is_floating_point():
        raise CheckpointError(f"{source}: tensor {name} holds {str(t.dtype).replace('torch.', '')}, not floating-point numbers")


def to_float32(source: str, name: str, t: Tensor) -> Tensor:
    check_floating(source, name, t)
    return t.to(torch.float32) if t.dtype != torch.float32 else t


def some(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def show_value(value: Any, width: int = 40) -> str:
    """A value from the file, for an error message: short, one line, and never the repr of a big
    structure (a list that holds itself many times over would take forever to print)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)).bit_length() > 3 * width:
        return f"an integer of {abs(int(value)).bit_length()} bits"  # its first digits alone would read as the value
    if value is None or isinstance(value, (bool, int, float, str, bytes, np.integer, np.floating)):
        return repr(value[:width] if isinstance(value, (str, bytes)) else value)[:width]
    return a_type(value)


def a_type(value: Any) -> str:
    """'a dict', 'an OrderedDict': the type of a value from the file, with its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def int_setting(source: str, value: Any, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CheckpointError(f"{source}: {what} is {show_value(value)}, not an integer >= {minimum}")
    return int(value)


def number_setting(source: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise CheckpointError(f"{source}: {what} is {show_value(value)}, not a number")
    return float(value)


ConfigT = TypeVar("ConfigT")


def checked_config(source: str, config_class: Callable[..., ConfigT], **settings: Any) -> ConfigT:
    """`config_class(**settings)` for the settings a file gives, its ValueError a CheckpointError
    naming `source` (the dataclasses check their own values)."""
    try:
        return config_class(**settings)
    except ValueError as e:
        if isinstance(e, StyleliftError):
            raise
        raise CheckpointError(f"{source}: unsupported generator settings ({first_line(e)})") from None


def primitives(d: Any, limit: int = 64) -> dict:
    """The str/number/bool/None entries of a dict (and lists of those), for `info`."""
    out = {}
    if not isinstance(d, dict):
        return out
    for k, v in list(d.items())[:limit]:
        if isinstance(v, (list, tuple)) and len(v) <= 16 and all(isinstance(x, (int, float, str, bool)) for x in v):
            v = list(v)
        elif not (v is None or isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 200)):
            continue
        out[str(k)] = v
    return out


def tf_variables(source: str, Gs: TFNetwork) -> dict[str, np.ndarray]:
    """All variables of Gs and its components, named 'mapping/Dense0/weight' and so on."""
    out: dict[str, np.ndarray] = {}
    seen: set[int] = set()
    data_of: dict[int, str] = {}  # where each variable's bytes are: two names over one array would make a small file a big network
    todo = [("", Gs, 0)]
    while todo:
        prefix, net, depth = todo.pop()
        if depth > 4:
            raise CheckpointError(f"{source}: TensorFlow networks nested deeper than StyleGAN2's")
        if id(net) in seen:  # Gs holds mapping and synthesis once each
            raise CheckpointError(f"{source}: TensorFlow network {prefix} is another component over again")
        seen.add(id(net))
        variables = net.get("variables") or []
        if not isinstance(variables, list):
            raise CheckpointError(f"{source}: malformed variables in TensorFlow network {prefix or 'Gs'}")
        for item in variables:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"{source}: malformed variable in TensorFlow network {prefix or 'Gs'}")
            name, value = item
            if isinstance(value, ArrayRecord) and value.array is not None:
                value = value.array
            elif isinstance(value, (int, float)) and not isinstance(value, bool):  # 0-d variables come back as numpy scalars
                value = np.asarray(value, dtype=np.float32)
            else:
                raise CheckpointError(f"{source}: TensorFlow variable {prefix}{name} is not an array")
            if prefix + name in out:
                raise CheckpointError(f"{source}: TensorFlow variable {prefix}{name} is stored twice")
            if value.nbytes:
                at = value.__array_interface__["data"][0]
                if at in data_of:
                    raise CheckpointError(f"{source}: TensorFlow variables {data_of[at]} and {prefix}{name} share one array's data, which no network pickle does")
                data_of[at] = prefix + name
            out[prefix + name] = value
        for name, comp in (net.get("components") or {}).items():
            if not isinstance(comp, TFNetwork) or not isinstance(name, str):
                raise CheckpointError(f"{source}: malformed component {show_value(name)} of TensorFlow network {prefix or 'Gs'}")
            todo.append((f"{prefix}{name}/", comp, depth + 1))
    return out


def tf_shape(source: str, variables: dict[str, np.ndarray], name: str, ndim: int) -> tuple[int, ...]:
    """The shape of a TF variable, which must exist and have `ndim` dimensions."""
    if name not in variables:
        raise CheckpointError(f"{source}: TensorFlow variable {name} is missing")
    if np.ndim(variables[name]) != ndim:
        raise CheckpointError(f"{source}: TensorFlow variable {name} has shape {list(np.shape(variables[name]))}")
    return tuple(np.shape(variables[name]))


def tf_mapping_depth(source: str, variables: dict[str, np.ndarray]) -> int:
    """How many dense layers (`mapping/Dense{i}`) the TF mapping network has; at least one."""
    n = 0
    while f"mapping/Dense{n}/weight" in variables:
        n += 1
    if n == 0:
        raise CheckpointError(f"{source}: the TensorFlow mapping network has no Dense layers")
    return n


class TFState:
    """TF variables -> a stylelift state dict: `take` removes one variable (float32; with `ndim`,
    its number of dimensions checked), `put` stores a tensor under stylelift's name, `finish`
    refuses the variables nobody took."""

    def __init__(self, source: str, variables: dict[str, np.ndarray], *, skip: tuple[str, ...] = ()):
        self.source = source
        self.left = {k: x for k, x in variables.items() if k not in skip}
        self.state: dict[str, Tensor] = {}

    def has(self, name: str) -> bool:
        return name in self.left

    def take(self, name: str, ndim: Optional[int] = None) -> np.ndarray:
        if name not in self.left:
            raise CheckpointError(f"{self.source}: TensorFlow variable {name} is missing")
        value = np.asarray(self.left.pop(name))
        if not np.issubdtype(value.dtype, np.floating):  # integer, bool or complex arrays are not weights
            raise CheckpointError(f"{self.source}: TensorFlow variable {name} holds {value.dtype}, not floating-point numbers")
        if ndim is not None and value.ndim != ndim:
            raise CheckpointError(f"{self.source}: TensorFlow variable {name} has shape {list(value.shape)}")
        return value.astype(np.float32)

    def put(self, name: str, value: np.ndarray) -> None:
        self.state[name] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))  # a writable copy

    def finish(self) -> dict[str, Tensor]:
        if self.left:
            raise CheckpointError(f"{self.source}: unexpected TensorFlow variables {some(sorted(self.left))}")
        return self.state
