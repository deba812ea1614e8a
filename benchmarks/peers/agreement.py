"""Spike-count agreement of every peer with hhjax on the standard workload.

Runs hhjax (exp_euler, float32 and float64, in this process) and each peer through its
CLI in the peers' environment (``.venv-bench/bin/python -m benchmarks.peers ...``),
at a small N, and prints a Markdown table: per peer the total spike count, the largest
per-neuron difference from hhjax and how many neurons differ by more than one spike::

    python -m benchmarks.peers.agreement --n 100 [--record spikes] [--python PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import PEERS
from . import _workload as w

ROOT = Path(__file__).resolve().parents[2]


def hhjax_counts(amplitudes: np.ndarray, dt: float, t_max: float, x64: bool) -> np.ndarray:
    """hhjax exp_euler spike counts (upward 0 mV crossings of V every step)."""
    import jax
    import jax.numpy as jnp

    import hhjax

    steps, on = w.n_steps(dt, t_max), w.stimulus_on(dt)
    with jax.enable_x64(x64):
        stim = np.zeros((amplitudes.size, steps))
        stim[:, on:] = amplitudes[:, None]
        dtype = jnp.float64 if x64 else jnp.float32
        trace = hhjax.simulate(hhjax.presets.neuron_hh(), jnp.asarray(stim, dtype), dt=dt)
        return w.count_crossings(np.asarray(trace.v))


def peer_counts(name: str, n: int, record: str, dt: float, t_max: float,
                python: str) -> tuple[np.ndarray | None, str]:
    """A peer's spike counts through its CLI (None and the error text if it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [python, "-m", "benchmarks.peers", name, "--n", str(n), "--record", record,
               "--dt", str(dt), "--t-max", str(t_max), "--json", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            return None, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
        res = json.loads(out.read_text())
        return np.asarray(res["spike_counts"]), f"{res['version']}: {res.get('backend', '')}"


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (1 if some peer differs by more than one spike)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--record", choices=w.RECORD_MODES, default="spikes")
    parser.add_argument("--dt", type=float, default=0.025)
    parser.add_argument("--t-max", type=float, default=100.0)
    default_py = ROOT / ".venv-bench" / "bin" / "python"
    parser.add_argument("--python", default=str(default_py if default_py.exists()
                                                 else sys.executable))
    parser.add_argument("--peers", default=",".join(PEERS))
    args = parser.parse_args(argv)
    amps = w.default_amplitudes(args.n)
    ref = hhjax_counts(amps, args.dt, args.t_max, x64=False)
    rows = [("hhjax float64", hhjax_counts(amps, args.dt, args.t_max, x64=True), "exp_euler")]
    for name in args.peers.split(","):
        print(f"running {name} ...", file=sys.stderr)
        counts, info = peer_counts(name, args.n, args.record, args.dt, args.t_max, args.python)
        rows.append((name, counts, info))
    print(f"N = {args.n}, amplitudes linspace(9.5, 10.5), record = {args.record}, dt = "
          f"{args.dt} ms, {args.t_max} ms; reference: hhjax exp_euler float32, "
          f"{int(ref.sum())} spikes\n")
    print("| peer | spikes | max abs diff | neurons off by > 1 | version / backend |")
    print("| --- | --- | --- | --- | --- |")
    bad = False
    for name, counts, info in rows:
        if counts is None:
            print(f"| {name} | failed | | | {info} |")
            bad = True
            continue
        diff = np.abs(counts - ref)
        bad |= bool(np.any(diff > 1))
        print(f"| {name} | {int(counts.sum())} | {int(diff.max())} | {int(np.sum(diff > 1))} "
              f"| {info} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
