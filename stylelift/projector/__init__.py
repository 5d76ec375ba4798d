"""Projection of images into a generator's latent space."""

from .losses import REGISTRY as LOSSES, parse_loss_spec
from .project import ProjectionOptions, ProjectionResult, project, w_statistics

__all__ = ["LOSSES", "ProjectionOptions", "ProjectionResult", "parse_loss_spec", "project", "w_statistics"]
