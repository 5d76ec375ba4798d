"""Errors a user can cause. The CLI prints their message as one line and exits with code 1."""


class StyleliftError(Exception):
    """Base class of every expected, user-facing error."""


class CheckpointError(StyleliftError, ValueError):
    """A network file that cannot be read: unknown format, corrupt, truncated, or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that names a global outside the allow-list, i.e. it asks to run code."""


class InputError(StyleliftError, ValueError):
    """A bad argument or input file (wrong latent shape, unreadable image, ...)."""


def first_line(e: BaseException) -> str:
    """An exception's message as one short line (its type's name when it has none), for messages
    that wrap errors raised by torch, zipfile, numpy, ..."""
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__
