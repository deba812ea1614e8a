"""Losses comparing simulated with recorded voltage; all differentiable and batched.

A loss is any callable ``loss(v_model, target) -> scalar`` where ``v_model`` is the
simulated voltage ``(n_sweeps, n_samples)`` (mV) on the recording's grid and ``target``
a :class:`Target` (recorded voltage, weights, dt). Every sweep (protocol) is simulated
in one vmapped call and the loss sees them all at once. Pass your own function of the
same signature to :func:`fitting.fit`. The built-in losses are sums of squares and
carry ``loss.residuals(v_model, target)`` (with ``loss == sum(residuals ** 2)``), which
:func:`fitting.fit` uses for a Levenberg-Marquardt refinement and
:mod:`fitting.uncertainty` for Gauss-Newton errors.

Built in (factories returning such callables):

* :func:`voltage_mse` -- weighted mean squared error, mV2 (windows are zero weights).
* :func:`subthreshold_mse` -- the MSE only where the recording is below a threshold,
  with the model voltage capped there, so spikes do not dominate.
* :func:`spike_loss` -- for rugged landscapes: a differentiable spike-count term
  (:func:`hhjax.analysis.smooth_spike_count`), a spike-timing term (van Rossum distance
  between soft spike trains), and optionally the subthreshold MSE.
* :func:`combine` -- a weighted sum of losses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from hhjax import analysis

Array = jax.Array

__all__ = [
    "Loss",
    "Target",
    "combine",
    "soft_spike_train",
    "spike_loss",
    "subthreshold_mse",
    "van_rossum",
    "voltage_mse",
]


class Target(NamedTuple):
    """What a loss compares with.

    Attributes:
        voltage: recorded membrane potential, mV, ``(n_sweeps, n_samples)``.
        weights: per-sample weights, ``(n_sweeps, n_samples)``.
        dt: sampling interval, ms.
    """

    voltage: Array
    weights: Array
    dt: float


Loss = Callable[[Array, Target], Array]


def _least_squares(residuals: Callable[[Array, Target], Array]) -> Loss:
    """A loss ``sum(residuals ** 2)`` that also exposes ``.residuals`` (for Gauss-Newton)."""

    def loss(v: Array, target: Target) -> Array:
        return jnp.sum(residuals(v, target) ** 2)

    loss.residuals = residuals  # type: ignore[attr-defined]
    return loss


def voltage_mse() -> Loss:
    """Weighted mean squared voltage error, mV2: ``sum w (v - v_data)^2 / sum w``.

    Like every built-in loss it is a sum of squares and carries ``.residuals(v,
    target)``, which :func:`fitting.fit` uses for its Levenberg-Marquardt refinement.
    """

    def residuals(v: Array, target: Target) -> Array:
        w = target.weights / jnp.maximum(jnp.sum(target.weights), 1e-30)
        return jnp.sqrt(w) * (v - target.voltage)

    return _least_squares(residuals)


def subthreshold_mse(threshold: float = -40.0, margin: float = 2.0) -> Loss:
    """MSE (mV2) over samples where the recording is below ``threshold`` (mV).

    The model voltage is softly capped at ``threshold`` (``threshold - softplus``), so a
    model spike where the data is quiet costs a bounded amount, and samples within
    ``margin`` ms after a recorded spike are left out too (the afterhyperpolarisation
    is part of the spike).
    """

    def residuals(v: Array, target: Target) -> Array:
        vd = target.voltage
        above = vd >= threshold
        n_margin = max(1, int(round(margin / target.dt)))
        # dilate "above threshold" forward in time by the margin
        recent = jax.lax.reduce_window(
            above.astype(jnp.float32), -jnp.inf, jax.lax.max, (1, n_margin + 1), (1, 1),
            [(0, 0), (n_margin, 0)],
        ) > 0
        w = target.weights * (~recent)
        w = w / jnp.maximum(jnp.sum(w), 1e-30)
        capped = threshold - jax.nn.softplus(threshold - v)
        return jnp.sqrt(w) * (capped - vd)

    return _least_squares(residuals)


def soft_spike_train(v: Array, threshold: float = 0.0, width: float = 2.0) -> Array:
    """Soft spike indicator per step, ``(..., n - 1)``: positive increments of
    ``sigmoid((v - threshold) / width)``; it sums to :func:`hhjax.analysis.smooth_spike_count`."""
    s = jax.nn.sigmoid((v - threshold) / width)
    return jax.nn.relu(jnp.diff(s, axis=-1))


def _exp_filter(x: Array, decay: Array) -> Array:
    """``y_k = decay * y_{k-1} + x_k`` along the last axis (parallel scan)."""

    def combine_fn(a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
        return a[0] * b[0], b[0] * a[1] + b[1]

    coeff = jnp.broadcast_to(decay, x.shape).astype(x.dtype)
    return jax.lax.associative_scan(combine_fn, (coeff, x), axis=x.ndim - 1)[1]


def van_rossum(train_a: Array, train_b: Array, dt: float, tau: float) -> Array:
    """Van Rossum distance (squared, per sweep) between two (soft) spike trains.

    Each train is filtered by ``exp(-t / tau)`` and the squared difference integrated
    over time divided by ``tau``: one unmatched spike costs 1/2, and two spikes a small
    shift ``d`` apart cost about ``d / (2 tau)`` ... ``(d / tau)^2``-like.

    Args:
        train_a, train_b: ``(..., n)`` spike indicators per step.
        dt: step, ms.
        tau: kernel time constant, ms.

    Returns:
        ``(...)`` distances (dimensionless).

    References:
        van Rossum (2001), Neural Comput. 13:751-763.
    """
    decay = jnp.exp(-dt / tau)
    diff = _exp_filter(train_a - train_b, decay)
    return jnp.sum(diff**2, axis=-1) * dt / tau


def spike_loss(
    *,
    threshold: float = 0.0,
    width: float = 2.0,
    count_weight: float = 1.0,
    timing_weight: float = 1.0,
    tau: float = 10.0,
    subthreshold_weight: float = 0.01,
    subthreshold_below: float = -45.0,
) -> Loss:
    """A spike-aware loss for rugged landscapes (where the MSE jumps as spikes move).

    ``count_weight * mean_sweeps (soft_count - count)^2 + timing_weight * mean_sweeps
    van_rossum + subthreshold_weight * subthreshold_mse``. The data's count is the exact
    crossing count; the model's is :func:`hhjax.analysis.smooth_spike_count` (finite
    gradient through spikes). Samples with zero weight are left out of every term.

    Choose ``threshold`` well above any depolarised plateau the model can reach (0 mV
    for overshooting spikes) and a small ``width``: the soft count credits wiggles near
    threshold with fractions of a spike, and an optimiser will otherwise exploit a
    model that oscillates there (seen on real data with threshold -20 mV, width 2 mV).

    Args:
        threshold: spike threshold, mV.
        width: logistic width of the soft count, mV.
        count_weight: weight of the spike-count term (per spike squared).
        timing_weight: weight of the van Rossum term.
        tau: van Rossum time constant, ms.
        subthreshold_weight: weight of :func:`subthreshold_mse` (mV2).
        subthreshold_below: its threshold, mV.
    """
    sub = subthreshold_mse(subthreshold_below)
    if min(count_weight, timing_weight, subthreshold_weight) < 0:
        raise ValueError("spike_loss weights must be >= 0")

    def residuals(v: Array, target: Target) -> Array:
        # Outside the weighted samples both traces are pinned far below threshold.
        inside = target.weights > 0
        quiet = jnp.asarray(threshold - 100.0, v.dtype)
        v_in = jnp.where(inside, v, quiet)
        vd_in = jnp.where(inside, target.voltage, quiet)
        n_sweeps = v.shape[0] if v.ndim > 1 else 1
        n_model = analysis.smooth_spike_count(v_in, threshold=threshold, width=width)
        n_data = analysis.spike_count(vd_in, threshold=threshold).astype(v.dtype)
        parts = [jnp.sqrt(count_weight / n_sweeps) * (n_model - n_data).reshape(-1)]
        if timing_weight:
            data_train = ((vd_in[..., :-1] < threshold) & (vd_in[..., 1:] >= threshold)).astype(v.dtype)
            model_train = soft_spike_train(v_in, threshold, width)
            filtered = _exp_filter(model_train - data_train, jnp.exp(-target.dt / tau))
            scale = jnp.sqrt(timing_weight * target.dt / tau / n_sweeps)
            parts.append(scale * filtered.reshape(-1))
        if subthreshold_weight:
            parts.append(jnp.sqrt(subthreshold_weight) * sub.residuals(v, target).reshape(-1))
        return jnp.concatenate(parts)

    return _least_squares(residuals)


def combine(*terms: tuple[Loss, float]) -> Loss:
    """``sum weight * loss`` over ``(loss, weight)`` pairs.

    Raises:
        ValueError: no terms or a non-callable term.
    """
    if not terms:
        raise ValueError("combine needs at least one (loss, weight) pair")
    for term in terms:
        if not (isinstance(term, tuple) and len(term) == 2 and callable(term[0])):
            raise ValueError(f"each term must be a (loss, weight) pair; got {term!r}")
        if not term[1] >= 0:
            raise ValueError(f"weights of combined losses must be >= 0; got {term[1]!r}")

    def loss(v: Array, target: Target) -> Array:
        return sum(weight * fn(v, target) for fn, weight in terms)

    if all(hasattr(fn, "residuals") for fn, _ in terms):

        def residuals(v: Array, target: Target) -> Array:
            return jnp.concatenate(
                [jnp.sqrt(weight) * fn.residuals(v, target).reshape(-1) for fn, weight in terms]
            )

        return _least_squares(residuals)
    return loss
