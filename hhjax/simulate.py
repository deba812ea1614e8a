"""The simulation driver: one ``jax.lax.scan`` over the stimulus, and ``Trace``.

``simulate`` validates its inputs (before anything compiles), moves the population
axis, if any, to the outside with one ``jax.vmap``, and runs a jit-compiled scan whose
per-step input is the stimulus. Recording every k-th step is a nested scan, so memory
follows what is recorded rather than the number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, check_positive_scalar, is_concrete
from .integrators import get_method
from .model import (
    Model,
    State,
    _resting_v_single,
    channel_currents,
    population_axes,
    steady_state,
)
from .params import validate_model
from .stimulus import Stimulus, n_steps

Array = jax.Array

__all__ = ["RECORDABLE", "DivergenceError", "Trace", "simulate"]

RECORDABLE = ("v", "gates", "currents")
V_LIMIT = 1e4  # mV; |V| beyond this (or NaN/inf) means the integration diverged


class DivergenceError(ValueError):
    """The integration diverged (V non-finite or beyond 1e4 mV): the step is unstable."""


class Trace(NamedTuple):
    """The result of :func:`simulate`.

    Attributes:
        t: recorded times, ms, starting at 0 (shape ``(n_rec,)``).
        v: membrane potential, mV, ``(..., n_rec)`` (``None`` if not recorded).
        gates: each gate (``"na.m"``, ...), ``(..., n_rec)``, or ``None``.
        currents: each channel's current density, uA/cm2 (outward positive),
            ``(..., n_rec)``, or ``None``.
        final: the state after the last step (pass as ``state0`` to continue a run).
        v_max: the largest |V| (mV) reached in the run, ``(...)``.
    """

    t: Array
    v: Array | None
    gates: dict[str, Array] | None
    currents: dict[str, Array] | None
    final: State
    v_max: Array


def _observe(model: Model, state: State, record: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "v" in record:
        out["v"] = state.v
    if "gates" in record:
        out["gates"] = state.gates
    if "currents" in record:
        out["currents"] = channel_currents(model, state)
    return out


def _run_single(
    model: Model,
    stim: Array,
    state0: State | None,
    dt: Array,
    method: str,
    record: tuple[str, ...],
    every: int,
    checkpoint: bool = False,
) -> tuple[dict[str, Any], State, Array]:
    """Simulate one neuron: returns (records incl. t = 0, final state, max |V|)."""
    step = get_method(method)
    if state0 is None:
        state0 = steady_state(model, _resting_v_single(model, 0.0).astype(stim.dtype))

    def one(carry: tuple[State, Array], i_ext: Array) -> tuple[tuple[State, Array], None]:
        state, v_max = carry
        state = step(model, state, i_ext, dt)
        return (state, jnp.maximum(v_max, jnp.abs(state.v))), None

    def block(carry: tuple[State, Array], i_block: Array) -> tuple[tuple[State, Array], Any]:
        if every == 1:
            carry, _ = one(carry, i_block)
        else:
            carry, _ = jax.lax.scan(one, carry, i_block)
        return carry, _observe(model, carry[0], record)

    n = stim.shape[-1]
    units = n // every  # recording units of `every` steps, each ending in a sample
    carry = (state0, jnp.abs(state0.v))
    head = stim[: units * every].reshape(units, every)

    def scan_units(carry: tuple[State, Array], i_units: Array) -> tuple[tuple[State, Array], Any]:
        return jax.lax.scan(block, carry, i_units[:, 0] if every == 1 else i_units)

    if checkpoint and units > 1:
        # sqrt(T) memory for gradients: save the carry only at group boundaries and
        # recompute each group of ~sqrt(units) units in the backward pass.
        group = max(1, int(round(units**0.5)))
        n_groups = units // group
        grouped = head[: n_groups * group].reshape(n_groups, group, every)
        carry, recs = jax.lax.scan(jax.checkpoint(scan_units), carry, grouped)
        recs = jax.tree_util.tree_map(lambda r: r.reshape(n_groups * group, *r.shape[2:]), recs)
        if n_groups * group < units:
            carry, rest = jax.checkpoint(scan_units)(carry, head[n_groups * group:])
            recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), recs, rest)
    else:
        carry, recs = scan_units(carry, head)
    if units * every < n:  # remainder steps after the last recorded sample
        carry, _ = jax.lax.scan(one, carry, stim[units * every:])
    first = _observe(model, state0, record)
    recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)
    return recs, carry[0], carry[1]


def _run(
    model: Model, stim: Array, state0: State | None, dt: Array, method: str,
    record: tuple[str, ...], every: int, checkpoint: bool = False,
) -> tuple[dict[str, Any], State, Array]:
    model_axes, n_model = population_axes(model)
    stim_axis = 0 if stim.ndim == 2 else None
    state_axes = None if state0 is None else jax.tree_util.tree_map(
        lambda x: 0 if x.ndim == 1 else None, state0
    )
    if n_model is None and stim_axis is None and not _batched(state0):
        return _run_single(model, stim, state0, dt, method, record, every, checkpoint)
    fn = jax.vmap(
        _run_single, in_axes=(model_axes, stim_axis, state_axes, None, None, None, None, None)
    )
    return fn(model, stim, state0, dt, method, record, every, checkpoint)


def _batched(state0: State | None) -> bool:
    return state0 is not None and any(np.ndim(x) == 1 for x in jax.tree_util.tree_leaves(state0))


_run_jit = jax.jit(_run, static_argnames=("method", "record", "every", "checkpoint"))


def _as_stimulus(stimulus: Any, dt: float, t_max: float | None) -> Array:
    if isinstance(stimulus, Stimulus):
        if t_max is None:
            raise ValueError("t_max (ms) is required when stimulus is a Stimulus object")
        return stimulus.sample(dt, t_max)
    if not hasattr(stimulus, "shape") and not isinstance(stimulus, (int, float, list, tuple)):
        raise TypeError(
            f"stimulus must be an array of currents (uA/cm2) or a hhjax.stimulus object; "
            f"got {type(stimulus).__name__}"
        )
    stim = jnp.asarray(stimulus)
    if not jnp.issubdtype(stim.dtype, jnp.floating):
        stim = stim.astype(jnp.result_type(float))
    if stim.ndim == 0:
        if t_max is None:
            raise ValueError("a constant (scalar) stimulus needs t_max (ms)")
        return jnp.full((n_steps(dt, t_max),), stim)
    if stim.ndim > 2:
        raise ValueError(
            f"stimulus must be 1-D (n_steps,) or 2-D (n_neurons, n_steps); got shape {stim.shape}"
        )
    if t_max is not None and is_concrete(dt) and n_steps(dt, t_max) != stim.shape[-1]:
        raise ValueError(
            f"t_max = {t_max} ms at dt = {dt} ms means {n_steps(dt, t_max)} steps, but the "
            f"stimulus array has {stim.shape[-1]}; leave t_max out for an array stimulus"
        )
    return stim


def _check_state0(model: Model, state0: State) -> State:
    if not isinstance(state0, State):
        raise TypeError(f"state0 must be a hhjax.State; got {type(state0).__name__}")
    expected = set(model.gate_names)
    if set(state0.gates) != expected:
        raise ValueError(
            f"state0.gates must have keys {sorted(expected)}; got {sorted(state0.gates)}"
        )
    for name, x in [("v", state0.v), *state0.gates.items()]:
        if np.ndim(x) > 1:
            raise ValueError(f"state0 {name} must be a scalar or 1-D; got shape {np.shape(x)}")
        check_finite(f"state0 {name}", x)
    return state0


def simulate(
    model: Model,
    stimulus: Any,
    *,
    dt: float,
    t_max: float | None = None,
    method: str = "exp_euler",
    record: str | Sequence[str] = ("v",),
    every: int = 1,
    state0: State | None = None,
    check: bool = True,
    checkpoint: bool = False,
) -> Trace:
    """Simulate a neuron, or a population, under an injected current.

    Args:
        model: the model (a population if some leaves have a leading axis of length N).
        stimulus: current density in uA/cm2 on the time grid: an array ``(n_steps,)``
            or ``(N, n_steps)`` whose value k is held constant over ``[k dt, (k+1) dt)``,
            a scalar (constant current, needs ``t_max``), or a
            :class:`hhjax.stimulus.Stimulus` (needs ``t_max``).
        dt: step, ms (> 0).
        t_max: duration, ms, for stimulus objects and scalars.
        method: ``"exp_euler"`` (default), ``"rk4"`` or ``"euler"``.
        record: any of ``"v"``, ``"gates"``, ``"currents"``.
        every: record every ``every``-th step (memory ~ n_steps / every).
        state0: initial state; default: the resting state at zero current.
        check: raise :class:`DivergenceError` if the run diverged (only outside tracing).
        checkpoint: rematerialise the scan in ~sqrt(n_steps) groups under ``jax.grad``,
            so gradient memory grows ~sqrt(T) instead of T (costs one extra forward pass).

    Returns:
        A :class:`Trace`; ``t`` starts at 0 and includes the initial state, so
        ``n_rec = n_steps // every + 1``. Population outputs have the population axis
        first. Outputs have the stimulus's floating dtype (float32 unless x64 is on).

    Raises:
        ValueError: bad ``dt``/``t_max``, NaN/inf in the stimulus or parameters,
            negative conductance or capacitance, mismatched population shapes,
            unknown method or record name (all before compiling).
        DivergenceError: the integration blew up (reduce ``dt`` or use exp_euler).

    Example:
        >>> import hhjax
        >>> trace = hhjax.simulate(hhjax.presets.squid(), hhjax.stimulus.step_current(10.0, 10.0),
        ...                        dt=0.025, t_max=50.0)
        >>> trace.v.shape
        (2001,)
    """
    get_method(method)
    record = (record,) if isinstance(record, str) else tuple(record)
    unknown = [r for r in record if r not in RECORDABLE]
    if unknown or not record:
        raise ValueError(f"record must name some of {RECORDABLE}; got {record!r}")
    if not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every must be an int >= 1 (record every k-th step); got {every!r}")
    if not isinstance(model, Model):
        raise TypeError(f"model must be a hhjax.Model; got {type(model).__name__}")
    check_positive_scalar("dt", dt, "ms")
    stim = _as_stimulus(stimulus, dt, t_max)
    check_finite("stimulus", stim)
    validate_model(model)
    _, n_model = population_axes(model)
    if stim.ndim == 2 and n_model is not None and stim.shape[0] != n_model:
        raise ValueError(
            f"stimulus population ({stim.shape[0]} rows) does not match the model "
            f"population ({n_model} parameter sets)"
        )
    if state0 is not None:
        state0 = _check_state0(model, state0)
        n_state = {np.shape(x)[0] for x in jax.tree_util.tree_leaves(state0) if np.ndim(x) == 1}
        n_other = {n for n in (n_model, stim.shape[0] if stim.ndim == 2 else None) if n}
        if len(n_state | n_other) > 1:
            raise ValueError(
                f"state0 population size {sorted(n_state)} does not match the model/stimulus "
                f"population {sorted(n_other)}"
            )
    if stim.shape[-1] < every:
        raise ValueError(f"every = {every} exceeds the number of steps ({stim.shape[-1]})")

    dtype = stim.dtype
    model = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model)
    if state0 is not None:
        state0 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), state0)
    recs, final, v_max = _run_jit(
        model, stim, state0, jnp.asarray(dt, dtype), method=method, record=record,
        every=every, checkpoint=bool(checkpoint),
    )
    n_rec = stim.shape[-1] // every + 1
    if is_concrete(dt):  # times computed in float64, then rounded once
        t = jnp.asarray(np.arange(n_rec) * (float(dt) * every), dtype)
    else:
        t = jnp.arange(n_rec, dtype=dtype) * (dt * every)
    trace = Trace(
        t=t, v=recs.get("v"), gates=recs.get("gates"), currents=recs.get("currents"),
        final=final, v_max=v_max,
    )
    if check and is_concrete(v_max):
        _check_divergence(trace, method, dt)
    return trace


def _check_divergence(trace: Trace, method: str, dt: float) -> None:
    v_max = np.asarray(trace.v_max)
    bad = ~(np.abs(v_max) <= V_LIMIT)  # also catches NaN
    if not np.any(bad):
        return
    where = ""
    if trace.v is not None:
        v = np.asarray(trace.v).reshape(-1, np.shape(trace.v)[-1])
        blown = ~(np.abs(v) <= V_LIMIT)
        first = int(np.min(np.where(blown.any(axis=1), blown.argmax(axis=1), v.shape[1])))
        if first < v.shape[1]:
            where = f" by t = {float(trace.t[first]):g} ms"
    who = f" in {int(bad.sum())} of {bad.size} neurons" if bad.size > 1 else ""
    raise DivergenceError(
        f"the simulation diverged{where}{who} (|V| > {V_LIMIT:g} mV or NaN) with "
        f"method={method!r}, dt={dt} ms: the step is unstable; use a smaller dt or "
        f"method='exp_euler'"
    )
