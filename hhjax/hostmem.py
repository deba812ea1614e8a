"""Freed host memory kept for reuse (Linux, glibc): fresh records without page faults.

glibc hands every block over 32 MB back to the kernel when it is freed (``munmap``), so
the next record of the same size is new memory, and the kernel zero-fills each 4 kB page
on its first touch (a page fault). On this project's 2-core VM a 1.6 GB record (1e5
neurons, V every step for 4000 steps) cost ~400,000 faults, ~2.5 us each: ~1 s of a
1.3-1.6 s call. XLA allocates its buffers on worker threads, and each thread's glibc
arena ``mmap``-s a large block whatever ``M_MMAP_MAX`` says, so the usual knobs alone do
not help.

``import hhjax`` therefore sets, with ``mallopt``, before JAX starts its threads:

* ``M_ARENA_MAX = 1``: every thread allocates from the main heap;
* ``M_MMAP_MAX = 0``: large blocks come from that heap, not from ``mmap``;
* ``M_TRIM_THRESHOLD = -1`` (never trim): what is freed stays in the process for the
  next allocation instead of going back to the kernel.

Measured there (``benchmarks/README.md``): such calls ran in 0.85-0.93 s with no page
faults once the heap had grown, a fitting loop over 1000 neurons x 1e4 steps took
0.24-0.29 s a step instead of 0.32-0.41 s, and the forward run in it 0.045-0.054 s
instead of 0.087-0.103 s. The costs: the process keeps its high-water mark of memory
(freed memory is reused by this process, not returned to the system, until
:func:`release` or exit); the heap fragments (records are best kept by
:mod:`hhjax.recpool`, which avoids that); and when the heap grows, its new pages cost
more here than fresh ``mmap``-ed ones did. It is applied only on Linux with glibc, only
before a JAX backend has started (threads that already have an arena keep it), and not
at all with ``HHJAX_KEEP_MEMORY=0``; :data:`kept` says whether it was. It affects every
allocation of the process.

This module imports only the standard library at module level (the benchmark runs it
in peers' processes to measure them under the same settings).
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory", "kept", "kept_bytes", "release", "set_malloc_options"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's malloc.h
_OPTIONS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
kept = False  # set by keep_freed_memory() at import


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def set_malloc_options() -> bool:
    """Apply the three ``mallopt`` settings now, unconditionally; True if all took."""
    libc = _glibc()
    return libc is not None and all(libc.mallopt(key, value) == 1 for key, value in _OPTIONS)


def keep_freed_memory() -> bool:
    """Keep freed memory in the process (the module docstring says how and why).

    Called by ``import hhjax``. Does nothing (returns False) with ``HHJAX_KEEP_MEMORY=0``,
    off Linux/glibc, or once a JAX backend has started.

    Returns:
        True if the settings were applied now.
    """
    global kept
    if os.environ.get("HHJAX_KEEP_MEMORY", "1") == "0":
        return False
    from .xla import backends_started  # jax, imported only here

    if backends_started() or not set_malloc_options():
        return False
    kept = True
    return True


def kept_bytes() -> int:
    """Bytes freed but kept by the process's heap (reusable without a page fault); 0 when
    :func:`keep_freed_memory` is not in effect."""
    libc = _glibc()
    if not kept or libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().fordblks)


def release() -> bool:
    """Give the memory the heap keeps back to the kernel (``malloc_trim(0)``).

    Returns:
        True if any memory was returned.
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
