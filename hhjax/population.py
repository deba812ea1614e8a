"""Populations across cores and devices: CPU devices, sharding, chunking, progress.

A population simulation is independent per neuron, so it splits without communication:

* **Every core.** ``import hhjax`` asks JAX for one CPU device per core
  (:func:`enable_cpu_devices`; ``HHJAX_CPU_DEVICES=1`` opts out, and a device count the
  user chose wins), and :func:`hhjax.simulate` gives each device its shard of the
  population, run tile by tile (see ``_run_tiles`` in :mod:`hhjax.simulate`): each
  tile's time loop is small enough for XLA to compile as one function (see
  :mod:`hhjax.xla`). On this project's 2-core machine, 1e5 neurons recording V every
  10th step ran at 4.4-4.6e8 neuron-steps/s this way against 3.4-3.9e8 on one device,
  where XLA splits each kernel of every step over both threads (see
  ``benchmarks/README.md``).
  A computation on one device (a user's ``jit`` or ``grad``) still uses every core.
* **Every device.** :func:`population_mesh` is a 1-D mesh over ``jax.local_devices()``
  (several GPUs, or CPU devices when the user asked for them); :func:`hhjax.simulate`
  shards the population axis over it with ``jax.shard_map``. Across hosts, call ``jax.distributed.initialize()`` first and give
  each process its own slice of the population (see the README).
* **Larger than memory.** :func:`chunk_size` bounds the neurons per call from the
  memory available, and :class:`Progress` prints a one-line progress report to stderr.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np

from . import hostmem

__all__ = [
    "AXIS",
    "Progress",
    "available_memory",
    "chunk_size",
    "cores",
    "enable_cpu_devices",
    "population_mesh",
]

AXIS = "population"  # name of the mesh axis the population is sharded along


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def enable_cpu_devices(count: int | None = None) -> bool:
    """Ask JAX for ``count`` CPU devices (default: one per core) if still possible.

    Called by ``import hhjax``. Does nothing (returns False) when JAX's backends are
    already initialised, when the user chose a device count (``XLA_FLAGS`` or
    ``jax_num_cpu_devices``), or when ``HHJAX_CPU_DEVICES`` says otherwise (``1``: one
    device, JAX's default). Only the CPU platform is affected.

    Args:
        count: number of CPU devices; default ``HHJAX_CPU_DEVICES`` or :func:`cores`.

    Returns:
        True if the setting was applied.
    """
    from jax._src import xla_bridge

    env = os.environ.get("HHJAX_CPU_DEVICES")
    if count is None:
        count = int(env) if env and env.isdigit() else cores()
    if count <= 1 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if xla_bridge.backends_are_initialized():
        return False
    try:
        if jax.config.jax_num_cpu_devices not in (-1, None):
            return False
        jax.config.update("jax_num_cpu_devices", int(count))
    except (AttributeError, RuntimeError):  # older JAX, or too late
        return False
    return True


_MESHES: dict[tuple[Any, ...], jax.sharding.Mesh] = {}


def population_mesh(devices: tuple[Any, ...] = ()) -> jax.sharding.Mesh:
    """A 1-D mesh named :data:`AXIS` over ``devices`` (default: the default backend's
    local devices), cached."""
    devices = tuple(devices) or tuple(jax.local_devices())
    if devices not in _MESHES:
        _MESHES[devices] = jax.sharding.Mesh(np.array(devices), (AXIS,))
    return _MESHES[devices]


def available_memory(kept: bool = True, host: bool = False) -> int:
    """Bytes the default device (``host``: the host) can still allocate (host RAM on
    CPU: the kernel's available memory plus, with ``kept``, what this process's heap
    keeps free, see :mod:`hhjax.hostmem`; counting that takes the allocator's lock for
    ~1 ms)."""
    device = jax.local_devices()[0]
    stats = None
    try:
        stats = None if host else device.memory_stats()
    except Exception:  # noqa: BLE001 - not every backend implements it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) * len(jax.local_devices())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 + (hostmem.kept_bytes() if kept else 0)
    except OSError:
        pass
    return 8 * 2**30


def chunk_size(n: int, bytes_per_neuron: int, budget: int | None = None, multiple: int = 1) -> int:
    """Neurons per call so that ``bytes_per_neuron`` times it fits ``budget``.

    Args:
        n: population size.
        bytes_per_neuron: working memory one neuron needs during a call, bytes.
        budget: bytes allowed (default: half of :func:`available_memory`).
        multiple: round the chunk down to a multiple of this (the device count).

    Returns:
        A chunk size in ``[multiple, n]`` (``n`` when everything fits).
    """
    if budget is None:
        budget = available_memory(kept=False) // 2
        if budget // max(1, bytes_per_neuron) < n:  # only then count the heap's kept memory
            budget = available_memory() // 2
    fits = max(1, budget // max(1, bytes_per_neuron))
    if fits >= n:
        return n
    return max(multiple, fits // multiple * multiple)


class Progress:
    """A one-line progress report on stderr (no dependency), e.g. for chunks.

    Args:
        total: number of units of work.
        label: what is being done.
        enabled: print at all (default: only when there is more than one unit).
    """

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = total > 1 if enabled is None else enabled
        self.start = time.perf_counter()

    def update(self, k: int = 1) -> None:
        """Count ``k`` more units done and redraw the line."""
        self.done += k
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        end = "\n" if self.done >= self.total else ""
        sys.stderr.write(
            f"\r{self.label}: {self.done}/{self.total} "
            f"({100 * self.done / self.total:.0f}%), {elapsed:.1f} s, ~{eta:.0f} s left{end}"
        )
        sys.stderr.flush()


cpu_devices_configured = enable_cpu_devices()  # at import, before JAX starts
