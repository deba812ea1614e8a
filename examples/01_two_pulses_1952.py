# %% [markdown]
"""Two current pulses in the original 1952 convention, and the limit cycles.

Hodgkin & Huxley (1952) measured V as the depolarisation from rest (rest = 0 mV).
A 150 uA/cm2 pulse over 0-1 ms fires a spike; a 50 uA/cm2 pulse over 10-11 ms, in
the relative refractory period, fires a second, smaller one. The trajectories in the
(V, n) and (V, m) planes show the two loops. Reproduces the classic two-pulse figure
of the HH tutorials (e.g. Dayan & Abbott 2001, fig. 5.11, in the 1952 convention).

Run: ``python examples/01_two_pulses_1952.py`` (``HHJAX_SMOKE=1`` for a quick run);
the figure goes to ``examples/output/`` (or ``$HHJAX_OUT``).
"""

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import hhjax
import hhjax.plot
from hhjax import stimulus

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
DT = 0.05 if SMOKE else 0.01  # ms

# %% simulate: pulses of 150 and 50 uA/cm2 at 0-1 and 10-11 ms
model = hhjax.presets.hh1952()
pulses = stimulus.pulse_train(starts=[0.0, 10.0], widths=1.0, amplitudes=np.array([150.0, 50.0]))
current = pulses.sample(DT, 50.0)
trace = hhjax.simulate(model, current, dt=DT, record=("v", "gates"))
spikes = hhjax.analysis.spike_times(trace, threshold=50.0)
print(f"spikes at {[round(float(t), 2) for t in spikes.times]} ms (threshold 50 mV above rest)")

# %% one figure: voltage + stimulus (left), limit cycles V-n and V-m (right)
fig = Figure(figsize=(10.0, 3.8), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.25])
hhjax.plot.voltage(trace, current, threshold=50.0, fig=left,
                   title="HH 1952 (rest = 0 mV): pulses 150 and 50 µA/cm²")
hhjax.plot.phase_planes(trace, ["k.n", "na.m"], model=model, fig=right, title="limit cycles")
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "01_two_pulses_1952.png", dpi=120)
print(f"wrote {OUT / '01_two_pulses_1952.png'}")
