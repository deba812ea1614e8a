"""Generate NEURON ``hh`` reference traces for validating hhjax: tests/data/neuron_hh_traces.npz.

Run in the environment that has NEURON (``bash benchmarks/setup_bench_env.sh`` first)::

    .venv-bench/bin/python benchmarks/neuron_reference.py [--out tests/data/neuron_hh_traces.npz]

What is simulated: one single-compartment section per amplitude (nseg = 1, L = 10 um,
diam = 10/pi um: area 100 um2; cm = 1 uF/cm2), NEURON's built-in ``hh`` with its
default parameters (gnabar .12, gkbar .036, gl .0003 S/cm2, el -54.3 mV, ena 50,
ek -77 mV), ``celsius = 6.3``, an ``IClamp`` step of A uA/cm2 (``A * 1e-3`` nA) from
10 ms to the end, for A in :data:`AMPLITUDES`; 100 ms at each dt in :data:`DTS`, fixed
step (CVode off, ``secondorder = 0``: implicit Euler for V, ``cnexp`` for the gates),
``finitialize`` at the exact resting potential. ``usetable_hh = 0``, so NEURON uses
the exact rate functions, as hhjax does (NEURON's default 1 mV rate tables would add
their interpolation error to the comparison).

Stored (all float64 unless said):
    ``amplitudes`` (n_amp,) uA/cm2; ``dts`` (n_dt,) ms; ``t`` (n_rec,) ms, the 0.1 ms
    grid on which V is stored; ``v`` (n_dt, n_amp, n_rec) mV, V at those times;
    ``spike_times_netcon`` (n_dt, n_amp, max_spikes) ms: NEURON's own spike times from a
    ``NetCon`` with threshold 0 mV (the step at which V first reaches 0 mV; NaN padded);
    ``spike_times_interp`` (same shape): upward 0 mV crossings of the full-resolution V,
    linearly interpolated between steps; ``v_rest`` () mV, the initial V;
    ``meta`` (a JSON string): NEURON version, every setting above, the command.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.peers import _workload as w  # noqa: E402

AMPLITUDES = (0.0, 5.0, 7.0, 10.0, 20.0)  # uA/cm2
DTS = (0.025, 0.005)  # ms
T_MAX = 100.0  # ms
SAMPLE_DT = 0.1  # ms, grid of the stored V
AREA_UM2 = 100.0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "neuron_hh_traces.npz"


def crossings(t: np.ndarray, v: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Linearly interpolated times (ms) of upward ``threshold`` crossings of ``v``."""
    k = np.nonzero((v[:-1] < threshold) & (v[1:] >= threshold))[0]
    frac = (threshold - v[k]) / (v[k + 1] - v[k])
    return t[k] + frac * (t[k + 1] - t[k])


def simulate(dt: float) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Run every amplitude at ``dt`` ms; returns (V (n_amp, steps + 1), NetCon times, interp)."""
    from neuron import h

    h.load_file("stdrun.hoc")
    h.celsius = 6.3
    h.cvode_active(0)
    h.secondorder = 0
    h.usetable_hh = 0
    h.dt = dt
    h.steps_per_ms = 1.0 / dt
    h.tstop = T_MAX
    h.v_init = w.resting_state()["v"]
    keep = []
    for i, amp in enumerate(AMPLITUDES):
        sec = h.Section(name=f"ref{i}")
        sec.nseg, sec.L, sec.diam, sec.cm = 1, 10.0, 10.0 / math.pi, 1.0
        sec.insert("hh")
        sec.ena, sec.ek = w.E_NA, w.E_K
        if abs(sec(0.5).area() - AREA_UM2) > 1e-9:
            raise RuntimeError(f"section area {sec(0.5).area()} um2, expected {AREA_UM2}")
        clamp = h.IClamp(sec(0.5))
        clamp.delay, clamp.dur, clamp.amp = w.STEP_START, 1e9, amp * AREA_UM2 * 1e-5
        vec, tspk = h.Vector(), h.Vector()
        vec.record(sec(0.5)._ref_v)
        nc = h.NetCon(sec(0.5)._ref_v, None, sec=sec)
        nc.threshold = w.SPIKE_THRESHOLD
        nc.record(tspk)
        keep.append((sec, clamp, vec, nc, tspk))
    h.finitialize(h.v_init)
    h.continuerun(T_MAX)
    v = np.array([k[2].to_python() for k in keep], dtype=float)
    steps = int(round(T_MAX / dt))
    if v.shape[1] != steps + 1:
        raise RuntimeError(f"recorded {v.shape[1]} samples at dt {dt}, expected {steps + 1}")
    t = np.arange(steps + 1) * dt
    netcon = [np.array(k[4].to_python(), dtype=float) for k in keep]
    interp = [crossings(t, row) for row in v]
    for sec, *_ in keep:
        h.delete_section(sec=sec)
    return v, netcon, interp


def _pad(rows: list[list[np.ndarray]]) -> np.ndarray:
    width = max(1, max(len(r) for row in rows for r in row))
    out = np.full((len(rows), len(rows[0]), width), np.nan)
    for i, row in enumerate(rows):
        for j, r in enumerate(row):
            out[i, j, : len(r)] = r
    return out


def main(argv: list[str] | None = None) -> int:
    """Generate the reference file; returns the exit status."""
    import neuron

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    t_rec = np.arange(int(round(T_MAX / SAMPLE_DT)) + 1) * SAMPLE_DT
    vs, netcons, interps = [], [], []
    for dt in DTS:
        v, netcon, interp = simulate(dt)
        stride = int(round(SAMPLE_DT / dt))
        vs.append(v[:, ::stride])
        netcons.append(netcon)
        interps.append(interp)
        print(f"dt={dt} ms: spikes per amplitude "
              f"{dict(zip(AMPLITUDES, (len(s) for s in netcon), strict=True))}", file=sys.stderr)
    meta = {
        "neuron_version": str(neuron.__version__),
        "python": platform.python_version(),
        "mechanism": "hh (built-in), usetable_hh = 0 (exact rates)",
        "parameters": {"gnabar_S_cm2": 0.12, "gkbar_S_cm2": 0.036, "gl_S_cm2": 0.0003,
                       "el_mV": -54.3, "ena_mV": 50.0, "ek_mV": -77.0, "cm_uF_cm2": 1.0,
                       "celsius": 6.3},
        "geometry": "nseg=1, L=10 um, diam=10/pi um (area 100 um2)",
        "stimulus": "IClamp, delay 10 ms, dur 1e9 ms, amp = A * 1e-3 nA (A uA/cm2)",
        "integration": "fixed step, cvode off, secondorder=0, h.finitialize(v_rest), "
                       "h.continuerun(100)",
        "v_rest_mV": w.resting_state()["v"],
        "spike_threshold_mV": w.SPIKE_THRESHOLD,
        "command": "python benchmarks/neuron_reference.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, amplitudes=np.array(AMPLITUDES), dts=np.array(DTS), t=t_rec,
        v=np.array(vs), spike_times_netcon=_pad(netcons), spike_times_interp=_pad(interps),
        v_rest=np.array(w.resting_state()["v"]), meta=np.array(json.dumps(meta)),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
