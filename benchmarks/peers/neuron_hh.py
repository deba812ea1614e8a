"""Peer: NEURON's built-in ``hh`` mechanism, plain fixed-step ``h.run``.

One single-compartment section per neuron (nseg = 1, L = 10 um, diam = 10/pi um, so
the membrane area is exactly 100 um2 and an ``IClamp`` of ``A * 1e-3`` nA is a density
of A uA/cm2), ``hh`` inserted with its defaults (gnabar .12, gkbar .036, gl .0003
S/cm2, el -54.3 mV; ena 50, ek -77 mV), cm = 1 uF/cm2, ``celsius = 6.3``. Integration:
CVode off, ``secondorder = 0`` (implicit Euler for V, ``cnexp`` for the gates), ``h.dt``
= dt; ``finitialize`` at the resting potential. NEURON evaluates the IClamp at the
step midpoint, so a step with ``del = 10 ms`` is on exactly from step k = 10/dt, as in
hhjax. Recording: ``Vector.record`` of every section's V (every step, or with
``Dt = 10 dt``); in ``"spikes"`` mode one ``NetCon`` per section (threshold 0 mV) records
spike times into one pair of Vectors. Building N sections is slow in Python (about
N * 0.3 ms); ``build_s`` covers building and one ``finitialize``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from . import _workload as w
from ._result import make_result, median_time

__all__ = ["AREA_UM2", "NAME", "available", "build", "run", "version"]

NAME = "neuron_hh"
AREA_UM2 = 100.0  # membrane area of each section, um2 (L = 10 um, diam = 10/pi um)


def available() -> bool:
    """Whether ``neuron`` imports."""
    try:
        import neuron  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    """NEURON's version string."""
    import neuron

    return str(neuron.__version__)


def nA_per_density() -> float:
    """IClamp nA per uA/cm2 of current density on a section of :data:`AREA_UM2`."""
    return AREA_UM2 * 1e-8 * 1e3  # um2 -> cm2, uA -> nA


def build(amplitudes: np.ndarray, dt: float, t_max: float, record: str) -> dict[str, Any]:
    """Create the sections, clamps and recorders; returns the NEURON objects to keep alive.

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: step, ms.
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
    """
    from neuron import h

    h.load_file("stdrun.hoc")
    h.celsius = 6.3
    h.cvode_active(0)
    h.secondorder = 0
    h.dt = dt
    h.steps_per_ms = 1.0 / dt
    h.tstop = t_max
    h.v_init = w.resting_state()["v"]
    keep: dict[str, Any] = {"secs": [], "clamps": [], "vecs": [], "ncs": []}
    if record == "spikes":
        keep["tvec"], keep["idvec"] = h.Vector(), h.Vector()
    for i, amp in enumerate(np.asarray(amplitudes, dtype=float)):
        sec = h.Section(name=f"cell{i}")
        sec.nseg = 1
        sec.L = 10.0
        sec.diam = 10.0 / math.pi
        sec.cm = 1.0
        sec.insert("hh")
        seg = sec(0.5)
        clamp = h.IClamp(seg)
        clamp.delay = w.STEP_START
        clamp.dur = 1e9
        clamp.amp = amp * nA_per_density()
        keep["secs"].append(sec)
        keep["clamps"].append(clamp)
        if record == "spikes":
            nc = h.NetCon(seg._ref_v, None, sec=sec)
            nc.threshold = w.SPIKE_THRESHOLD
            nc.record(keep["tvec"], keep["idvec"], i)
            keep["ncs"].append(nc)
        else:
            vec = h.Vector()
            if record == "v":
                vec.record(seg._ref_v)
            else:
                vec.record(seg._ref_v, w.record_every(record) * dt)
            keep["vecs"].append(vec)
    for sec in keep["secs"]:  # hh's ena/ek come from the ion defaults; make them explicit
        sec.ena, sec.ek = w.E_NA, w.E_K
    h.finitialize(h.v_init)
    return keep


def _simulate(keep: dict[str, Any], t_max: float) -> None:
    from neuron import h

    h.finitialize(h.v_init)
    h.continuerun(t_max)


def run(
    amplitudes: np.ndarray, *, dt: float, t_max: float, record: str, repeats: int = 1
) -> dict[str, Any]:
    """Simulate the standard workload (see :mod:`benchmarks.peers._workload`).

    Args:
        amplitudes: step amplitude of each neuron, uA/cm2, (N,).
        dt: step, ms.
        t_max: duration, ms.
        record: ``"v"``, ``"v10"`` or ``"spikes"``.
        repeats: timed repetitions of ``finitialize`` + ``continuerun`` (median).

    Returns:
        The common result dict; ``spike_times`` (ms, per neuron) in ``"spikes"`` mode.
    """
    amps = w.check_args(amplitudes, dt, t_max, record)
    t0 = time.perf_counter()
    keep = build(amps, dt, t_max, record)
    build_s = time.perf_counter() - t0
    _, times, _ = median_time(lambda: _simulate(keep, t_max), repeats)
    extra: dict[str, Any] = {}
    if record == "spikes":
        ids = np.array(keep["idvec"].to_python(), dtype=np.int64)
        counts = np.bincount(ids, minlength=amps.size)
        v_last = None
        tspk = np.array(keep["tvec"].to_python(), dtype=float)
        extra["spike_times_last"] = tspk[ids == amps.size - 1].tolist()
    else:
        v_last = np.asarray(keep["vecs"][-1])
        counts = np.array([w.count_crossings(np.asarray(v)) for v in keep["vecs"]])
    return make_result(
        build_s=build_s, run_times=times, spike_counts=counts, v_last=v_last,
        n_steps=w.n_steps(dt, t_max),
        method="fixed step, implicit Euler (secondorder=0) + cnexp gates, cvode off",
        backend=f"NEURON {version()}", **extra,
    )
