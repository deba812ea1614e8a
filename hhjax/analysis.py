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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, check_positive_scalar, is_concrete
from .simulate import Trace

Array = jax.Array
ArrayLike = Any

__all__ = [
    "Spikes",
    "first_spike_latency",
    "firing_rate",
    "interspike_intervals",
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


def _padded_times(up: Array, frac: Array, t_lo: Array, t_step: Array, max_spikes: int) -> Array:
    n = up.shape[-1]

    def one(up1: Array, frac1: Array) -> Array:
        (idx,) = jnp.nonzero(up1, size=max_spikes, fill_value=n)
        ok = idx < n
        k = jnp.minimum(idx, n - 1)
        return jnp.where(ok, t_lo[k] + frac1[k] * t_step[k], jnp.nan)

    flat_up = up.reshape(-1, n)
    flat_frac = frac.reshape(-1, n)
    out = jax.vmap(one)(flat_up, flat_frac)
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
    v, t_lo, t_step = _voltage(v, t, dt)
    start = float(t_lo[0]) if start is None else start
    stop = float(t_lo[-1] + t_step[-1]) if stop is None else stop
    _check_window(start, stop)
    up, frac = _crossings(v, threshold)
    tc = t_lo + frac * t_step
    inside = up & (tc >= start) & (tc < stop)
    return (1000.0 / (stop - start)) * jnp.sum(inside, axis=-1).astype(v.dtype)


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
