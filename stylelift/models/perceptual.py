"""Perceptual networks on ImageNet VGG16 (Simonyan & Zisserman 2015): its five feature maps, as
NVIDIA's projector and LPIPS (Zhang et al. 2018) read them, and LPIPS with its learned layers.
Their weights cannot be downloaded at run time here: they are found by `projector.losses`."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .base import rng_untouched

VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


class VGG16Features(nn.Module):
    """torchvision VGG16 conv layers, returning the five LPIPS/NVIDIA feature maps."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)  # torchvision's "D"

    @classmethod
    def conv_shapes(cls) -> dict[str, tuple[int, ...]]:
        """torchvision's names and shapes of the conv weights and biases of `features`, up to relu5_3."""
        shapes, index, channels = {}, 0, 3
        for v in cls.LAYOUT:
            if v != "M":
                shapes[f"features.{index}.weight"], shapes[f"features.{index}.bias"] = (v, channels, 3, 3), (v,)
                channels = v
            index += 1 if v == "M" else 2  # a conv and its ReLU
        return shapes

    def __init__(self, state: dict[str, Tensor]):
        super().__init__()
        # built here rather than by torchvision.models.vgg16(), which first initialises its unused
        # 120M-parameter classifier at random (over a second per projection); same module indices
        layers, channels = [], 3
        with rng_untouched():
            for v in self.LAYOUT:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    channels = v
        features = nn.Sequential(*layers)  # 30 modules: conv1_1 ... relu5_3
        features.load_state_dict({k.removeprefix("features."): state[k] for k in self.conv_shapes()})
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(self.MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).reshape(1, 3, 1, 1))

    def forward(self, img: Tensor) -> list[Tensor]:  # img in [-1, 1]
        x = ((img + 1) / 2 - self.mean) / self.std
        outs = []
        for lo, hi in VGG_SLICES:
            for layer in self.features[lo:hi]:
                x = layer(x)
            outs.append(x)
        return outs


def build_lpips(state: dict[str, Tensor], device) -> nn.Module:
    """lpips.LPIPS(net='vgg') (its learned linear layers) with its VGG16 backbone taken from `state`,
    torchvision's VGG16 conv weights (`VGG16Features.conv_shapes`), frozen, on `device`."""
    import lpips

    with warnings.catch_warnings():  # lpips builds its VGG with torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        with rng_untouched():
            model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    backbone = {}
    for k in VGG16Features.conv_shapes():  # only the features' convs (a whole state dict has the classifier too)
        v = state[k]
        parts = k.split(".")
        idx = int(parts[1])
        slice_no = next(i for i, (lo, hi) in enumerate(VGG_SLICES) if lo <= idx < hi) + 1
        backbone[f"slice{slice_no}.{idx}.{parts[2]}"] = v
    model.net.load_state_dict(backbone)
    return model.eval().requires_grad_(False).to(device)
