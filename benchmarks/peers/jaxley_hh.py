"""Peer: Jaxley, one single-compartment cell with ``jaxley.channels.HH``, ``vmap``-ped.

Jaxley's recommended way to simulate many independent parameter/stimulus sets is one
module and ``jax.vmap`` over a jit-compiled function that calls ``jx.integrate`` with
``data_stimuli`` (the pattern of Jaxley's jit/vmap tutorial). The cell is
one ``jx.Compartment`` (length 10 um, radius 5/pi um: area 100 um2, so ``A * 1e-3`` nA
is A uA/cm2) with ``HH`` (the NEURON ``hh`` parameters, no temperature factor: exact
at 6.3 C), cm = 1 uF/cm2, V set to the resting potential and ``init_states()``
putting the gates at steady state. Solver: Jaxley's default ``bwd_euler`` (implicit
V, exponential-Euler gates: NEURON's scheme). Precision: float32 (JAX default) unless
``PEERS_X64=1``. ``jx.integrate`` records V every step; ``"v10"`` keeps every 10th
sample and ``"spikes"`` returns only the counts of upward 0 mV crossings, both inside
the jitted function. ``build_s`` is building the cell plus the first (compiling) call;
``run_s`` the median of later calls (``block_until_ready``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["NAME", "available", "run", "version"]

NAME = "jaxley_hh"
AREA_UM2 = 100.0


def available() -> bool:
    """Whether ``jaxley`` imports."""
    try:
        import jaxley  # noqa: F401
    except Exception:
        return False
    return True


def version() -> str:
    """The Jaxley version."""
    import jaxley

    return str(jaxley.__version__)


def _build(dt: float, t_max: float, record: str) -> Any:
    import jax
    import jax.numpy as jnp
    import jaxley as jx
    from jaxley.channels import HH

    comp = jx.Compartment()
    comp.set("length", 10.0)
    comp.set("radius", AREA_UM2 / (2 * math.pi * 10.0))
    comp.set("capacitance", w.C_M)
    comp.insert(HH())
    comp.set("v", w.resting_state()["v"])
    comp.init_states()
    comp.record("v", verbose=False)
    steps, k_on, every = w.n_steps(dt, t_max), w.stimulus_on(dt), w.record_every(record)
    on = (jnp.arange(steps) >= k_on).astype(jnp.result_type(float))
    nA = AREA_UM2 * 1e-5  # nA per uA/cm2

    def one(amp: jax.Array) -> jax.Array:
        stim = comp.data_stimulate(amp * nA * on)
        v = jx.integrate(comp, delta_t=dt, data_stimuli=stim)[0]  # (steps + 1,)
        if record == "spikes":
            above = v >= w.SPIKE_THRESHOLD
            return jnp.sum(above[1:] & ~above[:-1])
        return v[::every]

    return jax.jit(jax.vmap(one))


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
    import jax

    if os.environ.get("PEERS_X64") == "1":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    amps_np = w.check_args(amplitudes, dt, t_max, record)
    amps = jnp.asarray(amps_np, dtype=jnp.result_type(float))
    t0 = time.perf_counter()
    fn = _build(dt, t_max, record)
    jax.block_until_ready(fn(amps))
    build_s = time.perf_counter() - t0
    _, times, out = median_time(lambda: jax.block_until_ready(fn(amps)), repeats)
    out = np.asarray(out)
    if record == "spikes":
        counts, v_last = out, None
    else:
        counts, v_last = w.count_crossings(out), out[-1]
    return make_result(
        build_s=build_s, run_times=times, spike_counts=counts, v_last=v_last,
        n_steps=w.n_steps(dt, t_max), method="bwd_euler (implicit V, exponential gates)",
        backend=f"jaxley {version()}, jax {jax.__version__}, {jnp.result_type(float)}, "
        f"{jax.default_backend()}",
    )
