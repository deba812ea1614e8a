# %% [markdown]
"""A population: f-I curves of 10,000 squid-axon neurons in one call.

Each neuron gets its own maximal conductances (g_Na, g_K, g_leak drawn uniformly
within +-25 % of the squid values, seed 0). One :func:`hhjax.analysis.fi_curve`
call simulates every (neuron, current) pair as a single compiled, vmapped scan that
keeps only spike statistics, so memory does not grow with the run length. The figure
shows the population's f-I band, the distribution of the onset of sustained firing,
and how that onset depends on g_Na and g_K. The time the call took is in the title.

Run: ``python examples/06_population_fi.py`` (``HHJAX_SMOKE=1`` for a quick run with
200 neurons); the figure goes to ``examples/output/`` (or ``$HHJAX_OUT``).
"""

# %%
import os
import time
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

import hhjax
import hhjax.plot
from hhjax.analysis import fi_curve

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
N = 200 if SMOKE else 10_000  # neurons
CURRENTS = np.arange(0.0, 20.01, 2.0 if SMOKE else 1.0)  # uA/cm2
DURATION, WINDOW, DT = 300.0, (100.0, 300.0), 0.025  # ms

# %% a population with randomised conductances
key_na, key_k, key_l = jax.random.split(jax.random.PRNGKey(0), 3)
spread = {"na.g": (key_na, 120.0), "k.g": (key_k, 36.0), "leak.g": (key_l, 0.3)}
draws = {p: g * jax.random.uniform(k, (N,), minval=0.75, maxval=1.25) for p, (k, g) in spread.items()}
population = hhjax.set_params(hhjax.presets.squid(), draws)

# %% every neuron at every current, in one call (with a progress bar)
t0 = time.perf_counter()
fi = fi_curve(population, CURRENTS, duration=DURATION, window=WINDOW, dt=DT,
              chunk=max(1024, N * CURRENTS.size // 10), progress=True)
jax.block_until_ready(fi.rate)
seconds = time.perf_counter() - t0
runs = N * CURRENTS.size
steps = runs * int(round(DURATION / DT))
print(f"{N} neurons x {CURRENTS.size} currents = {runs} runs of {DURATION:g} ms in {seconds:.1f} s "
      f"({steps / seconds:.3g} neuron-steps/s, {jax.devices()[0].platform})")

rates = np.asarray(fi.rate)  # (N, K) Hz
fires = rates > 0
onset = np.where(fires.any(axis=1), CURRENTS[np.argmax(fires, axis=1)], np.nan)
print(f"onset of sustained firing: median {np.nanmedian(onset):g} uA/cm2, "
      f"{np.isnan(onset).sum()} neurons silent up to {CURRENTS[-1]:g} uA/cm2")

# %% figure: f-I band, onset histogram, onset against g_Na and g_K
fig = Figure(figsize=(11.0, 3.6), layout="constrained")
fig.suptitle(f"{N:,} neurons × {CURRENTS.size} currents in one call: {seconds:.1f} s "
             f"on {jax.devices()[0].platform.upper()}", fontsize=10)
ax_fi, ax_h, ax_s = fig.subplots(1, 3, width_ratios=[1.2, 1.0, 1.1])
hhjax.plot.fi_curves({"squid, ±25 % g": fi}, ax=ax_fi)
ax_h.hist(onset[np.isfinite(onset)], bins=np.append(CURRENTS, CURRENTS[-1] + 1) - 0.5,
          color="#1f77b4", alpha=0.8)
ax_h.set_xlabel("onset of sustained firing (µA/cm²)", fontsize=9)
ax_h.set_ylabel("neurons", fontsize=9)
g_na, g_k = np.asarray(draws["na.g"]), np.asarray(draws["k.g"])
sc = ax_s.scatter(g_na, g_k, c=onset, s=3 if N > 1000 else 8, cmap="viridis")
cbar = fig.colorbar(sc, ax=ax_s)
cbar.set_label("onset (µA/cm²)", fontsize=9)
cbar.ax.tick_params(labelsize=8)
ax_s.set_xlabel("g_Na (mS/cm²)", fontsize=9)
ax_s.set_ylabel("g_K (mS/cm²)", fontsize=9)
for ax in (ax_h, ax_s):
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "06_population_fi.png", dpi=120)
print(f"wrote {OUT / '06_population_fi.png'}")
