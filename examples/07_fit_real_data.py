# %% [markdown]
"""Fit an HH-type model to a real cortical neuron and predict the sweeps it did not see.

The recording is BluePyEfe's test cell B8 (rat somatosensory cortex, in vitro, whole-cell
current clamp; `shared/data/real/bluepyefe_B8_IDRest.npz`): five 2-s current steps of
94-275 pA on top of a -51 pA holding current, firing 20-81 spikes. The cell size is
unknown, so the currents stay in pA and the membrane **area** (cm2) is fitted: it turns
pA into the model's uA/cm2 and, with c_m = 1 uF/cm2 fixed, it is the capacitance scale.

The model is the squid-axon HH model (`hhjax.presets.squid()`) with free Na, K and leak
conductances, leak reversal, area and **temperature**, which scales every gate rate by
Q10 = 3 (a single "kinetics speed" knob). It is fitted on the first 500 ms of the weakest
and the strongest step with a spike-aware loss (differentiable spike count above 0 mV and
van Rossum timing, plus the subthreshold voltage), from 8 starts in one vmapped program,
and then predicts the whole 2-s response to all five steps, three of them never seen. No published figure is reproduced: this is the kind of quick
model-to-data check the fitting package is for. An HH squid model is not a cortical
neuron (no adaptation currents, no dendrites; junction potential uncorrected), so
expect the counts, not the spike shapes, to be matched.

Run: ``python examples/07_fit_real_data.py`` (``HHJAX_SMOKE=1`` for a quick run);
the figure goes to ``examples/output/`` (or ``$HHJAX_OUT``). The data directory can be
set with ``$HHJAX_REAL_DATA``.
"""

# %%
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import fitting
import hhjax
from fitting import losses

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HHJAX_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
FILE = DATA / "bluepyefe_B8_IDRest.npz"
if not FILE.exists():
    if not SMOKE:
        raise SystemExit(f"{FILE} not found: set HHJAX_REAL_DATA to the shared/data/real directory")
    FILE = REPO / "tests" / "data" / "bluepyefe_B8_IDRest_excerpt.npz"  # first 1000 ms only
DT = 0.1  # ms, simulation step (the data are sampled at 0.25 ms and resampled)
TRAIN, TEST = [0, 4], [1, 2, 3]
FIT_WINDOW = 300.0 if SMOKE else 600.0  # ms fitted: 100 ms baseline + the start of the step
LOSS_THRESHOLD = 0.0  # mV; high enough that no depolarised plateau of the model reaches it
COUNT_THRESHOLD = -20.0  # mV; spikes as the data README counts them (late spikes peak below 0)

# %% data: 100 ms of baseline, the 2000 ms step, 100 ms after it
rec = fitting.load(FILE)
steps_pa = np.load(FILE)["step_amplitude_pA"]
rec = rec.crop(600.0, 995.0 if SMOKE else 2800.0).resample(DT)
print(f"{rec.n_sweeps} sweeps of {rec.duration:g} ms at dt = {rec.dt} ms; current in {rec.current_unit}")

# %% fit: 8 starts across the bounds (area and temperature drawn from plausible ranges)
model = hhjax.presets.squid()
free = {
    "na.g": None, "k.g": None, "leak.g": None,          # default bounds: [x/10, 10x]
    "leak.e_rev": (-90.0, -30.0),                      # mV
    "area": (1e-6, 1e-4),                              # cm2
    "temperature": (-10.0, 25.0),                      # C: rates x Q10^((T - 6.3)/10)
}
k = 2 if SMOKE else 8
rng = np.random.default_rng(0)
init = {"area": np.exp(rng.uniform(np.log(2e-6), np.log(8e-6), k)),
        "temperature": rng.uniform(-5.0, 8.0, k)}
loss = losses.spike_loss(threshold=LOSS_THRESHOLD, width=1.0, count_weight=1.0, timing_weight=1.0,
                         tau=20.0, subthreshold_weight=0.05, subthreshold_below=-50.0)
t0 = time.perf_counter()
result = fitting.fit(model, rec.crop(0.0, FIT_WINDOW).sweeps(TRAIN), free, loss=loss, starts=k,
                     steps=5 if SMOKE else 150, refine=2 if SMOKE else 15, init=init,
                     learning_rate=0.03)
print(f"fit: {time.perf_counter() - t0:.0f} s (compile {result.compile_seconds:.0f} s), "
      f"{len(result.dropped)} of {k} starts dropped")
for path, value in result.params.items():
    print(f"  {path:<14} {value:.4g}")
print(f"  -> capacitance {result.params['area'] * 1e6:.1f} pF, phi = "
      f"{3.0 ** ((result.params['temperature'] - 6.3) / 10):.2f}")

# %% predict every sweep with the fitted model: spike counts and times
v_fit = result.predict(rec)
t = rec.t
data_sp = hhjax.analysis.spike_times(rec.voltage, dt=rec.dt, threshold=COUNT_THRESHOLD)
fit_sp = hhjax.analysis.spike_times(v_fit, dt=rec.dt, threshold=COUNT_THRESHOLD)
n_data, n_fit = np.asarray(data_sp.count), np.asarray(fit_sp.count)
n_data_early = [int(np.sum(np.asarray(data_sp.times[j]) < FIT_WINDOW)) for j in range(rec.n_sweeps)]
n_fit_early = [int(np.sum(np.asarray(fit_sp.times[j]) < FIT_WINDOW)) for j in range(rec.n_sweeps)]


def matched_timing(a: np.ndarray, b: np.ndarray, window: float = 10.0) -> tuple[int, float]:
    """Spikes of ``a`` with a spike of ``b`` within ``window`` ms, and their median |dt| (ms)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return 0, float("nan")
    d = np.min(np.abs(a[:, None] - b[None, :]), axis=1)
    hits = d <= window
    return int(hits.sum()), float(np.median(d[hits])) if hits.any() else float("nan")


print(f"\nspikes (upward crossings of {COUNT_THRESHOLD:g} mV) over the whole {rec.duration:g} ms, "
      f"and within the first {FIT_WINDOW:g} ms (the fitted window):")
print(f"{'sweep':>5} {'step pA':>8} {'role':>6} {'data':>5} {'model':>6} {'early d/m':>10} "
      f"{'matched':>8} {'median |dt| ms':>14} {'first spike data/model ms':>26}")
rows = []
for j in range(rec.n_sweeps):
    role = "train" if j in TRAIN else "test"
    hits, med = matched_timing(np.asarray(data_sp.times[j]), np.asarray(fit_sp.times[j]))
    first = (float(data_sp.times[j][0]) if n_data[j] else float("nan"),
             float(fit_sp.times[j][0]) if n_fit[j] else float("nan"))
    rows.append((j, steps_pa[j], role, n_data[j], n_fit[j], hits, med, first))
    early_txt = f"{n_data_early[j]}/{n_fit_early[j]}"
    print(f"{j:>5} {steps_pa[j]:>8.1f} {role:>6} {n_data[j]:>5} {n_fit[j]:>6} {early_txt:>10} {hits:>8} "
          f"{med:>14.1f} {first[0]:>12.1f} / {first[1]:<8.1f}")

# %% figure: one training and one held-out sweep, and spike count against step amplitude
OUT.mkdir(parents=True, exist_ok=True)
fig = Figure(figsize=(11.0, 6.5), layout="constrained")
grid = fig.add_gridspec(2, 3)
for row, j in enumerate([TRAIN[0], TEST[1]]):
    ax = fig.add_subplot(grid[row, :2])
    ax.plot(t, rec.voltage[j], color="0.55", lw=0.7, label="recording")
    ax.plot(t, v_fit[j], color="C3", lw=0.7, label="fitted HH model")
    role = "training sweep" if j in TRAIN else "held-out sweep"
    ax.set_title(f"{role} {j}: {steps_pa[j]:.0f} pA step; spikes data {n_data[j]}, model {n_fit[j]}",
                 fontsize=9)
    ax.set_ylabel("V (mV)")
    ax.axvspan(0.0, FIT_WINDOW, color="C0", alpha=0.06, lw=0)
    if row == 1:
        ax.set_xlabel("t (ms, from 100 ms before the step)")
    else:
        ax.legend(loc="lower right", fontsize=8)
ax = fig.add_subplot(grid[:, 2])
ax.plot(steps_pa, n_data, "o-", color="0.4", label="recording")
ax.plot(steps_pa, n_fit, "s--", color="C3", label="model")
ax.plot(steps_pa[TRAIN], n_fit[TRAIN], "s", mfc="none", mec="k", ms=11, label="fitted on")
ax.set_xlabel("step amplitude (pA)")
ax.set_ylabel(f"spikes in {rec.duration:.0f} ms")
ax.legend(fontsize=8)
ax.set_title("spike counts: train and held-out", fontsize=9)
path = OUT / "07_fit_real_data.png"
fig.savefig(path, dpi=110)
print(f"\nwrote {path}")
