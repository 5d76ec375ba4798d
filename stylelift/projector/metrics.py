"""How good a projection is: PSNR, SSIM, LPIPS (when its weights exist) and dlib's face distance."""

from __future__ import annotations

import functools
import logging
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .losses import ssim

log = logging.getLogger(__name__)

DLIB_SAME_PERSON = 0.6  # dlib's convention: descriptors closer than this are the same person


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean(dim=[1, 2, 3]).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


@functools.lru_cache(maxsize=None)
def _face_models():
    import dlib

    from ..models.dlib_files import model_path

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat"))),
        dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat"))),
    )


def face_descriptor(image: np.ndarray) -> Optional[np.ndarray]:
    """dlib's 128-D descriptor of the largest face in a uint8 HWC RGB image, or None if no face."""
    import dlib

    detector, predictor, net = _face_models()
    image = np.ascontiguousarray(image, dtype=np.uint8)  # dlib refuses strided views (e.g. of a channels-last tensor)
    faces = detector(image, 1)
    if not faces:
        return None
    face = max(faces, key=lambda r: r.area())
    chip = dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25)
    return np.asarray(net.compute_face_descriptor(chip))


def face_distance(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Euclidean distance of dlib descriptors of two uint8 HWC images; None if either has no face."""
    da, db = face_descriptor(a), face_descriptor(b)
    if da is None or db is None:
        return None
    return float(np.linalg.norm(da - db))


def projection_metrics(target: Tensor, image: Tensor, target_u8: np.ndarray, image_u8: np.ndarray, lpips_model=None) -> dict:
    """Metrics for one target/projection pair: tensors [1, C, H, W] in [-1, 1], uint8 HWC copies.

    The projection is clamped to [-1, 1] first, as in the saved image: a generator's raw output
    overshoots that range, and the overshoot is not part of what the user gets."""
    image = image.clamp(-1, 1)
    out = {"psnr": round(float(psnr(target, image)[0]), 3), "ssim": round(float(ssim(target, image)[0]), 4)}
    if lpips_model is not None:
        with torch.no_grad():
            out["lpips"] = round(float(lpips_model(image, target).reshape(-1)[0]), 4)
    try:
        dist = face_distance(target_u8, image_u8)
    except FileNotFoundError as e:  # dlib models not installed
        log.warning("no face distance: %s", e)
        dist = None
    out["face_distance"] = None if dist is None else round(dist, 4)
    out["same_person"] = None if dist is None else dist < DLIB_SAME_PERSON
    return out
