# %% [markdown]
"""An interactive explorer: sliders for the input current and the conductances.

Move a slider and the squid axon is re-simulated at once (the compiled simulation is
cached, so each update is a single fast call) and the voltage, gates and firing rate
are redrawn. Uses matplotlib's own widgets, so it needs no extra package. Without a
display (a server, CI, ``MPLBACKEND=Agg``) or with ``HHJAX_SMOKE=1`` it draws the
explorer once at its initial settings and writes a PNG instead.

Run: ``python examples/05_explorer.py``; the PNG goes to ``examples/output/`` (or
``$HHJAX_OUT``).
"""

# %%
import os
import time
from pathlib import Path

import matplotlib

SMOKE = os.environ.get("HHJAX_SMOKE", "0") not in ("", "0")
OUT = Path(os.environ.get("HHJAX_OUT", Path(__file__).parent / "output"))
if SMOKE:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.widgets import Button, Slider  # noqa: E402

import hhjax  # noqa: E402
from hhjax import stimulus  # noqa: E402
from hhjax.analysis import firing_rate  # noqa: E402

T_MAX, DT, ONSET = 200.0, 0.025, 20.0  # ms
BASE = hhjax.presets.squid()
SLIDERS = {  # name: (label, min, max, initial)
    "i": ("I (µA/cm²)", -5.0, 40.0, 10.0),
    "na.g": ("g_Na (mS/cm²)", 0.0, 240.0, 120.0),
    "k.g": ("g_K (mS/cm²)", 0.0, 72.0, 36.0),
    "leak.g": ("g_leak (mS/cm²)", 0.0, 3.0, 0.3),
    "temperature": ("T (°C)", 0.0, 30.0, 6.3),
}


def run(values: dict[str, float]) -> hhjax.Trace:
    """Simulate the squid axon with the slider values (step from ONSET ms)."""
    model = hhjax.set_params(BASE, {k: v for k, v in values.items() if k != "i"})
    step = stimulus.step_current(values["i"], start=ONSET)
    return hhjax.simulate(model, step, dt=DT, t_max=T_MAX, record=("v", "gates"), check=False)


values = {k: s[3] for k, s in SLIDERS.items()}
fig = plt.figure(figsize=(8.0, 6.2))
ax_v = fig.add_axes((0.1, 0.58, 0.85, 0.36))
ax_g = fig.add_axes((0.1, 0.36, 0.85, 0.18), sharex=ax_v)
trace = run(values)
t = np.asarray(trace.t)
(line_v,) = ax_v.plot(t, np.asarray(trace.v), color="#222222", lw=1.0)
lines_g = {k: ax_g.plot(t, np.asarray(x), lw=1.0, label=k)[0] for k, x in trace.gates.items()}
ax_v.set_ylabel("V (mV)")
ax_v.set_ylim(-90, 60)
ax_v.tick_params(labelbottom=False)
ax_g.set_ylabel("gates")
ax_g.set_ylim(0, 1)
ax_g.set_xlabel("time (ms)")
ax_g.legend(fontsize=8, frameon=False, ncols=3, loc="upper right")
for ax in (ax_v, ax_g):
    ax.spines[["top", "right"]].set_visible(False)
title = ax_v.set_title("")

sliders = {}
for row, (key, (label, lo, hi, init)) in enumerate(SLIDERS.items()):
    ax_s = fig.add_axes((0.25, 0.26 - 0.045 * row, 0.55, 0.03))
    sliders[key] = Slider(ax_s, label, lo, hi, valinit=init)


def update(_: float | None = None) -> None:
    for key, slider in sliders.items():
        values[key] = float(slider.val)
    t0 = time.perf_counter()
    trace = run(values)
    ms = 1000.0 * (time.perf_counter() - t0)
    v = np.asarray(trace.v)
    line_v.set_ydata(v)
    for k, line in lines_g.items():
        line.set_ydata(np.asarray(trace.gates[k]))
    if np.all(np.isfinite(v)):
        rate = float(firing_rate(trace, start=ONSET + 50.0, stop=T_MAX))
        title.set_text(f"squid axon: {rate:.0f} Hz after the onset transient "
                       f"(simulated {T_MAX:g} ms in {ms:.0f} ms)")
    else:
        title.set_text("diverged: try other values")
    fig.canvas.draw_idle()


for slider in sliders.values():
    slider.on_changed(update)
reset = Button(fig.add_axes((0.85, 0.04, 0.1, 0.04)), "reset")
reset.on_clicked(lambda _: [s.reset() for s in sliders.values()])
update()

interactive = not SMOKE and matplotlib.get_backend().lower() not in (
    "agg", "pdf", "ps", "svg", "cairo", "template", "module://matplotlib_inline.backend_inline")
if interactive:
    plt.show()
else:
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "05_explorer.png", dpi=110)
    print(f"no display: wrote {OUT / '05_explorer.png'}")
