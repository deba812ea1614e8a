"""Record arrays kept for reuse: a fresh population record without fresh memory.

A population call that records V every step writes a 160 MB-1.6 GB array (1e4-1e5
neurons, 4000 steps, float32). Allocated fresh on every call, its pages are new to the
process and the kernel zero-fills each on first touch: on this project's 2-core VM
~400,000 page faults per 1.6 GB, ~1 s of a ~2 s call. ``simulate(..., reuse=trace)``
avoids them by writing into an earlier trace's arrays, if the user asks.

This pool does the same without being asked. :func:`hhjax.simulate` keeps a reference
to the record arrays of its last two population calls (records of at least
:data:`MIN_BYTES`). A later call with the same shapes writes into the arrays of one of
them (JAX buffer donation) if nothing but the pool refers to them any more, i.e. the
user has dropped that trace and every array taken from it. In a loop
``trace = hhjax.simulate(...)`` the trace from two calls back is free, so from the
third call on no record is allocated.

* **Never the user's data.** An array is taken only when Python's reference count says
  the pool holds the last reference; an array also viewed from NumPy (``np.asarray``)
  is not overwritten either: JAX copies instead of donating a buffer with an external
  reference.
* **Memory.** The pool keeps the last two records alive after the user drops them (a
  cache, like an allocator's): :func:`clear` frees them, and a call with other shapes
  drops them first. ``hhjax.recpool.enabled = False`` turns the pool off.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable
from typing import Any

import jax

__all__ = ["MIN_BYTES", "clear", "enabled", "held_bytes", "put", "take"]

MIN_BYTES = 1 << 24  # smaller records are not kept: their first touch costs little
SLOTS = 2  # the last two calls: a loop holds the previous trace while the next runs
enabled = True
_entries: list[tuple[Hashable, dict[str, Any]]] = []  # oldest first
_lock = threading.Lock()  # simulate may run on several threads


def _leaves(bufs: dict[str, Any]) -> list[jax.Array]:
    return jax.tree_util.tree_leaves(bufs)


def _counts(bufs: dict[str, Any]) -> list[int]:
    return [sys.getrefcount(x) for x in _leaves(bufs)]


def _free(bufs: dict[str, Any]) -> bool:
    """Whether only the pool refers to every array of ``bufs`` (and none is deleted).

    Each count is compared with that of an object only a dict refers to, counted the
    same way, so the references this check itself makes (which vary between Python
    versions) cancel out."""
    (alone,) = _counts({"probe": object()})
    if max(_counts(bufs), default=alone + 1) > alone:
        return False
    return not any(x.is_deleted() for x in _leaves(bufs))


def take(key: Hashable) -> dict[str, Any] | None:
    """Record arrays kept under ``key`` that nobody else refers to (removed from the
    pool: the caller donates them), or None. Entries under other keys are dropped."""
    with _lock:
        _entries[:] = [(k, b) for k, b in _entries if k == key and enabled]
        for i, (_, bufs) in enumerate(_entries):
            if _free(bufs):
                del _entries[i]
                return bufs
    return None


def put(key: Hashable, bufs: dict[str, Any]) -> None:
    """Keep the record arrays ``bufs`` of a call just made under ``key``.

    The pool keeps its own dicts (a user who holds ``trace.gates`` holds the arrays).
    """
    if not enabled or sum(x.nbytes for x in _leaves(bufs)) < MIN_BYTES:
        return
    own = {k: dict(v) if isinstance(v, dict) else v for k, v in bufs.items()}
    with _lock:
        _entries.append((key, own))
        del _entries[:-SLOTS]


def held_bytes() -> int:
    """Bytes of the arrays in the pool (shared with the user's traces while they live)."""
    return sum(x.nbytes for _, b in _entries for x in _leaves(b) if not x.is_deleted())


def clear() -> None:
    """Drop every kept array (their memory is freed once the user drops theirs too)."""
    with _lock:
        _entries.clear()
