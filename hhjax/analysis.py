"""Spike detection, firing rates, f-I curves, rheobase and gate kinetics.

Spikes are upward crossings of a threshold (0 mV by default): sample ``k`` is below
and sample ``k + 1`` at or above it. Each crossing time is linearly interpolated
between the two samples, so it is accurate to well below ``dt`` and differentiable
with respect to the voltages. A trace that starts above threshold does not count a
spike at its first sample (no crossing was observed).

Everything works on batches: the time axis is the last axis and any leading axes are
carried through. :func:`spike_times` returns a padded array (NaN after the last
spike) plus the number of spikes, with a fixed ``max_spikes`` under ``jax.jit``.

:func:`fi_curve` and :func:`rheobase` run many step currents in one compiled,
``vmap``-ped scan that only keeps spike statistics (O(N) memory), so 10,000 neurons
cost no more memory than one.

Units: mV, ms, uA/cm2; rates in Hz.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, check_positive_scalar, is_concrete
from .integrators import get_method
from .model import Model, State, gate_linear, population_axes, resting_state
from .params import validate_model
from .population import Progress
from .simulate import Trace

Array = jax.Array
ArrayLike = Any

__all__ = [
    "FICurve",
    "GateKinetics",
    "PhasePlane",
    "Spikes",
    "fi_curve",
    "first_spike_latency",
    "firing_rate",
    "gate_kinetics",
    "interspike_intervals",
    "phase_plane",
    "rheobase",
    "smooth_firing_rate",
    "smooth_spike_count",
    "spike_count",
    "spike_times",
]


class Spikes(NamedTuple):
    """Spike times of one trace or a batch of traces.

    Attributes:
        times: crossing times, ms, ``(..., max_spikes)``, in increasing order and
            padded with NaN after the last spike.
        count: number of threshold crossings in each trace, ``(...)`` int. It can exceed
            ``max_spikes`` when ``max_spikes`` was set too small; ``times`` then holds
            the first ``max_spikes`` spikes only.
    """

    times: Array
    count: Array


# --------------------------------------------------------------------------- helpers


def _voltage(v: ArrayLike, t: ArrayLike | None, dt: float | None) -> tuple[Array, Array, Array]:
    """Voltage ``(..., n)`` and the time of each sample's start and step, ``(n - 1,)``.

    Returns ``(v, t_lo, t_step)``: crossing ``k`` (between samples k and k+1) happens
    at ``t_lo[k] + frac * t_step[k]``.
    """
    if isinstance(v, Trace):
        if v.v is None:
            raise ValueError("the trace has no voltage; simulate with record including 'v'")
        if t is None and dt is None:
            t = v.t
        v = v.v
    if not hasattr(v, "shape"):
        v = np.asarray(v)
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    if v.ndim < 1 or v.shape[-1] < 2:
        raise ValueError(f"v must have a time axis (last) of at least 2 samples; got shape {v.shape}")
    n = v.shape[-1]
    if t is not None and dt is not None:
        raise ValueError("give either t (sample times, ms) or dt (ms), not both")
    if t is None:
        if dt is None:
            raise ValueError("give the sample times t (ms) or the sampling step dt (ms)")
        check_positive_scalar("dt", dt, "ms")
        lo = jnp.arange(n - 1, dtype=v.dtype) * jnp.asarray(dt, v.dtype)
        return v, lo, jnp.broadcast_to(jnp.asarray(dt, v.dtype), (n - 1,))
    t = jnp.asarray(t, dtype=v.dtype)
    if t.shape != (n,):
        raise ValueError(f"t must have shape ({n},) to match v's last axis; got {t.shape}")
    return v, t[:-1], t[1:] - t[:-1]


@jax.jit
def _crossings(v: Array, threshold: ArrayLike) -> tuple[Array, Array]:
    """Upward crossings between consecutive samples and their fraction within the step."""
    thr = jnp.asarray(threshold, v.dtype)
    if thr.ndim:
        thr = thr[..., None]
    a, b = v[..., :-1], v[..., 1:]
    up = (a < thr) & (b >= thr)
    denom = jnp.where(up, b - a, 1.0)  # > 0 where up; the double-where keeps gradients finite
    frac = jnp.where(up, (thr - a) / denom, 0.0)
    return up, frac


def _check_threshold(threshold: ArrayLike) -> None:
    if is_concrete(threshold):
        check_finite("threshold", threshold)


# ------------------------------------------------------------------------ spike times


def spike_count(
    v: ArrayLike,
    *,
    threshold: ArrayLike = 0.0,
) -> Array:
    """Number of upward threshold crossings along the last axis.

    Args:
        v: membrane potential, mV, ``(..., n)`` (or a :class:`~hhjax.Trace`).
        threshold: mV.

    Returns:
        ``(...)`` int32 counts. Not differentiable; see :func:`smooth_spike_count`.
    """
    _check_threshold(threshold)
    v = _voltage(v, None, 1.0)[0]
    return jnp.sum(_crossings(v, threshold)[0], axis=-1, dtype=jnp.int32)


def spike_times(
    v: ArrayLike,
    t: ArrayLike | None = None,
    *,
    dt: float | None = None,
    threshold: ArrayLike = 0.0,
    max_spikes: int | None = None,
) -> Spikes:
    """Times of upward threshold crossings, linearly interpolated between samples.

    A crossing between samples ``k`` and ``k + 1`` (``v[k] < threshold <= v[k + 1]``)
    happens at ``t[k] + (threshold - v[k]) / (v[k + 1] - v[k]) * (t[k + 1] - t[k])``;
    the times are differentiable with respect to ``v``.

    Args:
        v: membrane potential, mV, ``(..., n)``; leading axes are a batch. A
            :class:`~hhjax.Trace` supplies its own ``t``.
        t: sample times, ms, ``(n,)``; or give ``dt`` (samples at ``0, dt, 2 dt, ...``).
        dt: sampling step, ms.
        threshold: mV (a scalar, or one per trace with the batch shape).
        max_spikes: length of the padded ``times`` axis. Required under ``jax.jit``;
            by default the largest count in the batch (at least 1).

    Returns:
        :class:`Spikes` ``(times (..., max_spikes) ms, NaN-padded; count (...))``.

    Raises:
        ValueError: no ``t``/``dt``, mismatched shapes, bad ``max_spikes``, or no
            ``max_spikes`` inside a trace.

    Example:
        >>> import jax.numpy as jnp
        >>> spike_times(jnp.array([-65.0, -10.0, 10.0, -60.0]), dt=0.1).times
        Array([0.15], dtype=float32)
    """
    _check_threshold(threshold)
    v, t_lo, t_step = _voltage(v, t, dt)
    up, frac = _crossings(v, threshold)
    count = jnp.sum(up, axis=-1, dtype=jnp.int32)
    if max_spikes is None:
        if not is_concrete(count):
            raise ValueError("max_spikes (an int) is required inside jax.jit / vmap / grad")
        max_spikes = max(1, int(jnp.max(count)) if count.size else 1)
    if not isinstance(max_spikes, (int, np.integer)) or isinstance(max_spikes, bool) or max_spikes < 1:
        raise ValueError(f"max_spikes must be an int >= 1; got {max_spikes!r}")
    times = _padded_times(up, frac, t_lo, t_step, int(max_spikes))
    return Spikes(times=times, count=count)


@functools.partial(jax.jit, static_argnames=("max_spikes",))
def _padded_times(up: Array, frac: Array, t_lo: Array, t_step: Array, max_spikes: int) -> Array:
    """Scatter crossing ``j`` of each trace to slot ``j`` (slots beyond the count: NaN)."""
    times = t_lo + frac * t_step  # (..., n - 1)
    slot = jnp.cumsum(up, axis=-1) - 1
    slot = jnp.where(up & (slot < max_spikes), slot, max_spikes)  # the extra slot is dropped

    def one(slot1: Array, times1: Array) -> Array:
        out = jnp.full((max_spikes + 1,), jnp.nan, times1.dtype)
        return out.at[slot1].set(times1, mode="drop", unique_indices=False)[:max_spikes]

    n = up.shape[-1]
    out = jax.vmap(one)(slot.reshape(-1, n), jnp.broadcast_to(times, up.shape).reshape(-1, n))
    return out.reshape(*up.shape[:-1], max_spikes)


def interspike_intervals(spikes: Spikes) -> Array:
    """Intervals between consecutive spikes, ms, ``(..., max_spikes - 1)``, NaN-padded."""
    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a Spikes (from spike_times); got {type(spikes).__name__}")
    return jnp.diff(spikes.times, axis=-1)


def first_spike_latency(spikes: Spikes, onset: ArrayLike = 0.0) -> Array:
    """Time from ``onset`` (ms) to the first spike at or after it, ms; NaN if none.

    Args:
        spikes: from :func:`spike_times`.
        onset: stimulus onset, ms (scalar or the batch shape).
    """
    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a Spikes (from spike_times); got {type(spikes).__name__}")
    onset = jnp.asarray(onset, spikes.times.dtype)
    after = jnp.where(spikes.times >= onset[..., None], spikes.times, jnp.inf)
    first = jnp.min(after, axis=-1)
    return jnp.where(jnp.isfinite(first), first - onset, jnp.nan)


def firing_rate(
    v: ArrayLike,
    t: ArrayLike | None = None,
    *,
    dt: float | None = None,
    threshold: ArrayLike = 0.0,
    start: float | None = None,
    stop: float | None = None,
) -> Array:
    """Mean firing rate, Hz: spikes with times in ``[start, stop)`` over its length.

    Args:
        v: membrane potential, mV, ``(..., n)`` (or a :class:`~hhjax.Trace`), or a
            :class:`Spikes` (then ``start`` and ``stop`` are required).
        t: sample times, ms, ``(n,)``; or give ``dt``.
        dt: sampling step, ms.
        threshold: mV.
        start: window start, ms (default: the first sample).
        stop: window end, ms (default: the last sample).

    Returns:
        ``(...)`` rates in Hz. Works under ``jax.jit`` (no ``max_spikes`` needed).
    """
    if isinstance(v, Spikes):
        if start is None or stop is None:
            raise ValueError("firing_rate of a Spikes needs start and stop (ms)")
        _check_window(start, stop)
        inside = (v.times >= start) & (v.times < stop)
        return 1000.0 * jnp.sum(inside, axis=-1) / (stop - start)
    _check_threshold(threshold)
    v_in = v
    v, t_lo, t_step = _voltage(v, t, dt)
    if start is None or stop is None:
        t_first, t_last = _time_span(v_in, t, dt)
        start = t_first if start is None else start
        stop = t_last if stop is None else stop
    _check_window(start, stop)
    up, frac = _crossings(v, threshold)
    tc = t_lo + frac * t_step
    inside = up & (tc >= start) & (tc < stop)
    return (1000.0 / (stop - start)) * jnp.sum(inside, axis=-1).astype(v.dtype)


def _time_span(v: Any, t: Any, dt: Any) -> tuple[float, float]:
    """First and last sample time (ms) as Python floats, for default windows."""
    if isinstance(v, Trace) and t is None and dt is None:
        t = v.t
    if t is not None and is_concrete(t):
        t = np.asarray(t)
        return float(t[0]), float(t[-1])
    if t is None and dt is not None and is_concrete(dt):
        return 0.0, (np.shape(v.v if isinstance(v, Trace) else v)[-1] - 1) * float(dt)
    raise ValueError("give start and stop (ms) when the sample times are traced")


def _check_window(start: float, stop: float) -> None:
    if is_concrete((start, stop)) and not (np.isfinite(start) and np.isfinite(stop) and stop > start):
        raise ValueError(f"the window needs finite start < stop (ms); got start={start!r}, stop={stop!r}")


# ----------------------------------------------------------------- differentiable count


def smooth_spike_count(v: ArrayLike, *, threshold: ArrayLike = 0.0, width: ArrayLike = 2.0) -> Array:
    """A differentiable count of upward threshold crossings along the last axis.

    Each sample is passed through a logistic ``s_k = sigmoid((v_k - threshold) / width)``
    and the count is the positive variation of ``s``, ``sum_k max(s_{k+1} - s_k, 0)``.
    As ``width -> 0``, ``s`` becomes the indicator ``v >= threshold`` and the count
    becomes exactly the number of upward crossings (what :func:`spike_count`
    returns); for a spike that rises from far below to far above threshold the
    contribution is ``~1`` already at ``width`` of a few mV. Wiggles that stay near
    threshold add fractions of a spike, wiggles far from it add nothing.

    The value is continuous in ``v`` and its gradient is finite everywhere (a.e.
    smooth); it is non-zero for samples within a few ``width`` of threshold, so pick
    ``width`` comparable to the voltage change per sample near threshold (a few mV
    at ``dt = 0.025`` ms) to pass gradients through spikes.

    Args:
        v: membrane potential, mV, ``(..., n)`` (or a :class:`~hhjax.Trace`).
        threshold: mV.
        width: logistic width, mV (> 0).

    Returns:
        ``(...)`` soft counts, same dtype as ``v``.
    """
    if is_concrete(width):
        check_positive_scalar("width", width, "mV")
    _check_threshold(threshold)
    v = _voltage(v, None, 1.0)[0]
    thr = jnp.asarray(threshold, v.dtype)
    if thr.ndim:
        thr = thr[..., None]
    s = jax.nn.sigmoid((v - thr) / jnp.asarray(width, v.dtype))
    return jnp.sum(jax.nn.relu(jnp.diff(s, axis=-1)), axis=-1)


def smooth_firing_rate(
    v: ArrayLike,
    *,
    dt: float,
    threshold: ArrayLike = 0.0,
    width: ArrayLike = 2.0,
    start: float | None = None,
    stop: float | None = None,
) -> Array:
    """Differentiable firing rate, Hz: :func:`smooth_spike_count` within a window.

    Args:
        v: membrane potential, mV, ``(..., n)`` sampled every ``dt`` ms from t = 0.
        dt: sampling step, ms.
        threshold: mV.
        width: logistic width, mV.
        start, stop: window, ms (default: the whole trace).

    Returns:
        ``(...)`` rates in Hz.
    """
    check_positive_scalar("dt", dt, "ms")
    v = _voltage(v, None, dt)[0]
    n = v.shape[-1]
    start = 0.0 if start is None else start
    stop = (n - 1) * dt if stop is None else stop
    _check_window(start, stop)
    i0 = max(0, int(np.floor(start / dt)))
    i1 = min(n, int(np.ceil(stop / dt)) + 1)
    if i1 - i0 < 2:
        raise ValueError(f"the window [{start}, {stop}) ms holds fewer than 2 samples")
    count = smooth_spike_count(v[..., i0:i1], threshold=threshold, width=width)
    return 1000.0 * count / (stop - start)


# ------------------------------------------------------------------------ f-I curves


class FICurve(NamedTuple):
    """Steady-state firing rates for step currents (the result of :func:`fi_curve`).

    Attributes:
        current: step amplitudes, uA/cm2, ``(K,)``.
        rate: firing rate in the window, Hz, ``(K,)`` or ``(N, K)`` for a population.
        count: spikes in the window, same shape as ``rate``.
        first_spike: time of the first spike in the window, ms (NaN if none).
        last_spike: time of the last spike in the window, ms (NaN if none).
        window: ``(start, stop)`` of the window, ms.
    """

    current: Array
    rate: Array
    count: Array
    first_spike: Array
    last_spike: Array
    window: tuple[float, float]


_RATES = ("isi", "count")


def _window_stats(
    model: Model,
    state0: State,
    amplitude: Array,
    dt: Array,
    n: int,
    method: str,
    threshold: Array,
    w0: Array,
    w1: Array,
) -> tuple[Array, Array, Array]:
    """One neuron under a constant current: spikes in [w0, w1) -> (count, first, last)."""
    step = get_method(method)
    dtype = amplitude.dtype

    def body(carry: tuple[Any, ...], k: Array) -> tuple[tuple[Any, ...], None]:
        state, count, first, last = carry
        new = step(model, state, amplitude, dt)
        a, b = state.v, new.v
        up = (a < threshold) & (b >= threshold)
        frac = jnp.where(up, (threshold - a) / jnp.where(up, b - a, 1.0), 0.0)
        tc = (k.astype(dtype) + frac) * dt
        hit = up & (tc >= w0) & (tc < w1)
        first = jnp.where(hit & (count == 0), tc, first)
        last = jnp.where(hit, tc, last)
        return (new, count + hit.astype(jnp.int32), first, last), None

    nan = jnp.asarray(jnp.nan, dtype)
    init = (state0, jnp.asarray(0, jnp.int32), nan, nan)
    (_, count, first, last), _ = jax.lax.scan(body, init, jnp.arange(n, dtype=jnp.int32))
    return count, first, last


@functools.partial(jax.jit, static_argnames=("n", "method", "model_axes"))
def _batch_stats(
    model: Model, state0: State, amplitudes: Array, dt: Array, n: int, method: str,
    threshold: Array, w0: Array, w1: Array, model_axes: Any,
) -> tuple[Array, Array, Array]:
    axes = jax.tree_util.tree_unflatten(model_axes[0], model_axes[1])
    fn = jax.vmap(_window_stats, in_axes=(axes, 0, 0, None, None, None, None, None, None))
    return fn(model, state0, amplitudes, dt, n, method, threshold, w0, w1)


def _run_steps(
    model: Model,
    amplitudes: Array,
    *,
    duration: float,
    dt: float,
    method: str,
    threshold: float,
    window: tuple[float, float],
    chunk: int,
    progress: bool,
    label: str,
    rest: State | None = None,
) -> tuple[Array, Array, Array, Array]:
    """Steps of ``amplitudes`` for every neuron of ``model``: stats ``(N?, K)``.

    ``amplitudes`` is ``(K,)`` (the same currents for every neuron) or ``(N, K)``.

    Returns ``(amps (N?, K), count, first, last)``.
    """
    axes, n_model = population_axes(model)
    dtype = amplitudes.dtype
    model = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model)
    k = amplitudes.shape[-1]
    if rest is None:
        rest = resting_state(model)  # population if the model is one
    pop = n_model or 1
    total = pop * k
    amplitudes = jnp.broadcast_to(amplitudes, (pop, k))
    # flatten (neuron, current) into one batch of `total` runs
    flat_model = jax.tree_util.tree_map(
        lambda x, ax: x if ax is None else jnp.repeat(x, k), model, axes,
        is_leaf=lambda x: x is None,
    )
    flat_rest = jax.tree_util.tree_map(
        lambda x: jnp.repeat(x, k) if x.ndim == 1 else jnp.broadcast_to(x, (total,)), rest
    )
    flat_amps = amplitudes.reshape(-1)
    n = int(round(duration / dt))
    chunk = max(1, min(int(chunk), total))
    n_chunks = -(-total // chunk)
    pad = n_chunks * chunk - total

    def padded(x: Array) -> Array:
        return jnp.concatenate([x, jnp.repeat(x[-1:], pad)]) if pad else x

    flat_model = jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else padded(x), flat_model)
    flat_rest = jax.tree_util.tree_map(padded, flat_rest)
    flat_amps = padded(flat_amps)
    leaf_axes = jax.tree_util.tree_map(lambda x: None if x.ndim == 0 else 0, flat_model)
    treedef = jax.tree_util.tree_structure(leaf_axes, is_leaf=lambda x: x is None)
    static_axes = (treedef, tuple(jax.tree_util.tree_leaves(leaf_axes, is_leaf=lambda x: x is None)))
    args = (
        jnp.asarray(dt, dtype), n, method, jnp.asarray(threshold, dtype),
        jnp.asarray(window[0], dtype), jnp.asarray(window[1], dtype), static_axes,
    )
    outs = []
    bar = Progress(n_chunks, label, progress)
    for c in range(n_chunks):
        sl = slice(c * chunk, (c + 1) * chunk)
        part_model = _take(flat_model, sl)
        part_rest = _take(flat_rest, sl)
        outs.append(jax.block_until_ready(_batch_stats(part_model, part_rest, flat_amps[sl], *args)))
        bar.update()
    count, first, last = (jnp.concatenate([o[i] for o in outs])[:total] for i in range(3))
    shape = (n_model, k) if n_model is not None else (k,)
    amps = flat_amps[:total].reshape(shape)
    return amps, count.reshape(shape), first.reshape(shape), last.reshape(shape)


def _take(tree: Any, sl: slice) -> Any:
    """Slice the batch axis of every non-scalar leaf."""
    return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else x[sl], tree)


def _check_sweep(model: Model, duration: float, dt: float, method: str,
                 window: tuple[float, float] | None, rate: str | None = None) -> tuple[float, float]:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a hhjax.Model; got {type(model).__name__}")
    validate_model(model)
    get_method(method)
    check_positive_scalar("dt", dt, "ms")
    check_positive_scalar("duration", duration, "ms")
    if duration < 2 * dt:
        raise ValueError(f"duration must cover at least 2 steps of dt = {dt} ms; got {duration!r}")
    if rate is not None and rate not in _RATES:
        raise ValueError(f"rate must be one of {_RATES}; got {rate!r}")
    if window is None:
        window = (0.2 * duration, duration)
    if len(window) != 2:
        raise ValueError(f"window must be (start, stop) in ms; got {window!r}")
    w0, w1 = float(window[0]), float(window[1])
    if not (np.isfinite(w0) and np.isfinite(w1) and 0 <= w0 < w1 <= duration):
        raise ValueError(
            f"window must satisfy 0 <= start < stop <= duration = {duration} ms; got {window!r}"
        )
    return w0, w1


def fi_curve(
    model: Model,
    currents: ArrayLike,
    *,
    duration: float = 1000.0,
    dt: float = 0.025,
    method: str = "exp_euler",
    window: tuple[float, float] | None = None,
    threshold: float = 0.0,
    rate: str = "isi",
    chunk: int = 8192,
    progress: bool = False,
) -> FICurve:
    """Steady-state firing rate against step current, in one compiled, vmapped call.

    Every neuron starts at rest (zero current) and receives a constant current from
    t = 0 for ``duration`` ms. Spikes are counted in ``window`` (skipping the onset
    transient); only spike statistics are kept, so memory is O(number of runs).

    Args:
        model: the model; a population model (leaves with a leading axis N) gives one
            curve per neuron.
        currents: step amplitudes, uA/cm2, ``(K,)``.
        duration: length of each run, ms.
        dt: step, ms.
        method: ``"exp_euler"``, ``"rk4"`` or ``"euler"``.
        window: ``(start, stop)``, ms, where the rate is measured; default the last
            80 % of the run ``(0.2 duration, duration)``.
        threshold: spike threshold, mV.
        rate: ``"isi"`` (default): ``(count - 1) / (last - first)`` from the spikes in
            the window, the inverse mean interspike interval, exact for periodic firing
            and free of counting quantisation; with fewer than 2 spikes in the window,
            ``count / window length``. ``"count"``: ``count / window length``.
        chunk: runs per compiled call (the batch is split into equal chunks).
        progress: print a progress line on stderr, one tick per chunk.

    Returns:
        :class:`FICurve` with rates ``(K,)`` or ``(N, K)`` in Hz.

    Raises:
        ValueError: bad currents, window, dt, duration, method or rate.

    Example:
        >>> import hhjax, numpy as np
        >>> fi = fi_curve(hhjax.presets.squid(), np.array([5.0, 10.0]), duration=300.0)
        >>> fi.rate.shape
        (2,)
    """
    w0, w1 = _check_sweep(model, duration, dt, method, window, rate)
    amps = jnp.atleast_1d(jnp.asarray(currents))
    if not jnp.issubdtype(amps.dtype, jnp.floating):
        amps = amps.astype(jnp.result_type(float))
    if amps.ndim != 1 or amps.size == 0:
        raise ValueError(f"currents must be a non-empty 1-D array (uA/cm2); got shape {amps.shape}")
    check_finite("currents", amps)
    amps_out, count, first, last = _run_steps(
        model, amps, duration=duration, dt=dt, method=method, threshold=threshold,
        window=(w0, w1), chunk=chunk, progress=progress, label="fi_curve",
    )
    by_count = 1000.0 * count / (w1 - w0)
    if rate == "isi":
        span = jnp.where(count >= 2, last - first, 1.0)
        hz = jnp.where(count >= 2, 1000.0 * (count - 1) / span, by_count)
    else:
        hz = by_count
    return FICurve(
        current=amps, rate=hz.astype(amps.dtype), count=count, first_spike=first,
        last_spike=last, window=(w0, w1),
    )


def rheobase(
    model: Model,
    *,
    low: float = 0.0,
    high: float = 50.0,
    tol: float = 0.01,
    duration: float = 200.0,
    dt: float = 0.025,
    method: str = "exp_euler",
    window: tuple[float, float] | None = None,
    min_spikes: int = 1,
    threshold: float = 0.0,
    points: int = 16,
    chunk: int = 8192,
    progress: bool = False,
) -> Array:
    """The smallest step current that fires, by vectorised bisection, uA/cm2.

    A step "fires" when at least ``min_spikes`` spikes fall in ``window``. Each round
    runs ``points`` currents spread over the current bracket as one vmapped call
    (for every neuron of a population at once) and keeps the interval between the
    largest silent and the smallest firing current, so the bracket shrinks by a
    factor ``points + 1`` per round. Firing is assumed monotone in the current
    between ``low`` and ``high``.

    With the defaults (``window`` = the whole run, one spike) this is the classic
    rheobase. With ``window=(200, 1000)``, ``duration=1000`` and ``min_spikes=2`` it
    is the onset of sustained (repetitive) firing.

    Args:
        model: the model (a population gives one rheobase per neuron).
        low, high: initial bracket, uA/cm2 (``low`` must be silent, ``high`` fire).
        tol: bracket width to stop at, uA/cm2 (> 0).
        duration: length of each run, ms.
        dt: step, ms.
        method: integration method.
        window: ``(start, stop)``, ms, where spikes count; default the whole run.
        min_spikes: spikes needed in the window to count as firing (>= 1).
        threshold: spike threshold, mV.
        points: currents per round (>= 2).
        chunk: runs per compiled call.
        progress: print one progress tick per round on stderr.

    Returns:
        The smallest firing current found, uA/cm2 (scalar or ``(N,)``): the true
        rheobase lies in ``(result - tol, result]``. NaN where ``high`` does not fire;
        ``low`` where ``low`` already fires.

    Raises:
        ValueError: bad bracket, tolerance, points or min_spikes (and as
            :func:`fi_curve`).
    """
    window = (0.0, duration) if window is None else window
    w0, w1 = _check_sweep(model, duration, dt, method, window)
    check_positive_scalar("tol", tol, "uA/cm2")
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"need finite low < high (uA/cm2); got low={low!r}, high={high!r}")
    if not isinstance(points, (int, np.integer)) or points < 2:
        raise ValueError(f"points must be an int >= 2; got {points!r}")
    if not isinstance(min_spikes, (int, np.integer)) or min_spikes < 1:
        raise ValueError(f"min_spikes must be an int >= 1; got {min_spikes!r}")
    _, n_model = population_axes(model)
    pop = n_model or 1
    dtype = jnp.result_type(float)
    lo = np.full(pop, float(low))
    hi = np.full(pop, float(high))
    frac = np.linspace(0.0, 1.0, points)  # first round includes both ends
    rounds = int(np.ceil(np.log((high - low) / tol) / np.log(points + 1))) + 2
    bar = Progress(rounds, "rheobase", progress)
    fires_high = np.ones(pop, bool)
    fires_low = np.zeros(pop, bool)
    rest = resting_state(jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model))
    for r in range(rounds):
        grid = lo[:, None] + (hi - lo)[:, None] * frac[None, :]  # (pop, points)
        _, count, _, _ = _run_steps(
            model, jnp.asarray(grid, dtype), duration=duration, dt=dt, method=method,
            threshold=threshold, window=(w0, w1), chunk=chunk, progress=False, label="rheobase",
            rest=rest,
        )
        fires = np.asarray(count).reshape(pop, points) >= min_spikes
        if r == 0:
            fires_high = fires[:, -1]
            fires_low = fires[:, 0]
        # first firing point (the last point if none fires) and the point before it
        first = np.where(fires.any(axis=1), fires.argmax(axis=1), points - 1)
        new_hi = grid[np.arange(pop), first]
        new_lo = grid[np.arange(pop), np.maximum(first - 1, 0)]
        lo, hi = np.where(first > 0, new_lo, lo), new_hi
        frac = np.linspace(0.0, 1.0, points + 2)[1:-1]  # later rounds: interior points
        bar.update()
        if np.all(hi - lo <= tol):
            bar.update(rounds - r - 1)  # done early: complete the line
            break
    out = np.where(fires_low, float(low), np.where(fires_high, hi, np.nan))
    result = jnp.asarray(out, dtype)
    return result if n_model is not None else result[0]


# --------------------------------------------------------------- kinetics, phase plane


class GateKinetics(NamedTuple):
    """Steady states and time constants of every gate over a voltage range.

    Attributes:
        v: membrane potentials, mV, ``(M,)``.
        inf: steady state ``x_inf(v)`` of each gate (``"na.m"``, ...), ``(M,)``.
        tau: time constant ``tau_x(v)`` of each gate, ms, at the model's temperature.
    """

    v: Array
    inf: dict[str, Array]
    tau: dict[str, Array]


def gate_kinetics(model: Model, v: ArrayLike | None = None) -> GateKinetics:
    """``x_inf(V)`` and ``tau_x(V)`` of every gate of any model.

    From the linear form ``dx/dt = a - s x``: ``x_inf = a / s`` and ``tau = 1 / s``
    (ms), including the Q10 temperature factor.

    Args:
        model: a single model (not a population).
        v: membrane potentials, mV; default 401 points from 40 mV below to 120 mV
            above the resting potential (-105 to 55 mV for ``squid()``).

    Returns:
        :class:`GateKinetics`.

    Raises:
        ValueError: a population model or non-finite ``v``.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a hhjax.Model; got {type(model).__name__}")
    if population_axes(model)[1] is not None:
        raise ValueError("gate_kinetics needs a single model, not a population")
    validate_model(model)
    if v is None:
        v_rest = float(resting_state(model).v)
        v = np.linspace(v_rest - 40.0, v_rest + 120.0, 401)
    v = jnp.asarray(np.asarray(v) if not hasattr(v, "dtype") else v)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"v must be a non-empty 1-D array of potentials (mV); got shape {v.shape}")
    check_finite("v", v)
    lin = gate_linear(model, v)
    return GateKinetics(
        v=v,
        inf={k: a / s for k, (a, s) in lin.items()},
        tau={k: 1.0 / s for k, (a, s) in lin.items()},
    )


class PhasePlane(NamedTuple):
    """Trajectory data for phase-plane plots (V against each gate).

    Attributes:
        t: times, ms, ``(M,)``.
        v: membrane potential, mV, ``(..., M)``.
        gates: each gate's trajectory, ``(..., M)``.
    """

    t: Array
    v: Array
    gates: dict[str, Array]


def phase_plane(trace: Trace, *, start: float = 0.0, stop: float | None = None) -> PhasePlane:
    """The (V, x) trajectories of a trace between ``start`` and ``stop`` ms.

    Use ``start`` after the transient to keep only the limit cycle.

    Args:
        trace: from :func:`hhjax.simulate` with ``record`` including ``"v"`` and
            ``"gates"``.
        start, stop: time window, ms (default: the whole trace).

    Raises:
        ValueError: the trace lacks V or the gates, or the window is empty.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a hhjax.Trace; got {type(trace).__name__}")
    if trace.v is None or trace.gates is None:
        raise ValueError("phase_plane needs a trace recorded with record=('v', 'gates')")
    t = np.asarray(trace.t)
    stop = float(t[-1]) if stop is None else stop
    keep = (t >= start) & (t <= stop)
    if keep.sum() < 2:
        raise ValueError(f"the window [{start}, {stop}] ms holds fewer than 2 samples")
    idx = jnp.asarray(np.flatnonzero(keep))
    return PhasePlane(
        t=trace.t[idx], v=trace.v[..., idx], gates={k: x[..., idx] for k, x in trace.gates.items()}
    )
