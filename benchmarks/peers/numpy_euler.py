"""Peer: a vectorised NumPy forward-Euler loop over time (float64, exact HH rates).

The simplest honest baseline: one Python loop over the 4000 steps, every operation a
NumPy array operation over the N neurons. Forward Euler is stable for ``hh`` at
dt = 0.025 ms. In ``"spikes"`` mode the loop counts upward 0 mV crossings itself and
records nothing; in ``"v"``/``"v10"`` mode it stores V (float64, N x n_rec) and the
spike counts come from the recorded V after the timed run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["NAME", "available", "run", "version"]

NAME = "numpy_euler"


def available() -> bool:
    """NumPy is always there."""
    return True


def version() -> str:
    """The NumPy version."""
    return np.__version__


def _simulate(
    amps: np.ndarray, dt: float, t_max: float, record: str
) -> tuple[np.ndarray, np.ndarray | None]:
    steps, k_on, every = w.n_steps(dt, t_max), w.stimulus_on(dt), w.record_every(record)
    rest = w.resting_state()
    n = amps.size
    v = np.full(n, rest["v"])
    m, h, nn = (np.full(n, rest[k]) for k in ("m", "h", "n"))
    zero = np.zeros(n)
    counts = np.zeros(n, dtype=np.int64)
    above = v >= w.SPIKE_THRESHOLD
    trace = None
    if record != "spikes":
        trace = np.empty((n, steps // every + 1))
        trace[:, 0] = v
    for k in range(steps):
        i_ext = amps if k >= k_on else zero
        x_m = v + 40.0
        safe = np.where(np.abs(x_m) < 1e-7, 1e-7, x_m)  # removable singularity at -40 mV
        a_m = 0.1 * safe / -np.expm1(-safe / 10.0)
        b_m = 4.0 * np.exp(-(v + 65.0) / 18.0)
        a_h = 0.07 * np.exp(-(v + 65.0) / 20.0)
        b_h = 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
        x_n = v + 55.0
        safe = np.where(np.abs(x_n) < 1e-7, 1e-7, x_n)  # removable singularity at -55 mV
        a_n = 0.01 * safe / -np.expm1(-safe / 10.0)
        b_n = 0.125 * np.exp(-(v + 65.0) / 80.0)
        i_ion = (
            w.G_NA * m**3 * h * (v - w.E_NA)
            + w.G_K * nn**4 * (v - w.E_K)
            + w.G_LEAK * (v - w.E_LEAK)
        )
        m = m + dt * (a_m * (1.0 - m) - b_m * m)
        h = h + dt * (a_h * (1.0 - h) - b_h * h)
        nn = nn + dt * (a_n * (1.0 - nn) - b_n * nn)
        v = v + dt * (i_ext - i_ion) / w.C_M
        if trace is None:
            now = v >= w.SPIKE_THRESHOLD
            counts += now & ~above
            above = now
        elif (k + 1) % every == 0:
            trace[:, (k + 1) // every] = v
    return counts, trace


def run(
    amplitudes: np.ndarray, *, dt: float, t_max: float, record: str, repeats: int = 1
) -> dict[str, Any]:
    """Simulate the standard workload (see :mod:`benchmarks.peers._workload`).

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: step, ms.
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
        repeats: timed repetitions (``run_s`` is the median).

    Returns:
        The common result dict (:func:`benchmarks.peers._result.make_result`).
    """
    amps = w.check_args(amplitudes, dt, t_max, record)
    t0 = time.perf_counter()
    w.resting_state()
    build_s = time.perf_counter() - t0
    _, times, (counts, trace) = median_time(lambda: _simulate(amps, dt, t_max, record), repeats)
    if trace is not None:
        counts = w.count_crossings(trace)
    return make_result(
        build_s=build_s, run_times=times, spike_counts=counts,
        v_last=None if trace is None else trace[-1], n_steps=w.n_steps(dt, t_max),
        method="forward Euler, float64", backend=f"numpy {np.__version__}",
    )
