"""Peer: SciPy ``odeint`` (LSODA, adaptive order and step) on the N x 4 HH system.

The state is interleaved per neuron (v, m, h, n, v, m, ...), so the Jacobian is
banded (``ml = mu = 3``) and LSODA's finite-difference Jacobian costs 7 right-hand-side
calls instead of 4N. The step current's discontinuity at 10 ms is respected by
integrating [0, 10] and [10, t_max] separately. Output is on the recorded grid (every
step for ``"v"``, every 10th for ``"v10"`` and ``"spikes"``; spikes are counted from that
output). Tolerances: ``rtol = atol = 1e-6`` (V in mV, gates dimensionless).
Expensive: use N <= 100.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["NAME", "RTOL", "ATOL", "available", "run", "version"]

NAME = "scipy_odeint"
RTOL = 1e-6
ATOL = 1e-6


def available() -> bool:
    """Whether SciPy imports."""
    try:
        import scipy.integrate  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    """The SciPy version."""
    import scipy

    return scipy.__version__


def _rhs(y: np.ndarray, i_ext: np.ndarray) -> np.ndarray:
    s = y.reshape(-1, 4)
    v, m, h, n = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    r = w.gate_rates(v)
    out = np.empty_like(s)
    out[:, 0] = (
        i_ext
        - w.G_NA * m**3 * h * (v - w.E_NA)
        - w.G_K * n**4 * (v - w.E_K)
        - w.G_LEAK * (v - w.E_LEAK)
    ) / w.C_M
    for col, (x, (a, b)) in zip((1, 2, 3), ((m, r["m"]), (h, r["h"]), (n, r["n"])), strict=True):
        out[:, col] = a * (1.0 - x) - b * x
    return out.reshape(-1)


def _simulate(amps: np.ndarray, dt: float, t_max: float, record: str) -> np.ndarray:
    from scipy.integrate import odeint

    steps, k_on, every = w.n_steps(dt, t_max), w.stimulus_on(dt), w.record_every(record)
    rest = w.resting_state()
    y0 = np.tile([rest["v"], rest["m"], rest["h"], rest["n"]], amps.size)
    t_all = np.arange(steps // every + 1) * (dt * every)
    t_on = k_on * dt
    zero = np.zeros_like(amps)
    first = t_all[t_all <= t_on]
    seg1 = odeint(lambda y, t: _rhs(y, zero), y0, np.append(first, t_on) if first[-1] < t_on
                  else first, rtol=RTOL, atol=ATOL, ml=3, mu=3)
    rest_t = t_all[t_all > t_on]
    seg2 = odeint(lambda y, t: _rhs(y, amps), seg1[-1], np.concatenate([[t_on], rest_t]),
                  rtol=RTOL, atol=ATOL, ml=3, mu=3)
    ys = np.concatenate([seg1[: first.size], seg2[1:]])
    return ys.reshape(ys.shape[0], -1, 4)[:, :, 0].T  # (N, n_rec) V in mV


def run(
    amplitudes: np.ndarray, *, dt: float, t_max: float, record: str, repeats: int = 1
) -> dict[str, Any]:
    """Simulate the standard workload (see :mod:`benchmarks.peers._workload`).

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: output grid step, ms (LSODA chooses its own internal steps).
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
        repeats: timed repetitions (``run_s`` is the median).

    Returns:
        The common result dict; ``neuron_steps_per_s`` counts output-grid steps of dt.
    """
    amps = w.check_args(amplitudes, dt, t_max, record)
    t0 = time.perf_counter()
    w.resting_state()
    build_s = time.perf_counter() - t0
    _, times, trace = median_time(lambda: _simulate(amps, dt, t_max, record), repeats)
    return make_result(
        build_s=build_s, run_times=times, spike_counts=w.count_crossings(trace),
        v_last=None if record == "spikes" else trace[-1], n_steps=w.n_steps(dt, t_max),
        method=f"LSODA (odeint), rtol={RTOL:g}, atol={ATOL:g}, banded Jacobian",
        backend=f"scipy {version()}",
    )
