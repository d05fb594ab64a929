"""The C library's heap (glibc only): its functions where this process has them, and giving free pages back."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def libc_function(name: str) -> Callable[..., int] | None:
    """The C library's function ``name``, or None where there is none (musl, macOS: nothing to tune)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return function


def release_free_heap() -> bool:
    """``malloc_trim(0)``: the free pages of every arena back to the operating system. glibc keeps memory freed by
    other threads (the loader's, for one) in their arenas, so a large free, such as weights replaced by a smaller
    form, would not lower the process's resident memory until reused. False where there is no ``malloc_trim``."""
    trim = libc_function("malloc_trim")
    return trim is not None and bool(trim(0))
