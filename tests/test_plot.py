"""hhjax.plot: every figure renders headless, holds the data it was given, and is labelled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import hhjax
from hhjax import analysis, plot, stimulus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trace() -> hhjax.Trace:
    step = stimulus.step_current(10.0, 10.0, 40.0)
    return hhjax.simulate(hhjax.presets.squid(), step, dt=0.05, t_max=50.0,
                          record=("v", "gates", "currents"))


def _labels(fig: Figure) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]


def _saves(fig: Figure, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 5000  # a real image, not an empty canvas


def test_voltage_plots_the_trace_and_stimulus(trace: hhjax.Trace, tmp_path: Path) -> None:
    step = stimulus.step_current(10.0, 10.0, 40.0)
    fig = plot.voltage(trace, step, threshold=0.0, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), np.asarray(trace.v), rtol=1e-6)
    n_spikes = int(analysis.spike_count(trace))
    assert f"{n_spikes} spikes" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "V (mV)" in _labels(fig) and "I (µA/cm²)" in _labels(fig) and "time (ms)" in _labels(fig)
    # the stimulus panel holds the sampled current
    values = fig.axes[1].patches[0].get_data().values
    np.testing.assert_allclose(values, np.asarray(step.sample(0.05, 50.0)), rtol=1e-6)
    _saves(fig, tmp_path, "voltage")
    # an array stimulus draws the same
    fig2 = plot.voltage(trace, np.asarray(step.sample(0.05, 50.0)))
    np.testing.assert_allclose(fig2.axes[1].patches[0].get_data().values, values)


def test_gates_currents_overview(trace: hhjax.Trace, tmp_path: Path) -> None:
    fig = plot.gates(trace)
    assert {ln.get_label() for ln in fig.axes[0].lines} == {"na.m", "na.h", "k.n"}
    fig = plot.currents(trace)
    lines = {ln.get_label(): ln.get_ydata() for ln in fig.axes[0].lines}
    assert {"I_na", "I_k", "I_leak", "sum"} <= set(lines)
    np.testing.assert_allclose(lines["sum"], lines["I_na"] + lines["I_k"] + lines["I_leak"], rtol=1e-9)
    fig = plot.overview(trace, 5.0)
    assert len(fig.axes) == 4
    _saves(fig, tmp_path, "overview")


def test_phase_planes_and_kinetics(trace: hhjax.Trace, tmp_path: Path) -> None:
    model = hhjax.presets.squid()
    fig = plot.phase_planes(trace, ["k.n", "na.m"], start=20.0, model=model)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "k.n"
    x, y = fig.axes[0].lines[0].get_data()
    keep = np.asarray(trace.t) >= 20.0
    np.testing.assert_allclose(x, np.asarray(trace.v)[keep], rtol=1e-6)
    np.testing.assert_allclose(y, np.asarray(trace.gates["k.n"])[keep], rtol=1e-6)
    with pytest.raises(ValueError, match="gates must name"):
        plot.phase_planes(trace, ["na.x"])
    fig = plot.kinetics({"squid": model, "cs": hhjax.presets.connor_stevens()})
    assert fig.axes[1].get_ylabel() == "time constant τ (ms)"
    assert len(fig.axes[0].lines) == 3 + 5
    _saves(fig, tmp_path, "kinetics")


def test_fi_curves_several_models_and_population(tmp_path: Path) -> None:
    currents = np.array([0.0, 10.0, 20.0])
    a = analysis.fi_curve(hhjax.presets.squid(), currents, duration=100.0)
    pop = hhjax.set_params(hhjax.presets.squid(), {"na.g": jnp.array([100.0, 140.0])})
    b = analysis.fi_curve(pop, currents, duration=100.0)
    fig = plot.fi_curves({"one": a, "pop": b}, title="x")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.asarray(a.rate))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.asarray(b.rate).mean(axis=0), rtol=1e-6)
    assert ax.get_xlabel() == "I (µA/cm²)" and ax.get_ylabel() == "firing rate (Hz)"
    _saves(fig, tmp_path, "fi")
    with pytest.raises(TypeError, match="FICurve"):
        plot.fi_curves({"bad": 3})


def test_population_raster_and_heatmap(tmp_path: Path) -> None:
    pop = hhjax.set_params(hhjax.presets.squid(), {"na.g": jnp.linspace(80.0, 160.0, 6)})
    tr = hhjax.simulate(pop, 10.0, dt=0.05, t_max=40.0)
    fig = plot.population(tr)
    n_marks = np.asarray(fig.axes[0].lines[0].get_xdata()).size
    assert n_marks == int(analysis.spike_count(tr).sum())
    fig = plot.population(tr, kind="heatmap")
    assert len(fig.axes) == 2  # the image and its colorbar
    _saves(fig, tmp_path, "heatmap")
    with pytest.raises(ValueError, match="kind"):
        plot.population(tr, kind="violin")
    with pytest.raises(ValueError, match="population trace"):
        plot.population(hhjax.simulate(hhjax.presets.squid(), 1.0, dt=0.05, t_max=5.0))


def test_compose_into_subfigures(trace: hhjax.Trace, tmp_path: Path) -> None:
    fig = Figure(figsize=(8, 3), layout="constrained")
    left, right = fig.subfigures(1, 2)
    assert plot.voltage(trace, fig=left) is left
    plot.phase_planes(trace, ["k.n"], fig=right)
    assert len(fig.axes) == 2
    _saves(fig, tmp_path, "composed")


def test_bad_traces_raise() -> None:
    v_only = hhjax.simulate(hhjax.presets.squid(), 1.0, dt=0.05, t_max=5.0)
    with pytest.raises(ValueError, match="gates"):
        plot.gates(v_only)
    with pytest.raises(ValueError, match="currents"):
        plot.currents(v_only)
    with pytest.raises(TypeError, match="Trace"):
        plot.voltage(np.zeros(10))


def test_import_hhjax_does_not_load_matplotlib_and_plot_is_headless() -> None:
    code = ("import sys, hhjax; assert 'matplotlib' not in sys.modules; "
            "import hhjax.plot; assert 'matplotlib.pyplot' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
