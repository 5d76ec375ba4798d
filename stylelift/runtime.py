"""Process-wide settings that make torch faster on the CPU; the CLI applies them, a library user may.

Projection at 512-1024 px allocates and frees feature maps of 50-150 MB several times per layer
and step. glibc's malloc serves blocks that large with a fresh mmap and gives them back with
munmap on free, so every new tensor starts with tens of thousands of page faults before the first
multiply touches it: on a 2-core machine an element-wise op on a 32x1024x1024 map took 55 ms
instead of 6, and a 1024-px StyleGAN2 projection step 4.1 s instead of 2.9 s. Telling malloc to
keep such blocks in its heap (no mmap, no trimming) lets the next tensor reuse the pages.

The cost: memory freed by the process is not returned to the system until it exits (its peak
stays resident), which is why the library does not do this on import. (Importing stylelift does
set two environment variables, OMP_WAIT_POLICY and THP_MEM_ALLOC_ENABLE, unless they are set: see
`stylelift/__init__.py`. They only change how torch's threads wait and which pages back its
tensors, and a user's own settings win.)
"""

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks instead of unmapping them. Returns whether it
    applies (Linux with glibc); elsewhere it does nothing. Safe to call more than once."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running process's C library (find_library would spawn ldconfig)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; if the heap cannot grow, glibc still falls back to mmap.
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    log.debug("keep_freed_memory: %s", "on" if _applied else "mallopt refused")
    return _applied
