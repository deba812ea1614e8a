"""The result dict every peer adapter returns, and repeat-timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["WARM_CALLS", "check_repeats", "make_result", "median_time", "warm_up"]

# Untimed calls before the timed ones, when several are timed. A JAX population that
# records V every step is near its steady state from the fourth call: hhjax at 1e4
# neurons took 1.7 s, 0.50 s, 1.02 s, then 0.09-0.15 s (70,000, 49,000, 1,100, then
# 0-4,900 page faults): two fresh records, then the first write into a record
# hhjax.recpool kept, which compiles that variant. Every tool gets the same warm-up.
WARM_CALLS = 3
WARM_MAX_CALL_S = 5.0  # no more warm-up calls after one this long


def check_repeats(repeats: int) -> int:
    """Validate ``repeats`` (an int >= 1).

    Raises:
        ValueError: naming the argument.
    """
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1; got {repeats!r}")
    return int(repeats)


def warm_up(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Untimed calls of ``fn`` before ``repeats`` timed ones (none when only one is
    timed): up to :data:`WARM_CALLS`, stopping after a call of :data:`WARM_MAX_CALL_S`
    or more. Returns their times, s."""
    times: list[float] = []
    while repeats > 1 and len(times) < WARM_CALLS and not (
        times and times[-1] >= WARM_MAX_CALL_S
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Call ``fn`` ``repeats`` times after :func:`warm_up`; returns (median seconds, all
    seconds, last result)."""
    warm_up(fn, check_repeats(repeats))
    times, out = [], None
    for _ in range(check_repeats(repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def make_result(
    *,
    build_s: float,
    run_times: list[float],
    spike_counts: np.ndarray,
    v_last: np.ndarray | None,
    n_steps: int,
    **info: Any,
) -> dict[str, Any]:
    """Assemble the common result dict.

    Args:
        build_s: model construction / compilation time, s.
        run_times: wall time of each timed simulation, s (``run_s`` is their median).
        spike_counts: spikes per neuron, (N,).
        v_last: V (mV) of neuron N-1 on the recorded grid, or None.
        n_steps: time steps per simulation.
        **info: extra fields (method, backend, notes, ...).

    Returns:
        ``{"build_s", "run_s", "run_s_all", "spike_counts", "v_last", "n", "n_steps",
        "neuron_steps_per_s", ...info}``.
    """
    counts = np.asarray(spike_counts, dtype=np.int64).reshape(-1)
    run_s = float(statistics.median(run_times))
    return {
        "build_s": float(build_s),
        "run_s": run_s,
        "run_s_all": [float(t) for t in run_times],
        "spike_counts": counts,
        "v_last": None if v_last is None else np.asarray(v_last, dtype=np.float64),
        "n": int(counts.size),
        "n_steps": int(n_steps),
        "neuron_steps_per_s": counts.size * n_steps / run_s if run_s > 0 else float("inf"),
        **info,
    }
