"""The scale check: 1e6 neurons x 1e5 steps, spikes only, on one machine.

``python -m benchmarks.scale`` simulates the standard workload (NEURON ``hh``, a step of
linspace(9.5, 10.5, N) uA/cm2 from 10 ms, dt = 0.025 ms) for ``--n`` neurons and
``--steps`` steps with ``record="spikes"``, in chunks so that progress shows, and writes
``results/scale.json`` and ``.md``: wall time, neuron-steps/s, peak resident memory of
the process, spike counts.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks.run import machine

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--n", type=float, default=1e6, help="neurons")
    p.add_argument("--steps", type=float, default=1e5, help="steps of 0.025 ms")
    p.add_argument("--chunk", type=int, default=2**17, help="neurons per call")
    p.add_argument("--tag", default="scale")
    args = p.parse_args(argv)
    import jax

    import hhjax

    n, steps, dt = int(args.n), int(args.steps), 0.025
    stim = hhjax.stimulus.step_current(np.linspace(9.5, 10.5, n, dtype=np.float32), 10.0)
    model = hhjax.presets.neuron_hh()
    t0 = time.perf_counter()
    out = hhjax.simulate(model, stim, dt=dt, t_max=steps * dt, record="spikes",
                         chunk_size=args.chunk, progress=True)
    counts = np.asarray(jax.block_until_ready(out.spike_counts))
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "n": n, "steps": steps, "dt": dt, "chunk": args.chunk, "wall_s": wall,
        "neuron_steps_per_s": n * steps / wall, "peak_rss_mb": peak_mb,
        "spike_counts_min_max": [int(counts.min()), int(counts.max())],
        "spikes_total": int(counts.sum()), "machine": machine(),
        "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / args.tag
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(
        f"# Scale check\n\n`python -m benchmarks.scale --n {args.n:g} --steps {args.steps:g}`: "
        f"{n:.0e} neurons x {steps:.0e} steps (dt {dt} ms, {steps * dt:g} ms), spikes only, "
        f"chunks of {args.chunk}, on {result['devices']} (jax {jax.__version__}).\n\n"
        f"| wall s | neuron-steps/s | peak RSS MB | spikes per neuron (min-max) | spikes total |\n"
        f"| ---: | ---: | ---: | ---: | ---: |\n"
        f"| {wall:.1f} | {n * steps / wall:.3g} | {peak_mb:.0f} | "
        f"{counts.min()}-{counts.max()} | {int(counts.sum())} |\n"
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
