# %% [markdown]
"""Integrators against a fine reference, and gate kinetics of two models.

The squid axon is driven for 1000 ms by correlated random input (Gaussian noise
filtered twice, tau = 5 ms, seed 123), integrated at dt = 0.1 ms with forward Euler,
RK4 and exponential Euler, and compared with a float64 RK4 reference at dt = 0.001 ms.
Every run sees the identical current: the noise is drawn once on the 0.1 ms grid and
held within each 0.1 ms (``stimulus.sampled``). Then the RMS voltage error over the
first 100 ms against dt on log axes (Euler and exponential Euler converge with order
1, RK4 with order 4) and, in a second figure, the steady states and time constants of
the squid axon against the cortical pyramidal neuron (Gerstner et al. 2014, fig. 2.2).

Run: ``python examples/04_integrators.py`` (``HHJAX_SMOKE=1`` for a quick run);
the figures go to ``examples/output/`` (or ``$HHJAX_OUT``).
"""

# %%
import os
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

import hhjax
import hhjax.plot
from hhjax import stimulus

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
T_MAX = 50.0 if SMOKE else 1000.0  # ms
DT = 0.1  # ms, the grid of the noise and of the comparison
DT_REF = 0.005 if SMOKE else 0.001  # ms, reference step
DTS = [0.1, 0.05] if SMOKE else [0.1, 0.05, 0.02, 0.01, 0.005]  # ms, for the error plot
T_ERR = T_MAX if SMOKE else 100.0  # ms over which the RMS error is measured
METHODS = {"euler": "forward Euler", "rk4": "RK4", "exp_euler": "exponential Euler"}
COLORS = {"euler": "#ff7f0e", "rk4": "#2ca02c", "exp_euler": "#1f77b4"}

with jax.enable_x64(True):  # float64 for everything here, so the reference is exact
    model = hhjax.presets.squid()
    noise = stimulus.filtered_noise(jax.random.PRNGKey(123), sigma=4.0, tau=5.0, order=2, mean=6.0)
    current = np.asarray(noise.sample(DT, T_MAX))  # uA/cm2 on the 0.1 ms grid
    held = stimulus.sampled(current, DT)  # the same current, for any finer dt

    def run(method: str, dt: float, t_max: float = T_MAX, check: bool = True) -> np.ndarray:
        """V (mV) on the 0.1 ms grid (raises hhjax.DivergenceError if it blows up)."""
        every = int(round(DT / dt))
        trace = hhjax.simulate(model, held, dt=dt, t_max=t_max, method=method, every=every,
                               check=check)
        return np.asarray(trace.v)

    # %% the three methods at dt = 0.1 ms against the reference
    reference = run("rk4", DT_REF)
    t = np.arange(reference.size) * DT
    traces, blowup = {}, {}
    for method in METHODS:
        v = run(method, DT, check=False)  # keep a diverging run, to show where it fails
        bad = ~(np.abs(v) < 200.0)
        if bad.any():
            blowup[method] = int(np.argmax(bad))
            v = v[: blowup[method]]
            print(f"{METHODS[method]:18s} dt = {DT} ms: diverged at t = {t[blowup[method]]:.1f} ms")
        else:
            err = np.sqrt(np.mean((v - reference) ** 2))
            print(f"{METHODS[method]:18s} dt = {DT} ms: RMS error {err:.3g} mV over {T_MAX:g} ms")
        traces[method] = v

    # %% error against dt (first T_ERR ms, before spike-time drift saturates it)
    ref_short = reference[: int(round(T_ERR / DT)) + 1]
    errors = {m: [] for m in METHODS}
    for method in METHODS:
        for dt in DTS:
            try:
                v = run(method, dt, T_ERR)
                errors[method].append(np.sqrt(np.mean((v - ref_short) ** 2)))
            except hhjax.DivergenceError:
                errors[method].append(np.nan)
    for method, errs in errors.items():
        ok = np.isfinite(errs) & (np.asarray(errs) > 1e-9)
        if ok.sum() < 2:
            print(f"{METHODS[method]:18s} too few stable step sizes to fit an order")
            continue
        slope = np.polyfit(np.log(np.asarray(DTS)[ok]), np.log(np.asarray(errs)[ok]), 1)[0]
        print(f"{METHODS[method]:18s} convergence order {slope:.2f}")

# %% figure 1: traces, stimulus, error against dt
fig = Figure(figsize=(10.5, 5.2), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=[1.25, 1.0])
ax_v, ax_i = top.subplots(2, 1, sharex=True, height_ratios=[3, 1])
ax_v.plot(t, reference, color="k", lw=1.6, label=f"reference (RK4, dt = {DT_REF} ms)")
for method, v in traces.items():
    note = f" (diverged at {t[blowup[method]]:.1f} ms, ×)" if method in blowup else ""
    ax_v.plot(t[: v.size], v, color=COLORS[method], lw=0.8,
              label=f"{METHODS[method]}, dt = {DT} ms{note}")
    if method in blowup:
        ax_v.plot(t[v.size - 1], v[-1], "x", color=COLORS[method], ms=7, mew=2)
ax_v.set_ylabel("V (mV)", fontsize=9)
ax_v.legend(fontsize=7, frameon=False, ncols=2, loc="lower left", bbox_to_anchor=(0.0, 1.0))
top.suptitle("squid axon driven by twice-filtered noise (seed 123)", fontsize=10)
ax_i.stairs(current, np.arange(current.size + 1) * DT, color="#ff7f0e", lw=0.8, baseline=None)
ax_i.set_ylabel("I (µA/cm²)", fontsize=9)
ax_i.set_xlabel("time (ms)", fontsize=9)
ax_e, ax_z = bottom.subplots(1, 2, width_ratios=[1.0, 1.6])
for method, errs in errors.items():
    ax_e.loglog(DTS, errs, "o-", color=COLORS[method], ms=4, label=METHODS[method])
ax_e.set_xlabel("dt (ms)", fontsize=9)
ax_e.set_ylabel(f"RMS error of V (mV), first {T_ERR:g} ms", fontsize=9)
ax_e.legend(fontsize=7, frameon=False)
zoom = t <= 60.0
ax_z.plot(t[zoom], reference[zoom], color="k", lw=1.6)
for method, v in traces.items():
    n = min(v.size, int(zoom.sum()))
    ax_z.plot(t[:n], v[:n], color=COLORS[method], lw=0.9)
    if method in blowup and v.size <= n:
        ax_z.plot(t[n - 1], v[n - 1], "x", color=COLORS[method], ms=7, mew=2)
ax_z.set_xlabel("time (ms), first 60 ms", fontsize=9)
ax_z.set_ylabel("V (mV)", fontsize=9)
for ax in (ax_v, ax_i, ax_e, ax_z):
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "04_integrators.png", dpi=120)
print(f"wrote {OUT / '04_integrators.png'}")

# %% figure 2: gate kinetics, squid axon against cortical pyramidal neuron
kin = hhjax.plot.kinetics(
    {"squid": hhjax.presets.squid(), "pyramidal": hhjax.presets.cortical_pyramidal()},
    v=np.linspace(-100.0, 60.0, 321),
    title="gate kinetics: squid axon (solid) vs cortical pyramidal neuron (dashed)",
)
kin.savefig(OUT / "04_gate_kinetics.png", dpi=120)
print(f"wrote {OUT / '04_gate_kinetics.png'}")
