"""The result dict every peer adapter returns, and repeat-timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["check_repeats", "make_result", "median_time"]


def check_repeats(repeats: int) -> int:
    """Validate ``repeats`` (an int >= 1).

    Raises:
        ValueError: naming the argument.
    """
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1; got {repeats!r}")
    return int(repeats)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Call ``fn`` ``repeats`` times; returns (median seconds, all seconds, last result)."""
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
