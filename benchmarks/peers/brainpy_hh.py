"""Peer: BrainPy 2.x, a ``brainpy.dyn.HH`` group of N neurons under ``bm.for_loop``.

``bp.dyn.HH`` is BrainPy's HH neuron group; its rates are NEURON's ``hh`` rates (via
``exprel``; no temperature factor, exact at 6.3 C). Set here: ``gL = 0.3`` mS/cm2 and
``EL = -54.3`` mV (BrainPy's defaults differ), ``V_th = 0`` mV, V and the gates at the
resting state. Integration: BrainPy's default ``method="exp_auto"`` (exponential Euler,
linearised automatically). The time loop is ``brainpy.math.for_loop`` (a ``lax.scan``,
here inside ``bm.jit`` so it compiles once; ``DSRunner`` loops the same way) over
``HH.step_run(i, I)`` with the current ``A * (i >= 10 ms / dt)`` computed in the loop
(no (T, N) input array). ``"v"`` returns V each step; ``"v10"`` runs an inner ``for_loop`` of 10
steps per outer iteration and returns V; ``"spikes"`` accumulates ``HH.spike`` (upward
crossings of V_th) in a state variable and returns nothing per step. Precision:
float32 unless ``PEERS_X64=1``. ``build_s`` is construction plus the first
(compiling) call; ``run_s`` the median of later calls.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["NAME", "available", "run", "version"]

NAME = "brainpy_hh"


def available() -> bool:
    """Whether ``brainpy`` imports."""
    try:
        import brainpy  # noqa: F401
    except Exception:
        return False
    return True


def version() -> str:
    """The BrainPy version."""
    import brainpy

    return str(brainpy.__version__)


def run(
    amplitudes: np.ndarray, *, dt: float, t_max: float, record: str, repeats: int = 1
) -> dict[str, Any]:
    """Simulate the standard workload (see :mod:`benchmarks.peers._workload`).

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: step, ms.
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
        repeats: timed repetitions after the compiling call (median).

    Returns:
        The common result dict.
    """
    import brainpy as bp
    import brainpy.math as bm
    import jax

    if os.environ.get("PEERS_X64") == "1":
        bm.enable_x64()
    amps_np = w.check_args(amplitudes, dt, t_max, record)
    steps, k_on, every = w.n_steps(dt, t_max), w.stimulus_on(dt), w.record_every(record)
    n = amps_np.size
    t0 = time.perf_counter()
    bm.set_dt(dt)
    rest = w.resting_state()
    neu = bp.dyn.HH(
        n, gL=w.G_LEAK, EL=w.E_LEAK, gNa=w.G_NA, gK=w.G_K, ENa=w.E_NA, EK=w.E_K, C=w.C_M,
        V_th=w.SPIKE_THRESHOLD, V_initializer=bp.init.Constant(rest["v"]),
        m_initializer=bp.init.Constant(rest["m"]), h_initializer=bp.init.Constant(rest["h"]),
        n_initializer=bp.init.Constant(rest["n"]),
    )
    amps = bm.asarray(amps_np, dtype=bm.float_)
    counts = bm.Variable(bm.zeros(n, dtype=bm.int32))

    def one_step(i: Any) -> None:
        neu.step_run(i, amps * (i >= k_on))
        counts.value += neu.spike.value

    def body(i: Any) -> Any:
        if record == "spikes":
            one_step(i)
            return None
        if every == 1:
            one_step(i)
        else:
            bm.for_loop(one_step, i * every + bm.arange(every), progress_bar=False)
        return neu.V.value

    n_iter = steps if record == "spikes" else steps // every

    indices = bm.arange(n_iter)

    @bm.jit
    def loop() -> Any:
        return bm.for_loop(body, indices, progress_bar=False)

    def simulate() -> Any:
        neu.reset_state()
        counts.value = bm.zeros(n, dtype=bm.int32)
        out = loop()
        return jax.block_until_ready(counts.value if out is None else out)

    simulate()
    build_s = time.perf_counter() - t0
    _, times, out = median_time(simulate, repeats)
    if record == "spikes":
        spike_counts, v_last = np.asarray(counts.value), None
    else:
        v = np.concatenate([np.full((1, n), rest["v"]), np.asarray(out)]).T  # (N, n_rec)
        spike_counts, v_last = w.count_crossings(v), v[-1]
    return make_result(
        build_s=build_s, run_times=times, spike_counts=spike_counts, v_last=v_last,
        n_steps=steps, method=f"{neu.method} (brainpy.dyn.HH default)",
        backend=f"brainpy {version()}, jax {jax.__version__}, {bm.float_.__name__ if hasattr(bm.float_, '__name__') else bm.float_}",
    )
