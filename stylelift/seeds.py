"""Seeds as users type them: NVIDIA's convention maps seed s to z by numpy's RandomState(s), which
takes 32-bit seeds. Free of torch, so the CLI reads them before anything heavy is imported."""

from __future__ import annotations

from typing import Optional

MAX_SEED = 2**32 - 1


def seed_too_big(digits: str, most: int = 24) -> str:
    """The message for ASCII digits that seed_digits refused: the seed without its zeros, shortened."""
    from .errors import shortened

    return f"seed {shortened(digits.lstrip('0'), most)} is above {MAX_SEED} (seeds are 32-bit)"


def seed_digits(digits: str) -> Optional[str]:
    """ASCII digits naming a seed, without their leading zeros ('007' is seed 7; int() would count the
    zeros toward its 4,300-digit limit), or None for a seed above MAX_SEED."""
    digits = digits.lstrip("0") or "0"
    return digits if len(digits) <= 10 and int(digits) <= MAX_SEED else None
