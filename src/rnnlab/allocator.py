"""Keep glibc malloc from handing large tensor buffers back to the OS after every step.

By default glibc serves big allocations with mmap and trims the heap eagerly, so each training
step maps, zero-fills and unmaps the same activation buffers again (measured here: an IMDb LSTM
epoch spent 90 s in the kernel). Disabling mmap for large blocks and raising the trim threshold
makes the heap reuse them; measured with scripts/bench_backbone.py --malloc default|tuned.
Set RNNLAB_MALLOC_TUNING=0 to keep the platform default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4


def tune_malloc() -> bool:
    """Apply the settings on glibc; return whether they were applied."""
    if os.environ.get("RNNLAB_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, etc.)
        return False
    return all(
        (
            mallopt(M_MMAP_MAX, 0),
            mallopt(M_TRIM_THRESHOLD, 2**31 - 1),
            mallopt(M_TOP_PAD, 256 * 2**20),
        )
    )
