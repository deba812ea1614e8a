"""Fitting benchmark: gradient fitting (fitting.fit) vs CMA-ES, recovery rates, checkpoint memory.

Measures, on synthetic squid recordings with 1 mV Gaussian noise on V:

1. **Recovery, conductances**: 20 random starts with gNa, gK, gL each drawn
   log-uniformly in [0.5x, 2x] of the truth, three step protocols (-5, 4, 12 uA/cm2,
   5-35 ms of 40 ms, dt 0.05 ms); success = all three within 1 %. All 20 starts are
   one vmapped program; CPU and wall time are reported.
2. **Recovery, seven parameters**: the same plus E_leak and the alpha-rate midpoints of
   m, h and n, each started uniformly within +-5 mV of the truth; protocols -5, 5, 15
   uA/cm2 (5-50 ms of 60 ms, dt 0.025 ms); success = g within 1 %, E_leak within
   0.5 mV, midpoints within 1 mV.
3. **Gradient vs CMA-ES** (problems 1 and 2, from the same 5 starts, one start at a
   time): simulations and wall time until the loss is within 0.1 % of the optimum.
   CMA-ES (``cma`` package, optional ``bench`` extra) searches the same unconstrained
   space as the gradient fit, sigma0 = 0.5, its default population, each generation
   evaluated as one vmapped jit call.
4. **Gradient memory of a 10^5-step trace** (1 s at dt = 0.01 ms, 4 parameter sets), with and without
   ``checkpoint=True``: XLA's compiled temp size and the peak RSS of a subprocess.

Run: ``python benchmarks/fit_vs_cmaes.py`` (``--quick`` for a smoke run); writes
``benchmarks/results/fit_vs_cmaes.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fitting
import hhjax
from hhjax import stimulus as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: benchmarks.run names the machine
from benchmarks.run import machine  # noqa: E402

G = ("na.g", "k.g", "leak.g")
MIDS = ("na.m.alpha.midpoint", "na.h.alpha.midpoint", "k.n.alpha.midpoint")


def synthetic(amplitudes, t_max, dt, stop, seed=0):
    model = hhjax.presets.squid()
    i = np.stack([np.asarray(st.step_current(a, 5.0, stop).sample(dt, t_max)) for a in amplitudes])
    v = np.asarray(hhjax.simulate(model, i, dt=dt).v, float)
    v = v + np.random.default_rng(seed).normal(0.0, 1.0, v.shape)
    return fitting.Recording(voltage=v, current=np.concatenate([i, i[:, -1:]], 1), dt=dt)


def g_starts(k, seed):
    truth = hhjax.get_params(hhjax.presets.squid())
    rng = np.random.default_rng(seed)
    return {p: float(truth[p]) * np.exp(rng.uniform(np.log(0.5), np.log(2.0), k)) for p in G}


def timed_fit(*args, **kwargs):
    c0, w0 = time.process_time(), time.perf_counter()
    res = fitting.fit(*args, **kwargs)
    return res, time.process_time() - c0, time.perf_counter() - w0


def recovery(quick: bool) -> dict:
    truth = hhjax.get_params(hhjax.presets.squid())
    k = 4 if quick else 20
    out = {}
    rec = synthetic([-5.0, 4.0, 12.0], 40.0, 0.05, 35.0)
    res, cpu, wall = timed_fit(hhjax.presets.squid(), rec, list(G), starts=k, steps=100,
                               refine=25, init=g_starts(k, 1), progress=False, patience=10_000)
    err = np.stack([np.abs(res.finals[p] / float(truth[p]) - 1) for p in G])
    ok = np.all(err < 0.01, axis=0)
    se = res.standard_errors().se
    out["conductances"] = {
        "starts": k, "successes": int(ok.sum()), "success_rate": float(ok.mean()),
        "max_rel_error_of_successes": float(err[:, ok].max()) if ok.any() else None,
        "best": res.params, "std_errors": se, "loss": res.loss, "steps": res.steps,
        "cpu_s": cpu, "wall_s": wall, "compile_s": res.compile_seconds,
        "samples": int(rec.voltage.size),
    }
    print(f"conductances: {ok.sum()}/{k} starts within 1 %  cpu {cpu:.1f} s  wall {wall:.1f} s")

    rec = synthetic([-5.0, 5.0, 15.0], 60.0, 0.025, 50.0)
    rng = np.random.default_rng(3)
    init = g_starts(k, 3)
    for p in ("leak.e_rev", *MIDS):
        init[p] = float(truth[p]) + rng.uniform(-5.0, 5.0, k)
    free = [*G, "leak.e_rev", *MIDS]
    res, cpu, wall = timed_fit(hhjax.presets.squid(), rec, free, starts=k, steps=200, refine=40,
                               init=init, progress=False, patience=10_000)
    ok = np.all([np.abs(res.finals[p] / float(truth[p]) - 1) < 0.01 for p in G], axis=0)
    ok &= np.abs(res.finals["leak.e_rev"] - float(truth["leak.e_rev"])) < 0.5
    for p in MIDS:
        ok &= np.abs(res.finals[p] - float(truth[p])) < 1.0
    out["seven_parameters"] = {
        "starts": k, "successes": int(ok.sum()), "success_rate": float(ok.mean()),
        "best": res.params, "std_errors": res.standard_errors().se,
        "errors": {p: res.params[p] - float(truth[p]) for p in free},
        "loss": res.loss, "steps": res.steps, "cpu_s": cpu, "wall_s": wall,
        "compile_s": res.compile_seconds, "samples": int(rec.voltage.size),
    }
    print(f"seven parameters: {ok.sum()}/{k} starts succeed  cpu {cpu:.1f} s  wall {wall:.1f} s")
    return out


def _problem(name: str, k: int, seed: int):
    """(recording, free paths, starts {path: (k,)}, Adam steps, LM steps) of a benchmark problem."""
    truth = hhjax.get_params(hhjax.presets.squid())
    if name == "conductances":
        return synthetic([-5.0, 4.0, 12.0], 40.0, 0.05, 35.0), list(G), g_starts(k, seed), 30, 30
    rng = np.random.default_rng(seed)
    init = g_starts(k, seed)
    for p in ("leak.e_rev", *MIDS):
        init[p] = float(truth[p]) + rng.uniform(-5.0, 5.0, k)
    rec = synthetic([-5.0, 5.0, 15.0], 60.0, 0.025, 50.0)
    return rec, [*G, "leak.e_rev", *MIDS], init, 100, 40


def _wall_without_compile(res, hit: int) -> float:
    """Wall time to the end of step ``hit``, with each phase's first (compiling) step
    replaced by that phase's median step time."""
    steps = np.diff(np.concatenate([[0.0], res.elapsed]))
    total = 0.0
    bounds = [*res.phase_starts, len(steps)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if a > hit:
            break
        seg = steps[a:b]
        typical = float(np.median(seg[1:])) if len(seg) > 1 else float(seg[0])
        upto = min(b, hit + 1) - a
        total += typical + float(np.sum(seg[1:upto]))
    return total


def versus_cmaes(quick: bool, name: str) -> dict:
    """Per start: gradient fit (K = 1) and CMA-ES, simulations and wall time to the target."""
    import cma

    n = 2 if quick else 5
    rec, paths, starts, n_adam_max, n_lm_max = _problem(name, n, 7)
    _, _, ref_init, _, _ = _problem(name, 4, 1)
    ref = fitting.fit(hhjax.presets.squid(), rec, paths, starts=4, steps=n_adam_max,
                      refine=n_lm_max, init=ref_init, progress=False, patience=10_000)
    target = ref.loss * (1 + 1e-3)
    free = fitting.make_free(hhjax.presets.squid(), paths)
    sim, drive = fitting.optimize.make_simulator(free, rec)
    vd, w = jnp.asarray(rec.voltage, jnp.float32), jnp.asarray(rec.weights, jnp.float32)

    @jax.jit
    def batch_loss(u):  # u: (pop, p) in the same unconstrained space as the gradient fit
        v, v_max = jax.vmap(lambda x: sim(x, drive))(free.to_physical(u))
        mse = jnp.sum(w * (v - vd) ** 2, axis=(1, 2)) / jnp.sum(w)
        return jnp.where(v_max < 1e4, mse, jnp.nan)

    p = len(paths)
    popsize = 4 + int(3 * np.log(p))  # CMA-ES's default
    batch_loss(jnp.zeros((popsize, p)))  # compile before timing
    rows = []
    for j in range(n):
        x0 = np.array([starts[q][j] for q in paths])
        res = fitting.fit(hhjax.presets.squid(), rec, paths, starts=1, steps=n_adam_max,
                          refine=n_lm_max, init={q: starts[q][j] for q in paths}, progress=False,
                          patience=10_000)
        best = np.minimum.accumulate(np.nan_to_num(res.history[:, 0], nan=np.inf))
        hit = int(np.argmax(best <= target)) if np.any(best <= target) else None
        n_adam = None if hit is None else min(hit + 1, n_adam_max)
        n_lm = None if hit is None else max(hit + 1 - n_adam_max, 0)
        grad_row = {
            "reached": hit is not None, "steps": None if hit is None else hit + 1,
            "adam_steps": n_adam, "lm_steps": n_lm,
            # forward-simulation equivalents: an Adam step = forward + reverse (~3 forwards);
            # an LM step = p jvps (~2 forwards each) + 1 trial forward
            "simulation_equivalents": None if hit is None else 3 * n_adam + (2 * p + 1) * n_lm,
            "wall_s": None if hit is None else _wall_without_compile(res, hit),
            "compile_s": res.compile_seconds, "final_loss": res.loss,
        }
        es = cma.CMAEvolutionStrategy(free.to_unconstrained(x0), 0.5,
                                      {"verbose": -9, "seed": j + 1, "popsize": popsize})
        evals, t0, best_c, reached = 0, time.perf_counter(), np.inf, False
        max_evals = 3000 if quick else 20_000
        while evals < max_evals:
            z = np.asarray(es.ask())
            f = np.asarray(batch_loss(jnp.asarray(z, jnp.float32)), float)
            f = np.where(np.isfinite(f), f, 1e9)
            es.tell(list(z), list(f))
            evals += len(z)
            best_c = min(best_c, float(f.min()))
            if best_c <= target:
                reached = True
                break
        cma_row = {"reached": reached, "simulations": evals, "wall_s": time.perf_counter() - t0,
                   "best_loss": best_c, "popsize": popsize}
        rows.append({"start": x0.tolist(), "gradient": grad_row, "cmaes": cma_row})
        print(f"{name} start {j}: gradient {grad_row['steps']} steps "
              f"({grad_row['simulation_equivalents']} sim-equivalents) {grad_row['wall_s']} s | "
              f"CMA-ES {evals} simulations {cma_row['wall_s']:.1f} s reached={reached}")
    return {"problem": name, "paths": paths, "target_loss": target, "optimum_loss": ref.loss,
            "adam_steps": n_adam_max, "lm_steps": n_lm_max, "rows": rows}


_MEM_CODE = textwrap.dedent("""
    import resource, sys, time, json
    import jax, jax.numpy as jnp, numpy as np, hhjax
    ckpt = sys.argv[1] == "1"
    n = int(sys.argv[2])
    pop = int(sys.argv[3])
    dt = 0.01
    i = jnp.asarray(hhjax.stimulus.step_current(10.0, 5.0).sample(dt, n * dt))
    vd = jnp.asarray(np.asarray(hhjax.simulate(hhjax.presets.squid(), i, dt=dt).v))
    def loss(g):  # g: (pop, 3), a population of parameter sets (one vmapped simulation)
        m = hhjax.set_params(hhjax.presets.squid(), {"na.g": g[:, 0], "k.g": g[:, 1], "leak.g": g[:, 2]})
        v = hhjax.simulate(m, i, dt=dt, check=False, checkpoint=ckpt).v
        return jnp.mean((v - vd) ** 2)
    g = jnp.array([110.0, 40.0, 0.35]) * jnp.linspace(0.9, 1.1, pop)[:, None]
    f = jax.jit(jax.value_and_grad(loss))
    temp = f.lower(g).compile().memory_analysis().temp_size_in_bytes
    t0 = time.perf_counter(); f(g)[1].block_until_ready(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); f(g)[1].block_until_ready(); again = time.perf_counter() - t0
    print(json.dumps({"temp_bytes": temp, "first_s": first, "grad_s": again,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def checkpoint_memory(quick: bool) -> dict:
    n = 10_000 if quick else 100_000
    out = {"n_steps": n, "population": 4}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for ckpt in (False, True):
        proc = subprocess.run([sys.executable, "-c", _MEM_CODE, "1" if ckpt else "0", str(n), "4"],
                              capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out["checkpoint" if ckpt else "plain"] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"checkpoint={ckpt}: {out['checkpoint' if ckpt else 'plain']}")
    return out


def markdown(res: dict) -> str:
    c, s = res["recovery"]["conductances"], res["recovery"]["seven_parameters"]
    lines = [
        "# Fitting benchmark (`python benchmarks/fit_vs_cmaes.py`)",
        "",
        f"Machine: {res['machine']}; jax {res['jax']}, optax {res['optax']}, float32.",
        "",
        "## Recovery from noisy synthetic traces (sigma = 1 mV), all starts in one vmapped program",
        "",
        "| problem | starts | success | CPU s | wall s (compile s) |",
        "| --- | --- | --- | --- | --- |",
        f"| gNa, gK, gL within 1 % (3 protocols, {c['samples']} samples) | {c['starts']} | "
        f"{c['successes']}/{c['starts']} | {c['cpu_s']:.1f} | {c['wall_s']:.1f} ({c['compile_s']:.1f}) |",
        f"| + E_leak within 0.5 mV, m/h/n midpoints within 1 mV ({s['samples']} samples) | "
        f"{s['starts']} | {s['successes']}/{s['starts']} | {s['cpu_s']:.1f} | "
        f"{s['wall_s']:.1f} ({s['compile_s']:.1f}) |",
        "",
        "Best fit, seven parameters (error vs truth; Gauss-Newton standard error):",
        "",
        "| parameter | error | std err |",
        "| --- | --- | --- |",
    ]
    for p, e in s["errors"].items():
        lines.append(f"| `{p}` | {e:+.4g} | {s['std_errors'][p]:.3g} |")
    for v in res["cmaes"]:
        lines += [
            "",
            f"## Gradient vs CMA-ES, {len(v['paths'])} parameters: to within 0.1 % of the optimum "
            f"loss ({v['optimum_loss']:.5g} mV2)",
            "",
            f"Gradient: Adam (up to {v['adam_steps']} steps) then Levenberg-Marquardt (up to "
            f"{v['lm_steps']}), one start at a time (K = 1).",
            "",
            "| start | gradient steps (Adam + LM) | gradient sim-equivalents | gradient wall s | "
            "CMA-ES simulations | CMA-ES wall s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in v["rows"]:
            g, cm = r["gradient"], r["cmaes"]
            start = ", ".join(f"{x:.3g}" for x in r["start"])
            gs = f"{g['steps']} ({g['adam_steps']} + {g['lm_steps']})" if g["reached"] else "not reached"
            cs = f"{cm['simulations']}" if cm["reached"] else f"not reached in {cm['simulations']}"
            gw = f"{g['wall_s']:.2f}" if g["reached"] else "-"
            ge = g["simulation_equivalents"] if g["reached"] else "-"
            lines.append(f"| {start} | {gs} | {ge} | {gw} | {cs} | {cm['wall_s']:.2f} |")
    lines += [
        "",
        "Gradient wall times replace each phase's first (compiling) step by its median step; "
        "CMA-ES's jit compilation is "
        "done before timing and each generation is one vmapped call. Simulation equivalents: "
        "an Adam step counts 3 forward simulations (forward + reverse pass), a "
        "Levenberg-Marquardt step 2p + 1 (p jvps + a trial forward).",
    ]
    m = res["memory"]
    lines += [
        "",
        f"## Gradient memory, {m['n_steps']} steps (dt = 0.01 ms), value_and_grad of the MSE "
        f"over {m['population']} parameter sets (one vmapped simulation)",
        "",
        "| | XLA temp MB | peak RSS MB | gradient s (first call s) |",
        "| --- | --- | --- | --- |",
    ]
    for key in ("plain", "checkpoint"):
        r = m[key]
        lines.append(f"| {key} | {r['temp_bytes'] / 2**20:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['grad_s']:.2f} ({r['first_s']:.1f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer starts)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    import optax

    res = {
        "machine": f"{machine()}, devices {[d.platform for d in jax.devices()]}",
        "jax": jax.__version__, "optax": optax.__version__, "quick": args.quick,
    }
    res["recovery"] = recovery(args.quick)
    res["cmaes"] = [versus_cmaes(args.quick, "conductances"), versus_cmaes(args.quick, "seven")]
    res["memory"] = checkpoint_memory(args.quick)
    res["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "fit_vs_cmaes" + ("_quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
