"""Peer: Brian2, a ``NeuronGroup`` of N ``hh`` neurons, exponential Euler.

The equations are NEURON's ``hh`` written with Brian2 units (rates via ``exprel``, as
Brian2's own HH examples do), integrated with ``method="exponential_euler"`` at
``defaultclock.dt = dt``. Code-generation target: ``cython`` (Brian2's fast runtime
target; compiled once, then cached in ``~/.cython/brian_extensions``) when Cython and a
C compiler work, else ``numpy``; override with ``BRIAN2_TARGET=numpy|cython``. The
result's ``backend`` field says which ran. ``build_s`` is the construction plus a
``run(0 ms)`` that generates and compiles every code object; ``run_s`` is
``restore()`` + ``run(t_max)``. Recording: ``StateMonitor(v)`` every step or with
``dt = 10 dt``; ``"spikes"`` mode uses ``threshold = "v > 0*mV"``,
``refractory = "v > 0*mV"`` (one event per upward crossing) and a ``SpikeMonitor``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["EQUATIONS", "NAME", "available", "run", "version"]

NAME = "brian2_hh"

EQUATIONS = """
dv/dt = (I - g_na*m**3*h*(v - E_na) - g_k*n**4*(v - E_k) - g_l*(v - E_l)) / C_m : volt
dm/dt = alpha_m*(1 - m) - beta_m*m : 1
dh/dt = alpha_h*(1 - h) - beta_h*h : 1
dn/dt = alpha_n*(1 - n) - beta_n*n : 1
alpha_m = 1/exprel(-(v + 40*mV)/(10*mV))/ms : Hz
beta_m = 4*exp(-(v + 65*mV)/(18*mV))/ms : Hz
alpha_h = 0.07*exp(-(v + 65*mV)/(20*mV))/ms : Hz
beta_h = 1/(exp(-(v + 35*mV)/(10*mV)) + 1)/ms : Hz
alpha_n = 0.1/exprel(-(v + 55*mV)/(10*mV))/ms : Hz
beta_n = 0.125*exp(-(v + 65*mV)/(80*mV))/ms : Hz
I = i_step * int(t >= t_on) : amp/meter**2
i_step : amp/meter**2 (constant)
"""


def available() -> bool:
    """Whether ``brian2`` imports."""
    try:
        import brian2  # noqa: F401
    except Exception:  # brian2 2.9 raises at import with numpy >= 2.4
        return False
    return True


def version() -> str:
    """The Brian2 version."""
    import brian2

    return str(brian2.__version__)


def _target() -> str:
    choice = os.environ.get("BRIAN2_TARGET")
    if choice:
        if choice not in ("numpy", "cython"):
            raise ValueError(f"BRIAN2_TARGET must be 'numpy' or 'cython'; got {choice!r}")
        return choice
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "numpy"
    return "cython"


def run(
    amplitudes: np.ndarray, *, dt: float, t_max: float, record: str, repeats: int = 1
) -> dict[str, Any]:
    """Simulate the standard workload (see :mod:`benchmarks.peers._workload`).

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: step, ms.
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
        repeats: timed repetitions (median).

    Returns:
        The common result dict, with ``backend`` naming the code-generation target.
    """
    import brian2 as b2

    amps = w.check_args(amplitudes, dt, t_max, record)
    target = _target()
    t0 = time.perf_counter()
    b2.start_scope()
    b2.prefs.codegen.target = target
    b2.defaultclock.dt = dt * b2.ms
    rest = w.resting_state()
    namespace = {
        "g_na": w.G_NA * b2.msiemens / b2.cm**2, "g_k": w.G_K * b2.msiemens / b2.cm**2,
        "g_l": w.G_LEAK * b2.msiemens / b2.cm**2, "E_na": w.E_NA * b2.mV,
        "E_k": w.E_K * b2.mV, "E_l": w.E_LEAK * b2.mV, "C_m": w.C_M * b2.ufarad / b2.cm**2,
        # half a step early, so float rounding of t = k dt cannot move the step
        "t_on": (w.STEP_START - 0.5 * dt) * b2.ms,
    }
    spikes = record == "spikes"
    group = b2.NeuronGroup(
        amps.size, EQUATIONS, method="exponential_euler", namespace=namespace,
        threshold="v > 0*mV" if spikes else None, refractory="v > 0*mV" if spikes else False,
    )
    group.v = rest["v"] * b2.mV
    group.m, group.h, group.n = rest["m"], rest["h"], rest["n"]
    group.i_step = amps * b2.uA / b2.cm**2
    if spikes:
        monitor = b2.SpikeMonitor(group)
    else:
        monitor = b2.StateMonitor(group, "v", record=True, dt=w.record_every(record) * dt * b2.ms)
    net = b2.Network(group, monitor)
    net.run(0 * b2.ms)  # generate + compile every code object
    net.store()
    build_s = time.perf_counter() - t0

    def once() -> None:
        net.restore()
        net.run(t_max * b2.ms)

    _, times, _ = median_time(once, repeats)
    if spikes:
        counts = np.asarray(monitor.count[:], dtype=np.int64)
        v_last = None
    else:
        # StateMonitor samples at the start of each step: t = 0, dt, ..., t_max - dt;
        # append the final V so the grid matches the others (t = 0 ... t_max).
        v = np.asarray(monitor.v / b2.mV)
        v = np.concatenate([v, np.asarray(group.v / b2.mV)[:, None]], axis=1)
        counts, v_last = w.count_crossings(v), v[-1]
    return make_result(
        build_s=build_s, run_times=times, spike_counts=counts, v_last=v_last,
        n_steps=w.n_steps(dt, t_max), method="exponential_euler",
        backend=f"brian2 {version()} codegen target {target}",
    )
