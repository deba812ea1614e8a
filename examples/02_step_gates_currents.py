# %% [markdown]
"""A current step: voltage, the three gates and the ionic currents.

A 10 uA/cm2 step from 100 to 150 ms in a 250 ms run of the squid axon (rest -65 mV):
a train of spikes, the gates m, h, n opening and closing with each one, and the Na+,
K+ and leak currents with their sum. Reproduces the step-current figure of the HH
tutorials (e.g. Gerstner et al. 2014, Neuronal Dynamics, fig. 2.3 / section 2.2).

Run: ``python examples/02_step_gates_currents.py`` (``HHJAX_SMOKE=1`` for a quick run);
the figure goes to ``examples/output/`` (or ``$HHJAX_OUT``).
"""

# %%
import os
from pathlib import Path

import numpy as np

import hhjax
import hhjax.plot
from hhjax import stimulus

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
DT = 0.05 if SMOKE else 0.01  # ms

# %% simulate, recording V, the gates and the currents
model = hhjax.presets.squid()
step = stimulus.step_current(10.0, start=100.0, stop=150.0)
trace = hhjax.simulate(model, step, dt=DT, t_max=250.0, record=("v", "gates", "currents"))

spikes = hhjax.analysis.spike_times(trace)
isi = np.asarray(hhjax.analysis.interspike_intervals(spikes))
print(f"{int(spikes.count)} spikes; first at {float(spikes.times[0]):.2f} ms; "
      f"ISIs {np.round(isi[np.isfinite(isi)], 2).tolist()} ms")

# %% one call: V + stimulus, gates, currents stacked
fig = hhjax.plot.overview(trace, step, threshold=0.0,
                          title="squid axon, 10 µA/cm² step from 100 to 150 ms")
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "02_step_gates_currents.png", dpi=120)
print(f"wrote {OUT / '02_step_gates_currents.png'}")
