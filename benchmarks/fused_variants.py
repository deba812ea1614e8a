"""The GPU kernel (:mod:`hhjax.fused`) on a GPU: agreement with XLA's scan, the memory
bandwidth ceiling, and neuron-steps/s of its launch shapes against XLA's scan.

    python -m benchmarks.fused_variants [--n 1e6] [--tag fused_variants]

writes ``benchmarks/results/<tag>.json`` and prints a table; the standard workload of
:mod:`benchmarks.run` (NEURON ``hh``, a step from 10 ms, dt 0.025 ms, 4000 steps).
Needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import hhjax
from benchmarks.run import DT, RESULTS, STEP_START, T_MAX, _amplitudes, _environment, _log
from hhjax import fused

N_STEPS = int(round(T_MAX / DT))


def _sim(n: int, dtype: Any, kernel: bool, **kw: Any) -> Any:
    """``hhjax.simulate`` of the standard workload, through the kernel or XLA's scan."""
    orig = fused.available
    if not kernel:
        fused.available = lambda cfg, platform: False
    try:
        amps = jnp.asarray(_amplitudes(n), dtype)
        stim = hhjax.stimulus.step_current(amps if n > 1 else amps[0], STEP_START)
        return hhjax.simulate(hhjax.presets.neuron_hh(), stim, dt=DT, t_max=T_MAX, **kw)
    finally:
        fused.available = orig


def _max_diff(a: Any, b: Any) -> float:
    """Largest |a - b| where both are finite (spike stores hold NaN past the last)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a - b)[both]))


def agreement(n: int = 1000) -> list[dict[str, Any]]:
    """Kernel against XLA's scan on this GPU in float32, both against float64 XLA, and
    the kernel against XLA in float64."""
    rows = []
    cases = [("exp_euler", dict(record="v")), ("rk4", dict(record="v")),
             ("euler", dict(record="v")), ("exp_euler", dict(record="v", every=10)),
             ("exp_euler", dict(record=("v", "gates", "currents"), every=7)),
             ("exp_euler", dict(record="spikes")), ("rk4", dict(record="spikes"))]
    for method, kw in cases:
        with jax.enable_x64(True):
            ref = _sim(n, jnp.float64, False, method=method, **kw)
            ref_k = _sim(n, jnp.float64, True, method=method, **kw)
        k = _sim(n, jnp.float32, True, method=method, **kw)
        x = _sim(n, jnp.float32, False, method=method, **kw)
        row: dict[str, Any] = {"method": method, **{name: str(v) for name, v in kw.items()}}
        if k.v is not None:
            row["max_dv_kernel_xla_f32"] = _max_diff(k.v, x.v)
            row["max_dv_kernel_f64ref"] = _max_diff(k.v, ref.v)
            row["max_dv_xla_f64ref"] = _max_diff(x.v, ref.v)
            row["max_dv_kernel64_xla64"] = _max_diff(ref_k.v, ref.v)
        if k.spike_counts is not None:
            row["counts_equal"] = bool(np.array_equal(k.spike_counts, x.spike_counts))
            row["counts_equal_64"] = bool(np.array_equal(ref_k.spike_counts, ref.spike_counts))
            row["max_dt_spike_ms"] = _max_diff(k.spike_times, x.spike_times)
            row["spikes"] = int(np.asarray(k.spike_counts).sum())
        row["max_dvmax"] = _max_diff(k.v_max, x.v_max)
        rows.append(row)
        _log(f"agreement {row}")
    return rows


def bandwidth(gb: float = 4.0) -> float:
    """Device-to-device copy, bytes read + written per second (median of 20)."""
    x = jnp.ones((int(gb * 2**30 / 4),), jnp.float32)
    f = jax.jit(lambda a: a * 1.0000001)
    jax.block_until_ready(f(x))
    ts = []
    for _ in range(20):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        ts.append(time.perf_counter() - t0)
    return 2 * x.nbytes / statistics.median(ts)


def timed(fn: Any, repeats: int = 5) -> tuple[float, float]:
    t0 = time.perf_counter()
    last = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    del last
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return first, statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", default="1e6")
    p.add_argument("--shapes", default="64x2,128x4,256x4,256x8,512x8")
    p.add_argument("--tag", default="fused_variants")
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--copy-gb", type=float, default=4.0)
    p.add_argument("--then-suite", default="",
                   help="benchmarks.run arguments to run after, with the fastest launch shape")
    args = p.parse_args()
    out: dict[str, Any] = {"environment": _environment(), "timings": []}
    bw = bandwidth(args.copy_gb)
    out["copy_bytes_per_s"] = bw
    _log(f"copy: {bw / 1e12:.2f} TB/s (read + write)")
    if not args.no_agreement:
        out["agreement"] = agreement()
    ns = [int(float(x)) for x in args.n.split(",")]
    for n in ns:
        for record in ("v", "v10", "spikes"):
            kw = {"v": dict(record="v"), "v10": dict(record="v", every=10),
                  "spikes": dict(record="spikes")}[record]
            layouts = (False, True) if record == "v" else (False,)  # time-major or not
            variants = [("xla", None, False)] + [
                (s, tuple(int(x) for x in s.split("x")), tm)
                for s in args.shapes.split(",") for tm in layouts
            ]
            for name, shape, tm in variants:
                jax.clear_caches()
                if shape:
                    fused.BLOCK, fused.NUM_WARPS = shape
                fused.TIME_MAJOR = tm
                try:
                    first, run = timed(
                        lambda n=n, k=shape is not None, kw=kw: _sim(n, jnp.float32, k, **kw)
                    )
                except Exception as err:  # noqa: BLE001 - report and go on
                    _log(f"N={n} {record} {name} tm={tm}: failed {type(err).__name__}: "
                         f"{str(err)[:300]}")
                    continue
                row = {"n": n, "record": record, "variant": name, "time_major": tm,
                       "first_s": first, "run_s": run, "neuron_steps_per_s": n * N_STEPS / run}
                out["timings"].append(row)
                _log(f"N={n} {record:6s} {name:7s} tm={tm!s:5s} first {first:.2f} s, "
                     f"run {run * 1e3:.2f} ms, {row['neuron_steps_per_s']:.3g} neuron-steps/s")
                RESULTS.joinpath(f"{args.tag}.json").write_text(json.dumps(out, indent=1))
    best = max((r for r in out["timings"] if r["variant"] != "xla" and r["record"] == "v"
                and r["n"] == max(ns)), key=lambda r: r["neuron_steps_per_s"], default=None)
    if best:
        fused.BLOCK, fused.NUM_WARPS = (int(x) for x in best["variant"].split("x"))
        fused.TIME_MAJOR = best["time_major"]
        out["best"] = best
    else:
        fused.TIME_MAJOR = None
    RESULTS.joinpath(f"{args.tag}.json").write_text(json.dumps(out, indent=1))
    if args.then_suite:
        _log(f"suite with block {fused.BLOCK}, {fused.NUM_WARPS} warps, "
             f"time-major {fused.TIME_MAJOR}: {args.then_suite}")
        jax.clear_caches()
        from benchmarks import run

        run.main(args.then_suite.split())


if __name__ == "__main__":
    main()
