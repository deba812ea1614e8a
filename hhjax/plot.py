"""Matplotlib figures of traces, gates, currents, phase planes, f-I curves and kinetics.

Every function returns a :class:`matplotlib.figure.Figure` (restyle it, or save it with
``fig.savefig("x.png")``); pass ``fig=`` a Figure or a SubFigure (``fig.subfigures``)
to compose several plots into one figure, then the function draws there and returns it. Figures are built with the object-oriented API, not
``pyplot``, so nothing here needs a display or changes global state: it works headless
(CI, servers) and inside notebooks alike. Pass ``ax=`` where offered to draw into your
own axes instead.

``import hhjax`` does not import this module (matplotlib stays unloaded until
``import hhjax.plot``).

Units: mV, ms, uA/cm2, Hz.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .analysis import FICurve, GateKinetics, PhasePlane, gate_kinetics, phase_plane, spike_times
from .model import Model
from .simulate import Trace
from .stimulus import Stimulus

__all__ = [
    "currents",
    "fi_curves",
    "gates",
    "kinetics",
    "overview",
    "phase_planes",
    "population",
    "voltage",
]

_GATE_COLORS = {"m": "#d62728", "h": "#1f77b4", "n": "#2ca02c", "a": "#9467bd", "b": "#8c564b"}
_CHANNEL_COLORS = {"na": "#d62728", "k": "#2ca02c", "a": "#9467bd", "leak": "#7f7f7f"}
_CYCLE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
_V_COLOR = "#222222"
_I_COLOR = "#ff7f0e"

I_LABEL = "I (µA/cm²)"
V_LABEL = "V (mV)"
T_LABEL = "time (ms)"


def _figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (6.0, 3.2),
            height_ratios: Sequence[float] | None = None, sharex: bool = True,
            fig: Any = None) -> tuple[Any, Any]:
    """A new constrained-layout Figure, or subplots in ``fig`` (a Figure or SubFigure)."""
    if fig is None:
        fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(
        nrows, ncols, sharex=sharex, squeeze=False,
        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None,
    )
    for ax in axes.flat:
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    return fig, axes


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def _row(x: Any, index: int) -> np.ndarray:
    """One neuron of a (possibly population) array, as float64 numpy."""
    arr = np.asarray(x, dtype=np.float64)
    return arr.reshape(-1, arr.shape[-1])[index] if arr.ndim > 1 else arr


def _check_trace(trace: Any, need: str) -> None:
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a hhjax.Trace; got {type(trace).__name__}")
    if getattr(trace, need) is None:
        raise ValueError(f"the trace has no {need}; simulate with record including {need!r}")


def _stimulus_on_grid(stimulus: Any, trace: Trace, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(t_edges, values)`` for a step plot of the stimulus (value k over [k dt, (k+1) dt))."""
    t = np.asarray(trace.t, dtype=np.float64)
    if len(t) < 2:
        raise ValueError("the trace needs at least 2 samples to plot")
    dt = (t[-1] - t[0]) / (len(t) - 1)
    if isinstance(stimulus, Stimulus):
        n = int(round(t[-1] / dt))
        values = _row(stimulus.sample(dt, n * dt), index)
        edges = np.arange(len(values) + 1) * dt
    else:
        values = _row(np.broadcast_to(np.asarray(stimulus, dtype=np.float64), np.shape(stimulus) or (1,)), index)
        if values.size == 1:
            values = np.full(len(t) - 1, values[0])
        step = t[-1] / len(values)  # the stimulus may be finer than the recording (every > 1)
        edges = np.arange(len(values) + 1) * step
    return edges, values


def _draw_stimulus(ax: Axes, stimulus: Any, trace: Trace, index: int) -> None:
    edges, values = _stimulus_on_grid(stimulus, trace, index)
    ax.stairs(values, edges, color=_I_COLOR, lw=1.2, baseline=None)
    ax.set_ylabel(I_LABEL, fontsize=9)
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)


def _draw_spikes(ax: Axes, trace: Trace, index: int, threshold: float | None) -> None:
    if threshold is None:
        return
    v = _row(trace.v, index)
    sp = spike_times(v, np.asarray(trace.t), threshold=threshold)
    times = np.asarray(sp.times)
    times = times[np.isfinite(times)]
    if times.size:
        ax.plot(times, np.full(times.shape, threshold), "v", ms=3.5, color="#d62728",
                label=f"{times.size} spikes", zorder=3)
        ax.legend(fontsize=8, frameon=False, loc="upper right")


def voltage(
    trace: Trace,
    stimulus: Any = None,
    *,
    index: int = 0,
    threshold: float | None = None,
    fig: Any = None,
    title: str | None = None,
) -> Figure:
    """Membrane potential, with the injected current underneath when given.

    Args:
        trace: from :func:`hhjax.simulate` (record including ``"v"``).
        stimulus: the injected current: the array passed to ``simulate`` (uA/cm2,
            value k held over step k), a scalar, or a :class:`hhjax.stimulus.Stimulus`.
        index: which neuron of a population trace.
        threshold: mark spikes (upward crossings of this many mV).
        title: figure title.
    """
    _check_trace(trace, "v")
    rows = 2 if stimulus is not None else 1
    fig, axes = _figure(rows, size=(6.0, 3.6 if rows == 2 else 2.8),
                        height_ratios=[3, 1] if rows == 2 else None, fig=fig)
    ax = axes[0, 0]
    ax.plot(np.asarray(trace.t), _row(trace.v, index), color=_V_COLOR, lw=1.0)
    ax.set_ylabel(V_LABEL, fontsize=9)
    _draw_spikes(ax, trace, index, threshold)
    if stimulus is not None:
        _draw_stimulus(axes[1, 0], stimulus, trace, index)
    axes[-1, 0].set_xlabel(T_LABEL, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _draw_gates(ax: Axes, trace: Trace, index: int) -> None:
    t = np.asarray(trace.t)
    for k, x in trace.gates.items():
        gate = k.split(".")[-1]
        ax.plot(t, _row(x, index), lw=1.0, label=k, color=_GATE_COLORS.get(gate))
    ax.set_ylabel("gate (open fraction)", fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, frameon=False, ncols=min(5, len(trace.gates)), loc="upper right")


def _draw_currents(ax: Axes, trace: Trace, index: int, total: bool) -> None:
    t = np.asarray(trace.t)
    rows = {k: _row(x, index) for k, x in trace.currents.items()}
    for k, x in rows.items():
        ax.plot(t, x, lw=1.0, label=f"I_{k}", color=_CHANNEL_COLORS.get(k))
    if total:
        ax.plot(t, sum(rows.values()), lw=1.0, ls="--", color="k", label="sum")
    ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
    ax.set_ylabel("current (µA/cm²)\noutward +", fontsize=9)
    ax.legend(fontsize=8, frameon=False, ncols=len(rows) + 1, loc="lower right")


def gates(trace: Trace, *, index: int = 0, fig: Any = None, title: str | None = None) -> Figure:
    """Every gate's open fraction against time (record ``"gates"``)."""
    _check_trace(trace, "gates")
    fig, axes = _figure(1, size=(6.0, 2.6), fig=fig)
    _draw_gates(axes[0, 0], trace, index)
    axes[0, 0].set_xlabel(T_LABEL, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def currents(
    trace: Trace, *, index: int = 0, total: bool = True, fig: Any = None, title: str | None = None
) -> Figure:
    """Each channel's current density (outward positive) and, dashed, their sum."""
    _check_trace(trace, "currents")
    fig, axes = _figure(1, size=(6.0, 2.8), fig=fig)
    _draw_currents(axes[0, 0], trace, index, total)
    axes[0, 0].set_xlabel(T_LABEL, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def overview(
    trace: Trace,
    stimulus: Any = None,
    *,
    index: int = 0,
    threshold: float | None = None,
    fig: Any = None,
    title: str | None = None,
) -> Figure:
    """Stacked panels of whatever the trace holds: V, stimulus, gates, currents."""
    _check_trace(trace, "v")
    panels = ["v"] + (["i"] if stimulus is not None else [])
    panels += [p for p in ("gates", "currents") if getattr(trace, p) is not None]
    ratios = {"v": 3.0, "i": 1.0, "gates": 2.0, "currents": 2.4}
    fig, axes = _figure(len(panels), size=(6.5, 0.8 + 0.85 * sum(ratios[p] for p in panels)),
                        height_ratios=[ratios[p] for p in panels], fig=fig)
    for ax, p in zip(axes[:, 0], panels, strict=True):
        if p == "v":
            ax.plot(np.asarray(trace.t), _row(trace.v, index), color=_V_COLOR, lw=1.0)
            ax.set_ylabel(V_LABEL, fontsize=9)
            _draw_spikes(ax, trace, index, threshold)
        elif p == "i":
            _draw_stimulus(ax, stimulus, trace, index)
        elif p == "gates":
            _draw_gates(ax, trace, index)
        else:
            _draw_currents(ax, trace, index, True)
    axes[-1, 0].set_xlabel(T_LABEL, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def phase_planes(
    trace: Trace | PhasePlane,
    gates: Sequence[str] | None = None,
    *,
    start: float = 0.0,
    model: Model | None = None,
    index: int = 0,
    fig: Any = None,
    title: str | None = None,
) -> Figure:
    """V against each gate: trajectories and limit cycles, one panel per gate.

    Args:
        trace: a trace recorded with ``("v", "gates")`` or a :class:`PhasePlane`.
        gates: which gates (default: all).
        start: drop the trajectory before this time, ms (show only the limit cycle).
        model: if given, overlay each gate's steady state ``x_inf(V)`` (dashed).
        index: which neuron of a population trace.
        title: figure title.
    """
    pp = trace if isinstance(trace, PhasePlane) else phase_plane(trace, start=start)
    names = list(pp.gates) if gates is None else list(gates)
    unknown = [g for g in names if g not in pp.gates]
    if unknown or not names:
        raise ValueError(f"gates must name some of {sorted(pp.gates)}; got {names!r}")
    fig, axes = _figure(1, len(names), size=(2.6 * len(names) + 0.4, 2.8), sharex=False,
                        fig=fig)
    v = _row(pp.v, index)
    kin = None
    if model is not None:
        kin = gate_kinetics(model, np.linspace(v.min() - 5.0, v.max() + 5.0, 300))
    for ax, k in zip(axes[0], names, strict=True):
        x = _row(pp.gates[k], index)
        ax.plot(v, x, color=_GATE_COLORS.get(k.split(".")[-1], _V_COLOR), lw=1.1, label="trajectory")
        ax.plot(v[:1], x[:1], "o", ms=4, color="k", label=f"t = {float(pp.t[0]):g} ms")
        if kin is not None:
            ax.plot(np.asarray(kin.v), np.asarray(kin.inf[k]), "--", color="0.5", lw=0.9,
                    label=f"{k.split('.')[-1]}∞(V)")
        ax.set_xlabel(V_LABEL, fontsize=9)
        ax.set_ylabel(k, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].legend(fontsize=7, frameon=False, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def fi_curves(
    curves: FICurve | Mapping[str, FICurve],
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Firing rate against step current; several models on one axes.

    Args:
        curves: one :class:`FICurve` or ``{label: FICurve}``. A population curve
            ``(N, K)`` draws its mean with a 10-90 % band.
        ax: draw into these axes (the figure is theirs).
        title: axes title.
    """
    if isinstance(curves, FICurve):
        curves = {"": curves}
    if not curves:
        raise ValueError("curves must hold at least one FICurve")
    if ax is None:
        fig, axes = _figure(1, size=(4.6, 3.2))
        ax = axes[0, 0]
    else:
        fig = ax.figure
        _style(ax)
    for (label, fi), color in zip(curves.items(), _CYCLE * 10, strict=False):
        if not isinstance(fi, FICurve):
            raise TypeError(f"curves[{label!r}] must be an FICurve; got {type(fi).__name__}")
        i = np.asarray(fi.current, dtype=np.float64)
        r = np.asarray(fi.rate, dtype=np.float64)
        if r.ndim == 2:
            lo, hi = np.percentile(r, [10, 90], axis=0)
            ax.fill_between(i, lo, hi, color=color, alpha=0.25, lw=0)
            ax.plot(i, np.mean(r, axis=0), "-", color=color, lw=1.4,
                    label=f"{label}\nmean and 10-90 % of N = {r.shape[0]:,}".strip())
        else:
            ax.plot(i, r, "o-", color=color, ms=3, lw=1.2, label=label or None)
    ax.set_xlabel(I_LABEL, fontsize=9)
    ax.set_ylabel("firing rate (Hz)", fontsize=9)
    if any(curves) or any(np.ndim(fi.rate) == 2 for fi in curves.values()):
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def kinetics(
    models: Model | GateKinetics | Mapping[str, Model | GateKinetics],
    *,
    v: Any = None,
    fig: Any = None,
    title: str | None = None,
) -> Figure:
    """Steady states ``x_inf(V)`` (left) and time constants ``tau_x(V)`` (right).

    Args:
        models: a model, its :func:`~hhjax.analysis.gate_kinetics`, or ``{label: ...}``
            to compare models (solid lines for the first, dashed for the second, ...).
        v: potentials, mV (for models given as :class:`Model`).
        title: figure title.
    """
    if isinstance(models, (Model, GateKinetics)):
        models = {"": models}
    fig, axes = _figure(1, 2, size=(7.6, 3.0), sharex=False, fig=fig)
    styles = ["-", "--", ":", "-."]
    for (label, m), ls in zip(models.items(), styles * 5, strict=False):
        kin = m if isinstance(m, GateKinetics) else gate_kinetics(m, v)
        vv = np.asarray(kin.v)
        for k in kin.inf:
            color = _GATE_COLORS.get(k.split(".")[-1])
            name = f"{label} {k}".strip()
            axes[0, 0].plot(vv, np.asarray(kin.inf[k]), ls, color=color, lw=1.2, label=name)
            axes[0, 1].plot(vv, np.asarray(kin.tau[k]), ls, color=color, lw=1.2, label=name)
    axes[0, 0].set_ylabel("steady state x∞", fontsize=9)
    axes[0, 1].set_ylabel("time constant τ (ms)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel(V_LABEL, fontsize=9)
    axes[0, 1].legend(fontsize=7, frameon=False, ncols=1 + (len(models) > 1), loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def population(
    trace: Trace,
    *,
    kind: str = "raster",
    threshold: float = 0.0,
    max_neurons: int = 200,
    fig: Any = None,
    title: str | None = None,
) -> Figure:
    """A population: spike raster or a heat map of V (neurons x time).

    Args:
        trace: a population trace (V of shape ``(N, n_rec)``).
        kind: ``"raster"`` (spike times) or ``"heatmap"`` (V colour-coded).
        threshold: spike threshold, mV (raster).
        max_neurons: show at most this many neurons (evenly spaced).
        title: figure title.
    """
    _check_trace(trace, "v")
    if kind not in ("raster", "heatmap"):
        raise ValueError(f"kind must be 'raster' or 'heatmap'; got {kind!r}")
    v = np.asarray(trace.v)
    if v.ndim != 2:
        raise ValueError(f"population needs a population trace, V of shape (N, n); got {v.shape}")
    pick = np.unique(np.linspace(0, v.shape[0] - 1, min(max_neurons, v.shape[0])).astype(int))
    t = np.asarray(trace.t)
    fig, axes = _figure(1, size=(6.0, 3.4), fig=fig)
    ax = axes[0, 0]
    if kind == "raster":
        sp = spike_times(v[pick], t, threshold=threshold)
        times = np.asarray(sp.times)
        rows = np.broadcast_to(np.arange(len(pick))[:, None], times.shape)
        ok = np.isfinite(times)
        ax.plot(times[ok], rows[ok], "|", ms=3, color=_V_COLOR)
        ax.set_xlim(t[0], t[-1])
    else:
        im = ax.imshow(v[pick], aspect="auto", origin="lower", cmap="magma",
                       extent=(t[0], t[-1], -0.5, len(pick) - 0.5), interpolation="nearest")
        fig.colorbar(im, ax=ax, label=V_LABEL)
    ax.set_ylabel(f"neuron ({len(pick)} of {v.shape[0]})", fontsize=9)
    ax.set_xlabel(T_LABEL, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
