"""Errors a user can cause. The CLI prints their message as one line and exits with code 1."""


class StyleliftError(Exception):
    """Base class of every expected, user-facing error."""


class CheckpointError(StyleliftError, ValueError):
    """A network file that cannot be read: unknown format, corrupt, truncated, or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that names a global outside the allow-list, i.e. it asks to run code."""


class InputError(StyleliftError, ValueError):
    """A bad argument or input file (wrong latent shape, unreadable image, ...)."""
