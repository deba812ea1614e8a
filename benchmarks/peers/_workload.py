"""The standard peer workload: NEURON ``hh`` point neurons under current steps.

Every peer adapter simulates the same thing: N single-compartment neurons with NEURON's
built-in ``hh`` mechanism (``gnabar = 0.12``, ``gkbar = 0.036``, ``gl = 0.0003``
S/cm2, ``ena = 50``, ``ek = -77``, ``el = -54.3`` mV, ``celsius = 6.3`` C, cm = 1
uF/cm2; ``hhjax.presets.neuron_hh()``), neuron i receiving a current-density step of
``amplitudes[i]`` uA/cm2 from :data:`STEP_START` ms to the end, every neuron starting
at its resting state (gates at steady state).

Time-grid convention (hhjax's): the current of step k (covering ``[k dt, (k+1) dt)``)
is ``amplitude`` if ``k >= round(STEP_START / dt)`` else 0. Recorded grids include t = 0
and have ``n_steps // every + 1`` samples (``every`` = 1 for ``"v"``, 10 for ``"v10"``).

Units: mV, ms, uF/cm2, mS/cm2, uA/cm2. Spikes are upward crossings of
:data:`SPIKE_THRESHOLD` mV.

This module needs only NumPy, so it works in the peers' own environment.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "E_K",
    "E_LEAK",
    "E_NA",
    "G_K",
    "G_LEAK",
    "G_NA",
    "RECORD_MODES",
    "SPIKE_THRESHOLD",
    "STEP_START",
    "check_args",
    "count_crossings",
    "default_amplitudes",
    "gate_rates",
    "n_steps",
    "record_every",
    "resting_state",
    "stimulus_on",
]

G_NA, G_K, G_LEAK = 120.0, 36.0, 0.3  # mS/cm2
E_NA, E_K, E_LEAK = 50.0, -77.0, -54.3  # mV
C_M = 1.0  # uF/cm2
STEP_START = 10.0  # ms
SPIKE_THRESHOLD = 0.0  # mV
RECORD_MODES = ("v", "v10", "spikes")


def default_amplitudes(n: int) -> np.ndarray:
    """The benchmark's step amplitudes: ``linspace(9.5, 10.5, n)`` uA/cm2 (10.0 if n = 1)."""
    if n < 1:
        raise ValueError(f"n (number of neurons) must be >= 1; got {n}")
    return np.full(1, 10.0) if n == 1 else np.linspace(9.5, 10.5, n)


def check_args(amplitudes: np.ndarray, dt: float, t_max: float, record: str) -> np.ndarray:
    """Validate the common ``run`` arguments; returns the amplitudes as float64 (N,).

    Raises:
        ValueError: naming the bad argument.
    """
    amps = np.asarray(amplitudes, dtype=np.float64)
    if amps.ndim != 1 or amps.size < 1 or not np.all(np.isfinite(amps)):
        raise ValueError(f"amplitudes must be a finite 1-D array (uA/cm2); got shape {amps.shape}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0 ms; got {dt}")
    if not t_max > STEP_START:
        raise ValueError(f"t_max must exceed the step start {STEP_START} ms; got {t_max}")
    if record not in RECORD_MODES:
        raise ValueError(f"record must be one of {RECORD_MODES}; got {record!r}")
    return amps


def n_steps(dt: float, t_max: float) -> int:
    """Number of steps of ``dt`` ms in ``t_max`` ms (rounded)."""
    return int(round(t_max / dt))


def record_every(record: str) -> int:
    """Steps between recorded samples: 1 for ``"v"``, 10 for ``"v10"`` and ``"spikes"``."""
    return 1 if record == "v" else 10


def stimulus_on(dt: float) -> int:
    """Index of the first step that carries the current."""
    return int(round(STEP_START / dt))


def _exprel(x: np.ndarray) -> np.ndarray:
    """``x / (exp(x) - 1)``, 1 at x = 0."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-6
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x / 2.0, safe / np.expm1(safe))


def gate_rates(v: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(alpha, beta)`` in 1/ms of the ``hh`` gates m, h, n at ``v`` mV (6.3 C).

    References:
        NEURON ``src/nrnoc/hh.mod`` (Hodgkin & Huxley 1952, shifted to rest -65 mV).
    """
    return {
        "m": (_exprel(-(v + 40.0) / 10.0), 4.0 * np.exp(-(v + 65.0) / 18.0)),
        "h": (0.07 * np.exp(-(v + 65.0) / 20.0), 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)),
        "n": (0.1 * _exprel(-(v + 55.0) / 10.0), 0.125 * np.exp(-(v + 65.0) / 80.0)),
    }


def _steady_current(v: float) -> float:
    r = gate_rates(np.asarray(v))
    m, h, n = (float(a / (a + b)) for a, b in (r["m"], r["h"], r["n"]))
    return G_NA * m**3 * h * (v - E_NA) + G_K * n**4 * (v - E_K) + G_LEAK * (v - E_LEAK)


def resting_state() -> dict[str, float]:
    """Resting V (mV, bisection to 1e-12 mV) and steady-state m, h, n of the ``hh`` model.

    Returns:
        ``{"v": -64.97..., "m": ..., "h": ..., "n": ...}``.
    """
    lo, hi = -80.0, -55.0  # the steady-state current changes sign once in between
    if not _steady_current(lo) < 0 < _steady_current(hi):
        raise ValueError("resting_state: no sign change of the steady current in [-80, -55] mV")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _steady_current(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    v = 0.5 * (lo + hi)
    r = gate_rates(np.asarray(v))
    return {"v": v, **{k: float(a / (a + b)) for k, (a, b) in r.items()}}


def count_crossings(v: np.ndarray, threshold: float = SPIKE_THRESHOLD) -> np.ndarray:
    """Upward crossings of ``threshold`` mV along the last axis of ``v`` (N, T) -> (N,)."""
    v = np.asarray(v)
    above = v >= threshold
    return np.count_nonzero(above[..., 1:] & ~above[..., :-1], axis=-1)
