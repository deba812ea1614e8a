"""Run one peer out of process and write its result as JSON.

Usage (from the repository root, in the environment that has the peer)::

    .venv-bench/bin/python -m benchmarks.peers neuron_hh --n 100 --record spikes \
        --dt 0.025 --t-max 100 --repeats 3 --json out.json

Amplitudes are ``linspace(9.5, 10.5, n)`` uA/cm2 (10 for n = 1) unless
``--amplitudes a,b,c`` is given. Prints one summary line to stdout; ``--json`` writes
the full result (spike counts and ``v_last`` as lists, plus their checksums).
``--list`` prints every peer with ``available()`` and ``version()`` as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import PEERS, get
from ._workload import RECORD_MODES, default_amplitudes


def _jsonable(result: dict[str, Any], peer: Any) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("spike_counts", "v_last")}
    counts = result["spike_counts"]
    out["spike_counts"] = counts.tolist()
    out["spike_counts_sum"] = int(counts.sum())
    out["spike_counts_crc32"] = zlib.crc32(counts.astype("<i8").tobytes())
    v_last = result["v_last"]
    out["v_last"] = None if v_last is None else v_last.tolist()
    out["peer"] = peer.NAME
    out["version"] = peer.version()
    out["python"] = platform.python_version()
    out["machine"] = platform.machine()
    return out


def _keep_memory() -> bool:
    """Apply hhjax's ``mallopt`` settings (``hhjax/hostmem.py``, loaded on its own so that
    hhjax's other import-time settings stay out of the peer's process) before the peer
    starts any thread."""
    path = Path(__file__).resolve().parents[2] / "hhjax" / "hostmem.py"
    spec = importlib.util.spec_from_file_location("_hhjax_hostmem", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return bool(module.set_malloc_options())


def _list() -> int:
    rows = {}
    for name in PEERS:
        mod = get(name)
        ok = mod.available()
        rows[name] = {"available": ok, "version": mod.version() if ok else None}
    print(json.dumps(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", nargs="?", choices=PEERS)
    parser.add_argument("--list", action="store_true", help="list peers and versions as JSON")
    parser.add_argument("--n", type=int, default=1, help="number of neurons")
    parser.add_argument("--amplitudes", help="comma-separated step amplitudes, uA/cm2")
    parser.add_argument("--record", choices=RECORD_MODES, default="v")
    parser.add_argument("--dt", type=float, default=0.025, help="step, ms")
    parser.add_argument("--t-max", type=float, default=100.0, help="duration, ms")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs (median reported)")
    parser.add_argument("--json", help="write the full result here")
    parser.add_argument("--keep-memory", action="store_true",
                        help="glibc keeps freed memory, as `import hhjax` sets it")
    args = parser.parse_args(argv)
    if args.keep_memory and not _keep_memory():
        print("--keep-memory: not available here (needs Linux with glibc)", file=sys.stderr)
        return 1
    if args.list:
        return _list()
    if args.peer is None:
        parser.error("name a peer (or --list)")
    peer = get(args.peer)
    if not peer.available():
        print(f"{args.peer}: not available in {sys.executable}", file=sys.stderr)
        return 2
    if args.amplitudes:
        amps = np.array([float(a) for a in args.amplitudes.split(",")])
    else:
        amps = default_amplitudes(args.n)
    result = peer.run(amps, dt=args.dt, t_max=args.t_max, record=args.record,
                      repeats=args.repeats)
    out = _jsonable(result, peer)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh)
    print(f"{args.peer} {out['version']} n={out['n']} record={args.record} "
          f"build_s={out['build_s']:.3f} run_s={out['run_s']:.4f} "
          f"neuron_steps/s={out['neuron_steps_per_s']:.3e} spikes={out['spike_counts_sum']} "
          f"crc32={out['spike_counts_crc32']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
