# %% [markdown]
"""f-I curves: the squid axon (class II) against Connor-Stevens (class I).

The squid axon cannot fire slowly: sustained firing starts abruptly near
6.26 uA/cm2 at about 50 Hz (a subcritical Hopf / fold of limit cycles). The
Connor-Stevens model, with its transient A-type K+ current, starts firing from 0 Hz
(a saddle-node on an invariant circle), so its rate grows continuously from its
rheobase. Right: voltage responses of both models at a few currents. Reproduces
Dayan & Abbott (2001), fig. 6.2 (Connor-Stevens) and the classic HH f-I curve.

Every f-I curve here is one compiled, vmapped call: all currents at once.

Run: ``python examples/03_fi_curves.py`` (``HHJAX_SMOKE=1`` for a quick run);
the figure goes to ``examples/output/`` (or ``$HHJAX_OUT``).
"""

# %%
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import hhjax
import hhjax.plot
from hhjax.analysis import fi_curve, rheobase

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
DURATION = 300.0 if SMOKE else 2000.0  # ms per step
WINDOW = (100.0, DURATION) if SMOKE else (500.0, DURATION)  # skip the onset transient
CURRENTS = np.linspace(0.0, 20.0, 11 if SMOKE else 81)  # uA/cm2

models = {"squid axon (HH)": hhjax.presets.squid(),
          "Connor-Stevens (A-current)": hhjax.presets.connor_stevens()}

# %% f-I curves and the onset of sustained firing of each model
curves, onsets = {}, {}
for name, model in models.items():
    t0 = time.perf_counter()
    curves[name] = fi_curve(model, CURRENTS, duration=DURATION, window=WINDOW)
    onsets[name] = float(rheobase(model, low=0.0, high=20.0, duration=DURATION, window=WINDOW,
                                  min_spikes=2))
    just_above = fi_curve(model, [onsets[name] + 0.05], duration=DURATION, window=WINDOW)
    print(f"{name}: {CURRENTS.size} currents in {time.perf_counter() - t0:.1f} s; "
          f"onset {onsets[name]:.2f} uA/cm2, {float(just_above.rate[0]):.1f} Hz at onset + 0.05")

# %% figure: f-I (left) and voltage traces at a few currents (right)
fig = Figure(figsize=(10.5, 4.4), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.3])
ax = left.subplots()
hhjax.plot.fi_curves(curves, ax=ax, title=f"steady-state rate ({WINDOW[0]:g}-{DURATION:g} ms)")
for onset, color in zip(onsets.values(), ["#1f77b4", "#d62728"], strict=True):
    ax.axvline(onset, color=color, lw=0.8, ls=":")
    ax.annotate(f"{onset:.2f}", (onset, 2.0), color=color, fontsize=8, xytext=(3, 0),
                textcoords="offset points")

shown = [4.0, 7.0, 9.0, 15.0]
axes = right.subplots(len(shown), 2, sharex=True, sharey=True)
for col, (name, model) in enumerate(models.items()):
    i_col = np.asarray(shown, dtype=np.float32)[:, None] * np.ones((1, int(200.0 / 0.025)), np.float32)
    traces = hhjax.simulate(model, i_col, dt=0.025)
    for row, amp in enumerate(shown):
        a = axes[row, col]
        a.plot(np.asarray(traces.t), np.asarray(traces.v[row]), lw=0.8,
               color=["#1f77b4", "#d62728"][col])
        if col == 1:
            a.text(1.02, 0.5, f"{amp:g}\nµA/cm²", transform=a.transAxes, ha="left", va="center",
                   fontsize=7)
        a.spines[["top", "right"]].set_visible(False)
        a.tick_params(labelsize=7)
    axes[0, col].set_title(name, fontsize=9)
    axes[-1, col].set_xlabel("time (ms)", fontsize=8)
for row in range(len(shown)):
    axes[row, 0].set_ylabel("V (mV)", fontsize=8)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "03_fi_curves.png", dpi=120)
print(f"wrote {OUT / '03_fi_curves.png'}")
