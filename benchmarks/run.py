"""The hhjax benchmark suite: throughput, compile time, memory, gradients, peers.

One command (from the repository root)::

    python -m benchmarks.run              # the full suite (tens of minutes on 2 cores)
    python -m benchmarks.run --quick      # a 1-2 minute smoke version
    python -m benchmarks.run --help       # sizes, dtypes, methods, peers, ...

writes ``benchmarks/results/<tag>.json``, ``<tag>.md`` (the tables) and ``<tag>.png``
(neuron-steps/s against N), ``<tag>`` defaulting to ``latest`` (``--tag``).

The workload (the peers' too, :mod:`benchmarks.peers._workload`): NEURON ``hh`` point
neurons (``hhjax.presets.neuron_hh()``), a step of ``linspace(9.5, 10.5, N)`` uA/cm2
from 10 ms, dt = 0.025 ms, 100 ms (4000 steps), every neuron from rest; recording V every
step (``v``), every 10th step (``v10``) or spikes only (``spikes``); ``v+reuse`` is ``v``
with each timed call passing the previous call's trace as ``reuse=`` (records written in
place, as a parameter sweep would, instead of into fresh memory). hhjax is timed
through ``hhjax.simulate(model, hhjax.stimulus.step_current(amplitudes, 10.0), ...)``,
as a user writes it: the step is kept factored (amplitude per neuron times one shared
time profile), so no ``(N, 4000)`` array is built or streamed, just as the peers compute
the current inside their loops. The first call (trace + compile + run) and then the
median of several steady-state calls (``block_until_ready``), after up to three untimed
warm-up calls (``warm_up_s``; the peers get the same), are timed; ``compile_s`` is the
first call less a steady-state one. Memory is the peak of the memory in use during two
more calls, after the timed ones and sampled every 2 ms (counting the heap's kept bytes takes the
allocator's lock: beside the timed calls it slowed them by 10-40 %), less that before
the first call, on top of the inputs: what the configuration makes the process hold,
with the previous call's trace alive during each call. In use means resident less what
hhjax's heap keeps free for reuse (:mod:`hhjax.hostmem`), which stays resident but is
held for no one.

Peers (NumPy Euler, SciPy odeint, NEURON, Brian2, Jaxley, BrainPy) run through
``python -m benchmarks.peers`` in ``.venv-bench`` when it exists (``bash
benchmarks/setup_bench_env.sh``), else in this interpreter when importable; a peer
that is missing is skipped with a note. The gradient part times ``jax.grad`` of a
voltage loss against the forward run for 1e3-1e5 steps, with and without
``checkpoint=True``, with XLA's own count of the temporary memory.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers._result import WARM_CALLS, warm_up

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DT, T_MAX, STEP_START = 0.025, 100.0, 10.0
N_STEPS = int(round(T_MAX / DT))
RECORDS = {"v": dict(record="v"), "v10": dict(record="v", every=10), "spikes": dict(record="spikes")}
REUSE = "+reuse"  # "v+reuse": each timed call writes into the previous call's record
PEERS = ("numpy_euler", "scipy_odeint", "brian2_hh", "neuron_hh", "jaxley_hh", "brainpy_hh")
PEER_MAX_N = {"scipy_odeint": 100}  # the adapters' own limits


def _base(record: str) -> str:
    """The recording a peer is compared on (``"v+reuse"`` -> ``"v"``)."""
    return record.removesuffix(REUSE)


def _log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class _PeakInUse:
    """Peak memory in use (bytes) by this process while the block runs, against ``base``
    (default: that when the block starts). In use: resident less the free bytes that
    hhjax's heap keeps for reuse (resident too, but held for no one); on a GPU, the
    bytes its allocator has handed out on the local devices. The resident size
    is read every 2 ms; the kept bytes, which take the allocator's lock to count, every
    20 ms (every 2 ms slowed a 1e5-neuron run by 10-40 %)."""

    def __init__(self, base: int | None = None) -> None:
        self._base = base
        self._kept = 0

    def __enter__(self) -> _PeakInUse:
        self.peak = self._in_use()
        self.base = self.peak if self._base is None else self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._in_use())

    def _poll(self) -> None:
        i = 0
        while not self._stop.wait(0.002):
            i += 1
            self.peak = max(self.peak, self._in_use(count_kept=i % 10 == 0))

    def _in_use(self, count_kept: bool = True) -> int:
        import jax

        import hhjax.hostmem

        if jax.default_backend() != "cpu":  # an accelerator: its own memory, not the host's
            return sum(
                (d.memory_stats() or {}).get("bytes_in_use", 0) for d in jax.local_devices()
            )
        if count_kept:
            self._kept = hhjax.hostmem.kept_bytes()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") - self._kept

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _amplitudes(n: int) -> np.ndarray:
    return np.full(1, 10.0) if n == 1 else np.linspace(9.5, 10.5, n)


def _stimulus(n: int, dtype: Any) -> Any:
    import jax.numpy as jnp

    import hhjax

    amps = jnp.asarray(_amplitudes(n), dtype)
    if n == 1:  # repeated single-neuron runs: sample once, pass the (n_steps,) array
        return hhjax.stimulus.step_current(amps[0], STEP_START).sample(DT, T_MAX)
    return hhjax.stimulus.step_current(amps, STEP_START)


# AMD families and models -> core generation (AMD's revision guides; family 0x19 holds
# both Zen 3 and Zen 4). Only what this project's machines need to be told apart.
_AMD_CORES = {
    0x17: ((0x00, 0xFF, "Zen/Zen+/Zen 2"),),
    0x19: ((0x00, 0x0F, "Zen 3"), (0x10, 0x1F, "Zen 4"), (0x20, 0x5F, "Zen 3"),
           (0x60, 0xAF, "Zen 4")),
    0x1A: ((0x00, 0xFF, "Zen 5"),),
}


def cpu_info(text: str) -> dict[str, Any]:
    """The processor named in ``/proc/cpuinfo`` text: its model name, vendor, family,
    model and, for AMD, core generation (``core``), plus whether it has AVX-512.

    A machine of one name may be lent on different processors from one session to the
    next: this project's "AMD EPYC" VMs ran the standard run 1.2-2.3x apart, and a Zen 4
    gained nothing from 512-bit vectors where earlier sessions' machine gained 1.6x. So
    every result records which processor it ran on.
    """
    first: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough: the cores are alike
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    info: dict[str, Any] = {
        "name": first.get("model name", ""), "vendor": first.get("vendor_id", ""),
        "avx512": "avx512f" in first.get("flags", "").split(),
    }
    for key in ("cpu family", "model"):
        if first.get(key, "").isdigit():
            info[key.replace("cpu ", "")] = int(first[key])
    if info["vendor"] == "AuthenticAMD" and "family" in info and "model" in info:
        ranges = _AMD_CORES.get(info["family"], ())
        info["core"] = next((c for lo, hi, c in ranges if lo <= info["model"] <= hi), "")
    return info


def _cpu_label(cpu: dict[str, Any]) -> str:
    """``"AMD EPYC, Zen 4 (family 25, model 17), AVX-512"`` (as much as is known)."""
    ids = ", ".join(f"{k} {cpu[k]}" for k in ("family", "model") if k in cpu)
    label = ", ".join(x for x in (cpu["name"], cpu.get("core", "")) if x)
    label = " ".join(x for x in (label, f"({ids})" if ids else "") if x)
    return ", ".join(x for x in (label, "AVX-512" if cpu["avx512"] else "") if x)


def this_cpu() -> dict[str, Any]:
    """:func:`cpu_info` of this machine (empty fields where ``/proc/cpuinfo`` is absent)."""
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_info(f.read())
    except OSError:
        return cpu_info("")


def machine(cpu: dict[str, Any] | None = None) -> str:
    """This machine in words, e.g. ``"x86_64 AMD EPYC, Zen 4 (family 25, model 17),
    AVX-512 (2 cores)"``; every benchmark's result names it."""
    label = _cpu_label(this_cpu() if cpu is None else cpu) or platform.processor()
    return f"{platform.machine()} {label} ({os.cpu_count()} cores)"


def _environment() -> dict[str, Any]:
    import jax
    import jaxlib

    import hhjax

    cpu = this_cpu()
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(cpu), "cpu": cpu, "cores": os.cpu_count(),
        "python": platform.python_version(), "jax": jax.__version__,
        "jaxlib": jaxlib.__version__, "numpy": np.__version__, "hhjax": hhjax.__version__,
        "devices": [str(d) if d.platform == "cpu" else f"{d} ({d.device_kind})"
                    for d in jax.devices()], "backend": jax.default_backend(),
        "load_avg_start": os.getloadavg(),
        # hhjax's import adds its small-loop threshold here; the peers' processes
        # inherit these flags, so every JAX tool runs under the same ones
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # glibc's allocator settings (e.g. glibc.malloc.hugetlb=1: huge pages for large
        # buffers), inherited by every peer's process too
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        # hhjax.hostmem: glibc keeps freed memory for reuse (set at import, default on)
        "hhjax_keeps_memory": hhjax.hostmem.kept,
        "fused_kernel": {"block": hhjax.fused.BLOCK, "num_warps": hhjax.fused.NUM_WARPS,
                         "time_major": hhjax.fused.TIME_MAJOR},
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def _median_runs(
    fn: Any, repeats: int, min_total_s: float = 0.25, max_runs: int = 300
) -> tuple[float, list[float]]:
    """Median of at least ``repeats`` calls, and of more (up to ``max_runs``) until they
    add up to ``min_total_s``: a sub-millisecond call needs hundreds to be stable."""
    (times,) = _paired_runs([fn], repeats, min_total_s, max_runs)
    return statistics.median(times), times


def _paired_runs(
    fns: list[Any], repeats: int, min_total_s: float = 0.25, max_runs: int = 300
) -> list[list[float]]:
    """Each of ``fns`` timed in turn, round after round: at least ``repeats`` rounds,
    more (up to ``max_runs``) until the slowest adds up to ``min_total_s``."""
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < repeats or (
        max(sum(t) for t in times) < min_total_s and len(times[0]) < max_runs
    ):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return times


def bench_hhjax(
    n: int, dtype: str, method: str, rates: str, record: str, repeats: int,
) -> dict[str, Any]:
    """Time ``hhjax.simulate`` on the standard workload (one configuration)."""
    import jax
    import jax.numpy as jnp

    import hhjax
    import hhjax.analysis

    with jax.enable_x64(dtype == "float64"):
        model = hhjax.presets.neuron_hh()
        kw = dict(dt=DT, t_max=T_MAX, method=method, rates=rates, **RECORDS[_base(record)])
        stim = _stimulus(n, dtype)
        last: list[Any] = [None]

        def call() -> Any:
            reuse = last[0] if record.endswith(REUSE) else None
            last[0] = jax.block_until_ready(hhjax.simulate(model, stim, reuse=reuse, **kw))
            return last[0]

        hhjax.recpool.clear()  # records an earlier configuration left for reuse
        gc.collect()  # an earlier configuration's trace, if a cycle still holds it
        base = _PeakInUse()._in_use()
        if record.endswith(REUSE):
            call()  # untimed: the trace that the first timed call writes into
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        reps = repeats if first < 20 else 1
        warm = warm_up(call, reps)  # untimed, as for the peers (benchmarks.peers._result)
        run_s, all_s = _median_runs(call, reps)
        with _PeakInUse(base) as mem:  # after the timing: counting kept bytes slows calls
            for _ in range(min(reps, 2)):
                call()
        out = last[0]
        if out.spike_counts is not None:
            counts = np.asarray(out.spike_counts)
        else:
            counts = np.asarray(hhjax.analysis.spike_count(jnp.asarray(out.v)))
    return {
        "tool": "hhjax", "n": n, "dtype": dtype, "method": method, "rates": rates,
        "record": record, "stimulus": "step_current (factored)",
        "first_call_s": first, "compile_s": max(0.0, first - run_s), "run_s": run_s,
        "run_s_all": all_s, "warm_s_all": warm,
        "warm_up_s": sum(max(0.0, w - run_s) for w in warm),
        "neuron_steps_per_s": n * N_STEPS / run_s,
        "peak_mb": mem.growth_mb, "spikes": int(counts.sum()), "load_avg": os.getloadavg()[0],
    }


_GRAD_WARM_CALLS = 4


def bench_gradient(n_steps: int, checkpoint: bool, repeats: int, n: int = 1) -> dict[str, Any]:
    """``jax.grad`` of a voltage MSE w.r.t. g_Na against the forward loss (``n`` neurons,
    steps of linspace(9.5, 10.5, n) uA/cm2), each compiled with ``hhjax.jit``."""
    import jax
    import jax.numpy as jnp

    import hhjax

    model = hhjax.presets.neuron_hh()
    amps = np.linspace(9.5, 10.5, n) if n > 1 else np.array([10.0])
    stim = (np.arange(n_steps) * DT >= STEP_START) * amps[:, None]
    stim = jnp.asarray(stim if n > 1 else stim[0], jnp.float32)
    # on one device, as loaded data would be: a population's trace is sharded over the
    # CPU devices, and a jit given a sharded argument compiles for all of them (here a
    # cross-device reduction per step in the backward pass, 1.8x slower; README)
    target = jnp.asarray(np.asarray(hhjax.simulate(model, stim, dt=DT).v))

    # data as arguments, as in fitting: closed over, they would be compiled in as
    # constants (at 1000 neurons x 1e5 steps, 2 x 400 MB and ~18 s of compiling)
    def loss(g_na: jax.Array, stim: jax.Array, target: jax.Array) -> jax.Array:
        m = hhjax.set_params(model, {"na.g": g_na})
        v = hhjax.simulate(m, stim, dt=DT, checkpoint=checkpoint).v
        return jnp.mean((v - target) ** 2)

    out: dict[str, Any] = {"n": n, "n_steps": n_steps, "checkpoint": checkpoint}
    args = (jnp.float32(110.0), stim, target)
    calls = {}
    for name, fn in (("forward", hhjax.jit(loss)), ("grad", hhjax.jit(jax.grad(loss)))):
        t0 = time.perf_counter()
        compiled = fn.lower(*args).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        # untimed: the first calls of a program grow the heap to hold the buffers of
        # two calls (one is freed while the next starts), at ~2.5 us per page fault
        # (1000 neurons x 1e4 steps: 0.43-0.60 s a call until then, 0.15 s after)
        for _ in range(_GRAD_WARM_CALLS):
            jax.block_until_ready(compiled(*args))
        calls[name] = lambda c=compiled: jax.block_until_ready(c(*args))
        mem = compiled.memory_analysis()  # (per device: a gradient spans the CPU devices)
        n_dev = max(len(s.device_set) for s in jax.tree_util.tree_leaves(compiled.output_shardings))
        out[f"{name}_devices"] = n_dev
        out[f"{name}_temp_mb"] = None if mem is None else mem.temp_size_in_bytes * n_dev / 2**20
    # forward and gradient calls alternate, so that a slow phase of a shared machine
    # slows both: the ratio is the median of each gradient call over the forward call
    # just before it
    times = _paired_runs([calls["forward"], calls["grad"]], repeats)
    for name, ts in zip(("forward", "grad"), times, strict=True):
        out[f"{name}_s"], out[f"{name}_s_all"] = statistics.median(ts), ts
    out["ratio"] = statistics.median(g / f for f, g in zip(*times, strict=True))
    return out


def _peer_python() -> str | None:
    venv = ROOT / ".venv-bench" / "bin" / "python"
    return str(venv) if venv.exists() else None


def bench_peer(
    name: str, n: int, record: str, repeats: int, timeout: float, keep_memory: bool = False,
) -> dict[str, Any]:
    """One peer configuration, out of process (``python -m benchmarks.peers``);
    ``keep_memory``: under hhjax's ``mallopt`` settings (:mod:`hhjax.hostmem`)."""
    python = _peer_python() or sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        cmd = [python, "-m", "benchmarks.peers", name, "--n", str(n), "--record", record,
               "--dt", str(DT), "--t-max", str(T_MAX), "--repeats", str(repeats),
               "--json", str(path)] + (["--keep-memory"] if keep_memory else [])
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"tool": name, "n": n, "record": record, "skipped": f"over {timeout:.0f} s"}
        if proc.returncode == 2:
            return {"tool": name, "n": n, "record": record, "skipped": "not installed"}
        if proc.returncode != 0 or not path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return {"tool": name, "n": n, "record": record, "skipped": f"failed: {tail[0][:120]}"}
        res = json.loads(path.read_text())
    return {
        "tool": name, "n": n, "record": record, "version": res.get("version"),
        "build_s": res["build_s"], "run_s": res["run_s"],
        "neuron_steps_per_s": res["neuron_steps_per_s"], "spikes": res.get("spike_counts_sum"),
        "precision": res.get("dtype") or res.get("precision") or "",
        "backend": res.get("backend", ""), "load_avg": os.getloadavg()[0],
    }


def _peer_available(name: str) -> tuple[bool, str]:
    python = _peer_python() or sys.executable
    try:
        proc = subprocess.run([python, "-m", "benchmarks.peers", "--list"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        info = json.loads(proc.stdout.strip().splitlines()[-1])[name]
        return bool(info["available"]), info.get("version") or ""
    except Exception as err:  # noqa: BLE001 - report, never crash the suite
        return False, f"({type(err).__name__})"


# ------------------------------------------------------------------ reporting


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _best_hhjax(rows: list[dict[str, Any]], n: int, record: str, rates: str) -> float | None:
    vals = [r["neuron_steps_per_s"] for r in rows if r.get("tool") == "hhjax"
            and r["n"] == n and r["record"] == record and r["rates"] == rates
            and r["dtype"] == "float32" and r["method"] == "exp_euler"
            and "neuron_steps_per_s" in r]
    return max(vals) if vals else None


def markdown(result: dict[str, Any]) -> str:
    """The Markdown report: environment, hhjax table, peers with ratios, gradients."""
    env, rows = result["environment"], result["hhjax"]
    cores = env.get("cores", 2)  # (results before it was recorded: this 2-core machine)
    out = [f"# hhjax benchmarks ({env['date']})", "",
           f"- machine: {env['machine']}, {env['memory_gb']} GB; devices: "
           f"{', '.join(env['devices'])} ({env['backend']})",
           f"- python {env['python']}, jax {env['jax']}, jaxlib {env['jaxlib']}, numpy "
           f"{env['numpy']}, hhjax {env['hhjax']}",
           f"- load average at start / end: {env['load_avg_start'][0]:.1f} / "
           f"{result.get('load_avg_end', [float('nan')])[0]:.1f} ({cores} cores: above "
           f"~{cores / 4:.1f} other jobs were running and the numbers are pessimistic)",
           f"- command: `{result['command']}`",
           f"- XLA_FLAGS (hhjax's and the JAX peers' processes): "
           f"`{env.get('xla_flags') or '(none)'}`",
           f"- GLIBC_TUNABLES (all processes): `{env.get('glibc_tunables') or '(none)'}`",
           f"- freed memory kept for reuse (`hhjax.hostmem`): hhjax "
           f"{'yes' if env.get('hhjax_keeps_memory') else 'no'}, peers "
           f"{'yes' if result.get('peer_keep_memory') else 'no'}",
           "- workload: NEURON `hh` point neurons, step of linspace(9.5, 10.5, N) uA/cm2 "
           "from 10 ms, dt 0.025 ms, 100 ms (4000 steps), from rest", "",
           "## hhjax (`hhjax.simulate`)", "",
           "compile s: the first call less a steady-state call; warm-up s: what the next "
           f"{WARM_CALLS} (untimed) calls took beyond the steady state (fresh records, the "
           "record pool's variant; the peers get the same calls); run s: the median of "
           "the timed calls after those.", "",
           "| N | dtype | method | rates | record | stimulus | compile s | warm-up s | run s | "
           "neuron-steps/s | peak MB | spikes |",
           "| ---: | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['n']:.0e} | {r['dtype']} | {r['method']} | {r['rates']} | "
                       f"{r['record']} | | | | | skipped: {r['skipped']} | | |")
            continue
        out.append(
            f"| {r['n']:.0e} | {r['dtype']} | {r['method']} | {r['rates']} | {r['record']} | "
            f"{r['stimulus']} | {r['compile_s']:.2f} | {_fmt(r.get('warm_up_s'), '.2f')} | "
            f"{r['run_s']:.4g} | "
            f"{r['neuron_steps_per_s']:.3g} | {r['peak_mb']:.0f} | {r['spikes']} |"
        )
    peers = result.get("peers", [])
    if peers:
        out += ["", "## Peers (same workload, same recording)", "",
                "Ratios: hhjax float32 exp_euler (exact rates / tabulated rates) neuron-steps/s "
                "over the peer's, same N and recording; \"reused\": hhjax writing each call's "
                "record into the previous call's (`reuse=`, the `+reuse` rows).", "",
                "| peer | version | N | record | build s | run s | neuron-steps/s | "
                "hhjax/peer (exact) | hhjax/peer (table) | hhjax/peer (exact, reused) | spikes |",
                "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for p in peers:
            if "skipped" in p:
                out.append(f"| {p['tool']} | | {p['n']:.0e} | {p['record']} | | | "
                           f"skipped: {p['skipped']} | | | | |")
                continue
            ratios = []
            for rates, rec in (("exact", ""), ("table", ""), ("exact", REUSE)):
                h = _best_hhjax(rows, p["n"], p["record"] + rec, rates)
                ratios.append(f"{h / p['neuron_steps_per_s']:.2f}" if h else "-")
            out.append(
                f"| {p['tool']} | {p.get('version') or ''} | {p['n']:.0e} | {p['record']} | "
                f"{p['build_s']:.2f} | {p['run_s']:.4g} | {p['neuron_steps_per_s']:.3g} | "
                f"{ratios[0]} | {ratios[1]} | {ratios[2]} | {_fmt(p.get('spikes'))} |"
            )
    notes = result.get("notes", [])
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    grads = result.get("gradients", [])
    if grads:
        out += ["", "## Gradient cost (`jax.grad` of a V loss w.r.t. g_Na, float32, "
                "`hhjax.jit`; forward and gradient calls alternate, times are medians, grad / "
                "forward the median of each call's ratio to the forward call before it; "
                "temp MB: XLA's temporaries, summed over the devices)", "",
                "| N | steps | checkpoint | forward s | grad s | grad / forward | "
                "forward temp MB | grad temp MB | grad devices | grad compile s |",
                "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for g in grads:
            out.append(
                f"| {g.get('n', 1)} | {g['n_steps']:.0e} | {g['checkpoint']} | {g['forward_s']:.4g} | "
                f"{g['grad_s']:.4g} | {g['ratio']:.2f} | {_fmt(g['forward_temp_mb'], '.2f')} | "
                f"{_fmt(g['grad_temp_mb'], '.2f')} | {g.get('grad_devices', 1)} | "
                f"{g['grad_compile_s']:.2f} |"
            )
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Neuron-steps/s against N (log-log), one line per configuration and peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in result["hhjax"]:
        f32 = r["dtype"] == "float32" and r["method"] == "exp_euler"
        extra = {"spikes": " (spikes only)", "v" + REUSE: " (reused record)"}.get(r["record"])
        if "neuron_steps_per_s" in r and (r["record"] == "v" or (f32 and extra)):
            key = f"hhjax {r['method']} {r['rates']} {r['dtype']}" + (extra or "")
            series.setdefault(key, []).append((r["n"], r["neuron_steps_per_s"]))
    for p in result.get("peers", []):
        if "neuron_steps_per_s" in p and p["record"] == "v":
            series.setdefault(p["tool"], []).append((p["n"], p["neuron_steps_per_s"]))
    for key, pts in sorted(series.items()):
        pts.sort()
        style = "-o" if key.startswith("hhjax") else "--s"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=key, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (neurons)")
    ax.set_ylabel("neuron-steps / s")
    ax.set_title(f"V recorded every step; {result['environment']['machine']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ driver


def _save(result: dict[str, Any], stem: Path) -> None:
    """Write the JSON and Markdown so far (a long run leaves partial results)."""
    result["load_avg_end"] = os.getloadavg()
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    stem.with_suffix(".md").write_text(markdown(result))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, float32, few configs")
    p.add_argument("--n", default=None, help="comma-separated N (default 1,100,1e4,1e5,1e6)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--methods", default="exp_euler,rk4,euler")
    p.add_argument("--records", default="v,v+reuse,v10,spikes",
                   help=f"comma-separated: v, v10, spikes, and v or v10 with {REUSE}")
    p.add_argument("--no-table", action="store_true", help="skip the tabulated-rate mode")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated, or 'none'")
    p.add_argument("--peer-max-n", type=float, default=1e5)
    p.add_argument("--peer-timeout", type=float, default=600.0, help="s per peer run")
    p.add_argument("--peer-repeats", type=int, default=None,
                   help="timed runs per peer configuration (default 3, 1 above N = 1e4)")
    p.add_argument("--peer-keep-memory", action="store_true",
                   help="run the peers under the same kept-memory malloc settings as hhjax")
    p.add_argument("--no-grad", action="store_true", help="skip the gradient benchmark")
    p.add_argument("--grad-steps", default="1e3,1e4,1e5")
    p.add_argument("--grad-n", default="1,1000", help="population sizes for the gradient")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-run-s", type=float, default=40.0,
                   help="skip a configuration predicted to run longer than this (s)")
    p.add_argument("--tag", default="latest", help="output name in benchmarks/results/")
    args = p.parse_args(argv)
    if args.quick:
        args.n = args.n or "1,100,10000"
        args.dtypes, args.methods, args.records = "float32", "exp_euler", "v,spikes"
        args.peers = "numpy_euler" if args.peers == ",".join(PEERS) else args.peers
        args.peer_max_n, args.grad_steps, args.repeats = 1e4, "1e3,1e4", 3
        args.grad_n = "1,100"
    args.n = [int(float(x)) for x in (args.n or "1,100,1e4,1e5,1e6").split(",")]
    for r in args.records.split(","):
        if _base(r) not in RECORDS or r == "spikes" + REUSE:
            p.error(f"unknown record {r!r}: use v, v10, spikes, v{REUSE} or v10{REUSE}")
    return args


def _fits(n: int, dtype: str, record: str) -> str | None:
    """Why a configuration's record would not fit in memory, or None."""
    from hhjax.population import available_memory

    item = 4 if dtype == "float32" else 8
    record = _base(record)
    need = n * N_STEPS * item * (1 if record == "v" else 0.1 if record == "v10" else 0)
    if need > 0.6 * available_memory():
        return f"needs ~{need / 2**30:.0f} GB for the record (N, n_rec) alone"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the suite; returns the exit status."""
    args = _parse(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = _environment()
    _log(f"environment: {env['machine']}; devices {env['devices']}; load {env['load_avg_start']}")
    result: dict[str, Any] = {
        "environment": env, "command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
        "workload": {"dt": DT, "t_max": T_MAX, "n_steps": N_STEPS, "step_start": STEP_START},
        "hhjax": [], "peers": [], "gradients": [], "notes": [],
        "peer_keep_memory": args.peer_keep_memory,
    }
    stem = RESULTS / args.tag
    rate_modes = ["exact"] + ([] if args.no_table else ["table"])
    speed: dict[tuple[Any, ...], float] = {}  # last neuron-steps/s per config, to predict
    configs = [
        (n, dt_, m, rt, rec)
        for dt_ in args.dtypes.split(",") for m in args.methods.split(",")
        for rt in rate_modes if rt == "exact" or m == "exp_euler"
        for rec in args.records.split(",") for n in sorted(args.n)
    ]
    for i, (n, dtype, method, rates, record) in enumerate(configs):
        key = (dtype, method, rates, record)
        why = _fits(n, dtype, record)
        limit = args.max_run_s
        # (on a CPU the time grows with N; a GPU's does not until it is full)
        if not why and key in speed and n * N_STEPS / speed[key] > limit and (
            env["backend"] == "cpu"
        ):
            why = f"predicted {n * N_STEPS / speed[key]:.0f} s > {limit:.0f} s (--max-run-s)"
        row = {"tool": "hhjax", "n": n, "dtype": dtype, "method": method, "rates": rates,
               "record": record}
        if why:
            _log(f"[{i + 1}/{len(configs)}] hhjax {key} N={n}: skipped ({why})")
            result["hhjax"].append({**row, "skipped": why, "stimulus": ""})
            continue
        _log(f"[{i + 1}/{len(configs)}] hhjax {key} N={n}")
        try:
            r = bench_hhjax(n, dtype, method, rates, record, args.repeats)
        except Exception as err:  # noqa: BLE001 - record and go on
            result["hhjax"].append({**row, "skipped": f"{type(err).__name__}: {err}"[:120],
                                    "stimulus": ""})
            _log(f"   failed: {err}")
            continue
        speed[key] = r["neuron_steps_per_s"]
        result["hhjax"].append(r)
        _save(result, stem)
        _log(f"   run {r['run_s']:.4g} s, {r['neuron_steps_per_s']:.3g} neuron-steps/s, "
             f"compile {r['compile_s']:.2f} s, +{r['peak_mb']:.0f} MB, load {r['load_avg']:.1f}")
    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    if peers and _peer_python() is None:
        result["notes"].append("`.venv-bench` not found: peers run in this interpreter if "
                               "importable (bash benchmarks/setup_bench_env.sh creates it)")
    for name in peers:
        ok, version = _peer_available(name)
        if not ok:
            result["notes"].append(f"{name}: not installed, skipped")
            _log(f"peer {name}: not available, skipped")
            continue
        last: float | None = None
        for record in dict.fromkeys(_base(r) for r in args.records.split(",")):
            last = None
            for n in sorted(x for x in args.n if x <= min(args.peer_max_n,
                                                          PEER_MAX_N.get(name, 1e12))):
                if last and n * N_STEPS / last > args.peer_timeout / 2:
                    result["peers"].append({"tool": name, "n": n, "record": record,
                                            "skipped": "predicted too slow"})
                    continue
                _log(f"peer {name} {version} N={n} record={record}")
                reps = args.peer_repeats or (3 if n <= 10_000 else 1)
                r = bench_peer(name, n, record, reps, args.peer_timeout, args.peer_keep_memory)
                result["peers"].append(r)
                _save(result, stem)
                if "neuron_steps_per_s" in r:
                    last = r["neuron_steps_per_s"]
                    _log(f"   run {r['run_s']:.4g} s, {last:.3g} neuron-steps/s")
                else:
                    _log(f"   skipped: {r['skipped']}")
    if not args.no_grad:
        grad_configs = [
            (n, steps) for n in [int(float(x)) for x in args.grad_n.split(",")]
            for steps in [int(float(x)) for x in args.grad_steps.split(",")]
        ]
        for n, steps in grad_configs:
            for ckpt in (False, True):
                _log(f"gradient: N={n}, {steps} steps, checkpoint={ckpt}")
                g = bench_gradient(steps, ckpt, args.repeats, n)
                result["gradients"].append(g)
                _log(f"   grad/forward {g['ratio']:.2f}, temp {g['grad_temp_mb']} MB")
    _save(result, stem)
    plot(result, stem.with_suffix(".png"))
    _log(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
