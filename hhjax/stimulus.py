"""Injected-current stimuli as arrays on the simulation time grid.

A stimulus object describes a waveform; ``stim.sample(dt, t_max)`` returns its current
density (uA/cm2) on the grid: value ``k`` is the mean of the waveform over the step
``[k dt, (k+1) dt)``, which :func:`hhjax.simulate` holds constant within that step.
Means over the step make box edges that fall between grid points exact in charge,
and grid-aligned edges exact outright.

Amplitudes may be arrays: a leading population axis gives an ``(N, n_steps)`` array
that broadcasts against a population model. Amplitudes are used with ``jax.numpy``,
so gradients flow to them; times are plain numbers. Stimuli add: ``step + noise``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, check_positive_scalar, is_concrete

Array = jax.Array
ArrayLike = Any

__all__ = [
    "Stimulus",
    "filtered_noise",
    "n_steps",
    "ou_noise",
    "pulse_train",
    "ramp",
    "sampled",
    "sine",
    "step_current",
]

_SNAP = 1e-9  # relative distance below which a time counts as on the grid


def n_steps(dt: float, t_max: float) -> int:
    """Number of whole steps of ``dt`` ms in ``t_max`` ms (a multiple within 1e-9).

    Raises:
        ValueError: ``dt <= 0`` or ``t_max < dt``.
    """
    check_positive_scalar("dt", dt, "ms")
    if not math.isfinite(t_max) or t_max < dt:
        raise ValueError(f"t_max must be a finite duration >= dt = {dt} ms; got {t_max!r}")
    return int(math.floor(t_max / dt * (1 + _SNAP)))


def _grid_positions(t: ArrayLike, dt: float) -> np.ndarray:
    """Times in units of steps, snapped to integers when within rounding error."""
    x = np.asarray(t, dtype=np.float64) / dt
    with np.errstate(invalid="ignore"):  # inf (an open-ended stimulus) stays inf
        r = np.round(x)
        return np.where(np.abs(x - r) <= _SNAP * np.maximum(1.0, np.abs(x)), r, x)


def _overlap(start: ArrayLike, stop: ArrayLike, dt: float, n: int) -> tuple[np.ndarray, ...]:
    """Per step: covered fraction of ``[start, stop)`` and the covered span (in steps).

    Returns ``(fraction, lo, hi)`` with shape ``(..., n)`` where ``lo``/``hi`` bound the
    overlap of step ``k`` with the interval, in units of steps.
    """
    s = _grid_positions(start, dt)[..., None]
    e = _grid_positions(stop, dt)[..., None]
    k = np.arange(n, dtype=np.float64)
    lo = np.clip(k, s, e)
    hi = np.clip(k + 1, s, e)
    return hi - lo, lo, hi


class Stimulus:
    """Base class: a current-density waveform (uA/cm2) to sample on a time grid.

    Subclasses implement ``_factors`` when the waveform is a few time profiles scaled
    by (per-neuron) weights, and ``_sample`` otherwise.
    """

    def _factors(self, dt: float, n: int) -> tuple[Array, np.ndarray] | None:
        """``(weights (..., P), profiles (P, n))`` with ``sample = weights @ profiles``."""
        return None

    def _sample(self, dt: float, n: int) -> Array:
        """``(..., n)`` means over the steps of ``dt`` ms."""
        weights, profiles = self._factors(dt, n)
        return weights @ jnp.asarray(profiles, weights.dtype)

    def factors(self, dt: float, t_max: float) -> tuple[Array, Array] | None:
        """The waveform as ``weights (..., P) @ profiles (P, n_steps)``, or ``None``.

        A population of steps, pulses, ramps or sines shares P time profiles and
        differs only in its weights, so a simulation can stream ``profiles`` (P values
        per step) instead of an ``(N, n_steps)`` array. Noise and sampled data are not
        separable and give ``None``.

        Args:
            dt: step, ms.
            t_max: duration, ms.
        """
        out = self._host_factors(dt, t_max)
        if out is None:
            return None
        weights, profiles = out
        return weights, jnp.asarray(profiles, weights.dtype)

    def _host_factors(self, dt: float, t_max: float) -> tuple[Array, np.ndarray] | None:
        """:meth:`factors` with ``profiles`` left a float64 NumPy array (no transfer)."""

        def make() -> tuple[Array, np.ndarray] | None:
            out = self._factors(float(dt), n_steps(dt, t_max))
            if out is not None:
                check_finite("stimulus weights", out[0])
            return out

        return self._memo(("factors", float(dt), float(t_max)), make)

    def _memo(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """``make()``, kept per ``key`` on this (immutable) stimulus unless it holds traced
        values: a sweep that passes the same stimulus again skips rebuilding its
        profiles (~0.1 ms of a one-neuron call)."""
        cache = self.__dict__.setdefault("_memo_cache", {})  # frozen: no __setattr__
        key = (*key, jax.dtypes.canonicalize_dtype(np.float64))  # x64 on or off
        if key in cache:
            return cache[key]
        out = make()
        if is_concrete(out):
            if len(cache) >= 16:
                cache.clear()
            cache[key] = out
        return out

    def sample(self, dt: float, t_max: float) -> Array:
        """The waveform on the grid: ``(..., n_steps)`` uA/cm2, value k over [k dt, (k+1) dt).

        Args:
            dt: step, ms.
            t_max: duration, ms (``floor(t_max / dt)`` steps).
        """
        out = self._sample(float(dt), n_steps(dt, t_max))
        check_finite("stimulus", out)
        return out

    def __add__(self, other: Stimulus) -> Stimulus:
        if not isinstance(other, Stimulus):
            return NotImplemented
        return _Sum((self, other))


@dataclasses.dataclass(frozen=True)
class _Sum(Stimulus):
    parts: tuple[Stimulus, ...]

    def _factors(self, dt: float, n: int) -> tuple[Array, np.ndarray] | None:
        factors = [part._factors(dt, n) for part in self.parts]
        if any(f is None for f in factors):
            return None
        batch = np.broadcast_shapes(*(w.shape[:-1] for w, _ in factors))
        dtype = jnp.result_type(*(w for w, _ in factors))
        weights = [jnp.broadcast_to(w, batch + w.shape[-1:]).astype(dtype) for w, _ in factors]
        return jnp.concatenate(weights, axis=-1), np.concatenate([p for _, p in factors])

    def _sample(self, dt: float, n: int) -> Array:
        if self._factors(dt, n) is not None:
            return super()._sample(dt, n)
        out = self.parts[0]._sample(dt, n)
        for part in self.parts[1:]:
            out = out + part._sample(dt, n)
        return out


def _check_times(**times: Any) -> None:
    for name, value in times.items():
        arr = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite times in ms; got {value!r}")


def _amplitude(name: str, value: ArrayLike) -> Array:
    if isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=np.float64)
    if is_concrete(value):
        check_finite(name, value)
    return jnp.asarray(value, dtype=jnp.result_type(value, float))


@dataclasses.dataclass(frozen=True)
class _Boxes(Stimulus):
    """Sum of rectangular pulses ``amplitudes[..., p]`` on ``[starts[p], stops[p])``."""

    amplitudes: ArrayLike
    starts: np.ndarray
    stops: np.ndarray

    def _factors(self, dt: float, n: int) -> tuple[Array, np.ndarray]:
        return jnp.asarray(self.amplitudes), _overlap(self.starts, self.stops, dt, n)[0]


def step_current(amplitude: ArrayLike, start: float = 0.0, stop: float | None = None) -> Stimulus:
    """A current step of ``amplitude`` uA/cm2 on ``[start, stop)`` ms.

    Args:
        amplitude: uA/cm2; a 1-D array gives one amplitude per neuron.
        start: onset, ms.
        stop: offset, ms; ``None`` keeps the step on to the end.
    """
    stop_ = np.inf if stop is None else stop
    _check_times(start=start)
    if stop is not None:
        _check_times(stop=stop)
    if stop_ < start:
        raise ValueError(f"stop must be >= start = {start} ms; got {stop!r}")
    amp = _amplitude("amplitude", amplitude)
    return _Boxes(amp[..., None], np.array([start], float), np.array([stop_], float))


def pulse_train(starts: ArrayLike, widths: ArrayLike, amplitudes: ArrayLike) -> Stimulus:
    """Rectangular pulses, each with its own onset, width and amplitude.

    ``starts``, ``widths`` (ms) and ``amplitudes`` (uA/cm2) broadcast against each
    other along the pulse axis (the last axis of ``amplitudes``; leading axes of
    ``amplitudes`` are a population). Overlapping pulses add.

    Example: ``pulse_train([0, 10], 1.0, [150, 50])``: 150 uA/cm2 for 0-1 ms, 50 for 10-11 ms.
    """
    starts_ = np.atleast_1d(np.asarray(starts, dtype=np.float64))
    widths_ = np.atleast_1d(np.asarray(widths, dtype=np.float64))
    _check_times(starts=starts_, widths=widths_)
    if np.any(widths_ <= 0):
        raise ValueError(f"widths must be > 0 ms; got {widths!r}")
    amp = _amplitude("amplitudes", amplitudes)
    n_p = np.broadcast_shapes(starts_.shape, widths_.shape, amp.shape[-1:] if amp.ndim else (1,))
    starts_, widths_ = np.broadcast_to(starts_, n_p), np.broadcast_to(widths_, n_p)
    amp = jnp.broadcast_to(amp if amp.ndim else amp[None], amp.shape[:-1] + n_p)
    return _Boxes(amp, starts_.copy(), starts_ + widths_)  # not a view of the caller's array


@dataclasses.dataclass(frozen=True)
class _Ramp(Stimulus):
    start: float
    stop: float
    amplitude_from: Array
    amplitude_to: Array

    def _factors(self, dt: float, n: int) -> tuple[Array, np.ndarray]:
        frac, lo, hi = _overlap(self.start, self.stop, dt, n)
        s, e = _grid_positions(self.start, dt), _grid_positions(self.stop, dt)
        # mean of a linear function over the overlap = its value at the overlap's middle
        pos = np.where(frac > 0, (0.5 * (lo + hi) - s) / (e - s), 0.0)
        a0, a1 = jnp.broadcast_arrays(self.amplitude_from, self.amplitude_to)
        return jnp.stack([a0, a1 - a0], axis=-1), np.stack([frac, pos * frac])


def ramp(start: float, stop: float, amplitude_to: ArrayLike, amplitude_from: ArrayLike = 0.0) -> Stimulus:
    """A linear ramp from ``amplitude_from`` at ``start`` to ``amplitude_to`` at ``stop``.

    Zero outside ``[start, stop)`` ms; amplitudes in uA/cm2 (arrays give a population).
    """
    _check_times(start=start, stop=stop)
    if not stop > start:
        raise ValueError(f"stop must be > start = {start} ms; got {stop!r}")
    return _Ramp(
        float(start), float(stop), _amplitude("amplitude_from", amplitude_from),
        _amplitude("amplitude_to", amplitude_to),
    )


@dataclasses.dataclass(frozen=True)
class _Sine(Stimulus):
    amplitude: Array
    frequency: float
    phase: float
    offset: Array
    start: float
    stop: float

    def _factors(self, dt: float, n: int) -> tuple[Array, np.ndarray]:
        frac, lo, hi = _overlap(self.start, self.stop, dt, n)
        w = 2 * np.pi * self.frequency * 1e-3 * dt  # rad per step
        if w == 0:
            mean_sin = np.sin(self.phase) * frac
        else:  # exact mean of sin(w k + phase) over the covered part of each step
            mean_sin = (np.cos(w * lo + self.phase) - np.cos(w * hi + self.phase)) / w
        amp, offset = jnp.broadcast_arrays(self.amplitude, self.offset)
        return jnp.stack([amp, offset], axis=-1), np.stack([mean_sin, frac])


def sine(
    amplitude: ArrayLike,
    frequency: float,
    *,
    phase: float = 0.0,
    offset: ArrayLike = 0.0,
    start: float = 0.0,
    stop: float | None = None,
) -> Stimulus:
    """``offset + amplitude * sin(2 pi frequency t + phase)`` on ``[start, stop)``.

    Args:
        amplitude: uA/cm2 (array: a population).
        frequency: Hz (t is in ms, so this is ``frequency / 1000`` cycles per ms).
        phase: radians at ``t = 0``.
        offset: uA/cm2 added while the sine is on.
        start, stop: ms; ``stop=None`` runs to the end.
    """
    _check_times(frequency=frequency, phase=phase, start=start)
    stop_ = np.inf if stop is None else float(stop)
    if stop_ <= start:
        raise ValueError(f"stop must be > start = {start} ms; got {stop!r}")
    return _Sine(
        _amplitude("amplitude", amplitude), float(frequency), float(phase),
        _amplitude("offset", offset), float(start), stop_,
    )


def _cascade(order: int, e: float) -> tuple[np.ndarray, np.ndarray]:
    """Transition matrix F and noise gain G of ``order`` first-order low-pass stages.

    Stage 1 is an exact unit-variance OU update; each later stage follows the one
    before it, held over the step (exact for that input).
    """
    f = np.zeros((order, order))
    f[0, 0] = e
    for i in range(1, order):
        f[i, i] = e
        f[i] = f[i] + (1 - e) * f[i - 1]
    g = np.zeros(order)
    g[0] = np.sqrt(1 - e * e)
    for i in range(1, order):
        g[i] = (1 - e) * g[i - 1]
    return f, g


@dataclasses.dataclass(frozen=True)
class _Noise(Stimulus):
    key: Array
    mean: Array
    sigma: Array
    tau: float
    order: int
    shape: tuple[int, ...]

    def _sample(self, dt: float, n: int) -> Array:
        e = math.exp(-dt / self.tau)
        f, g = _cascade(self.order, e)
        # stationary covariance: P = F P F^T + g g^T
        p = np.linalg.solve(np.eye(self.order**2) - np.kron(f, f), np.outer(g, g).ravel())
        p = p.reshape(self.order, self.order)
        chol = np.linalg.cholesky(p + 1e-300 * np.eye(self.order))
        dtype = self.sigma.dtype
        k0, k1 = jax.random.split(self.key)
        z0 = jnp.asarray(chol, dtype) @ jax.random.normal(k0, (self.order, *self.shape), dtype).reshape(self.order, -1)
        w = jax.random.normal(k1, (n, *self.shape), dtype).reshape(n, -1)
        fj, gj = jnp.asarray(f, dtype), jnp.asarray(g, dtype)

        def advance(z: Array, wk: Array) -> tuple[Array, Array]:
            return fj @ z + gj[:, None] * wk[None], z[-1]

        _, out = jax.lax.scan(advance, z0, w)  # (n, prod(shape)), stage `order` held over each step
        out = out.T.reshape(*self.shape, n) / math.sqrt(p[-1, -1])
        return self.mean[..., None] + self.sigma[..., None] * out


def filtered_noise(
    key: Array,
    sigma: ArrayLike,
    tau: float,
    *,
    order: int = 2,
    mean: ArrayLike = 0.0,
    shape: tuple[int, ...] = (),
) -> Stimulus:
    """Gaussian noise low-pass filtered ``order`` times with time constant ``tau``.

    ``order=1`` is an Ornstein-Uhlenbeck process; ``order=2`` the "Gaussian noise
    filtered twice" of the classic tutorials. The process starts stationary and its
    standard deviation on the grid is exactly ``sigma``. Reproducible for a given key
    and ``dt``.

    Args:
        key: a ``jax.random`` PRNG key.
        sigma: stationary standard deviation, uA/cm2 (>= 0).
        tau: filter time constant, ms.
        order: number of cascaded first-order filters (1-4).
        mean: uA/cm2.
        shape: population shape, e.g. ``(1000,)`` for independent noise per neuron.

    References:
        Gillespie (1996), Phys. Rev. E 54:2084 (exact OU update).
    """
    check_positive_scalar("tau", tau, "ms")
    if order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4; got {order!r}")
    sig = _amplitude("sigma", sigma)
    if is_concrete(sig) and np.any(np.asarray(sig) < 0):
        raise ValueError(f"sigma must be >= 0 uA/cm2; got {sigma!r}")
    return _Noise(key, _amplitude("mean", mean), sig, float(tau), order, tuple(shape))


def ou_noise(key: Array, sigma: ArrayLike, tau: float, *, mean: ArrayLike = 0.0, shape: tuple[int, ...] = ()) -> Stimulus:
    """Ornstein-Uhlenbeck current noise (``filtered_noise`` with ``order=1``)."""
    return filtered_noise(key, sigma, tau, order=1, mean=mean, shape=shape)


@dataclasses.dataclass(frozen=True)
class _Sampled(Stimulus):
    values: Array
    sample_dt: float
    t0: float

    def _sample(self, dt: float, n: int) -> Array:
        m = self.values.shape[-1]
        t_end = self.t0 + m * self.sample_dt
        if n * dt > t_end * (1 + _SNAP) + 1e-12:
            raise ValueError(
                f"sampled stimulus ends at {t_end} ms, before the run's end at {n * dt} ms"
            )
        # exact means of the zero-order-hold signal: each step overlaps at most
        # ceil(dt / sample_dt) + 1 samples, so gather that band (O(n + m) memory)
        width = int(math.ceil(dt / self.sample_dt)) + 1
        t_lo = np.arange(n, dtype=np.float64) * dt
        j0 = np.clip(np.floor((t_lo - self.t0) / self.sample_dt), 0, m - 1).astype(np.int64)
        idx = j0[:, None] + np.arange(width)[None, :]
        s_lo = self.t0 + idx * self.sample_dt
        w = np.clip(np.minimum(t_lo[:, None] + dt, s_lo + self.sample_dt) - np.maximum(t_lo[:, None], s_lo), 0.0, None)
        w = np.where((idx < m) & (w > _SNAP * dt), w / dt, 0.0)
        taken = jnp.take(self.values, jnp.asarray(np.minimum(idx, m - 1)), axis=-1)  # (..., n, width)
        return jnp.sum(taken * jnp.asarray(w, dtype=self.values.dtype), axis=-1)


def sampled(values: ArrayLike, sample_dt: float, *, t0: float = 0.0) -> Stimulus:
    """A current sampled every ``sample_dt`` ms, resampled to the simulation grid.

    ``values[..., j]`` (uA/cm2) is taken to hold over ``[t0 + j sample_dt, t0 + (j+1)
    sample_dt)``, the same convention as ``simulate``. On another grid each step gets
    the exact mean of that held signal (before ``t0`` the current is zero).

    Raises:
        ValueError: NaN/inf in ``values``, or a run longer than the data.
    """
    check_positive_scalar("sample_dt", sample_dt, "ms")
    _check_times(t0=t0)
    vals = _amplitude("values", values)
    if vals.ndim == 0:
        raise ValueError("values must have a time axis; got a scalar")
    return _Sampled(vals, float(sample_dt), float(t0))
