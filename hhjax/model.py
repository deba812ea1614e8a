"""The single-compartment conductance-based model, its state and right-hand side.

Units throughout: mV, ms, uF/cm2, mS/cm2, uA/cm2, so that ``I / c_m`` is mV/ms.

The membrane equation is ``c_m dV/dt = i_ext - sum_c g_c * prod(x ** p) * (V - e_c)``,
and every gate obeys ``dx/dt = a(V) - s(V) x`` (see :mod:`hhjax.channels`). At fixed
gates the membrane equation is linear in V, ``dV/dt = A - B V``; at fixed V every gate
equation is linear in x. Exponential Euler integrates both exactly over a step.

References:
    Hodgkin & Huxley (1952), J. Physiol. 117:500-544.
    Dayan & Abbott (2001), Theoretical Neuroscience, ch. 5-6.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .channels import Channel
from .rates import ArrayLike, _pytree, q10_factor

Array = jax.Array

__all__ = [
    "Model",
    "State",
    "channel_currents",
    "derivatives",
    "membrane_linear",
    "resting_state",
    "steady_state",
]

_MODEL_FIELDS = ("c_m", "temperature", "q10", "t_ref")


@dataclasses.dataclass(frozen=True)
class Model:
    """A point neuron: membrane capacitance, ion channels and temperature.

    Every number is a pytree leaf (fit it, vmap it, differentiate it); the channel and
    gate names, gate powers and rate forms are static structure. A leaf with a leading
    axis of length N makes the model a population of N parameter sets.

    Attributes:
        channels: ion channels by name (``"na"``, ``"k"``, ``"leak"``, ``"a"``, ...).
        c_m: membrane capacitance, uF/cm2 (> 0).
        temperature: degrees Celsius.
        q10: rate factor per 10 degrees C applied to every gate (1 disables it).
        t_ref: temperature (degrees C) at which the rates hold unscaled.
    """

    channels: Mapping[str, Channel]
    c_m: ArrayLike = 1.0
    temperature: ArrayLike = 6.3
    q10: ArrayLike = 3.0
    t_ref: ArrayLike = 6.3

    def __post_init__(self) -> None:
        for name, channel in self.channels.items():
            if not isinstance(channel, Channel):
                raise TypeError(f"channels[{name!r}] must be a Channel; got {type(channel).__name__}")
            if not name.isidentifier() or name in _MODEL_FIELDS:
                raise ValueError(
                    f"channel name {name!r} must be an identifier other than {_MODEL_FIELDS}"
                )
            for gname, gate in channel.gates.items():
                if not gname.isidentifier():
                    raise ValueError(f"gate name {gname!r} of channel {name!r} must be an identifier")
                if not isinstance(gate.power, int) or gate.power < 1:
                    raise ValueError(
                        f"power of gate {name}.{gname} must be a positive int; got {gate.power!r}"
                    )

    @property
    def gate_names(self) -> tuple[str, ...]:
        """State keys of the gates, ``"channel.gate"``, in state order."""
        return tuple(f"{c}.{g}" for c, ch in self.channels.items() for g in ch.gates)


_pytree(Model)


class State(NamedTuple):
    """The dynamic state: membrane potential ``v`` (mV) and each gate (in [0, 1]).

    ``gates`` is keyed ``"channel.gate"`` (e.g. ``"na.m"``).
    """

    v: Array
    gates: dict[str, Array]


def temperature_factor(model: Model) -> Array:
    """``phi = q10 ** ((temperature - t_ref) / 10)``, multiplying every gate rate."""
    return q10_factor(model.temperature, model.q10, model.t_ref)


def gate_names(model: Model) -> tuple[str, ...]:
    """Every gate's name, ``"channel.gate"``, in the model's order."""
    return tuple(f"{c}.{g}" for c, ch in model.channels.items() for g in ch.gates)


def gate_linear(model: Model, v: ArrayLike) -> dict[str, tuple[Array, Array]]:
    """``(a, s)`` of every gate's ``dx/dt = a - s x`` at potential ``v`` (mV), 1/ms,
    in :func:`gate_names` order."""
    phi = temperature_factor(model)
    gates = (gate for ch in model.channels.values() for gate in ch.gates.values())
    return {name: gate.linear(v, phi) for name, gate in zip(gate_names(model), gates, strict=True)}


def _channel_gates(state: State, channel_name: str) -> dict[str, Array]:
    prefix = channel_name + "."
    return {k[len(prefix):]: x for k, x in state.gates.items() if k.startswith(prefix)}


def _conductances(model: Model, state: State) -> dict[str, Array]:
    """Effective conductance of every channel (mS/cm2) in ``state``."""
    return {
        name: ch.g * ch.open_fraction(_channel_gates(state, name))
        for name, ch in model.channels.items()
    }


def channel_currents(model: Model, state: State) -> dict[str, Array]:
    """Each channel's current density (uA/cm2, outward positive) in ``state``."""
    g = _conductances(model, state)
    return {name: g[name] * (state.v - ch.e_rev) for name, ch in model.channels.items()}


def membrane_linear(model: Model, state: State, i_ext: ArrayLike) -> tuple[Array, Array]:
    """``(A, B)`` with ``dV/dt = A - B V`` at the gates of ``state``.

    Args:
        model: the model.
        state: its state (only the gates are used).
        i_ext: injected current density, uA/cm2 (inward into the cell positive).

    Returns:
        ``A`` in mV/ms and ``B`` (total conductance over capacitance) in 1/ms.
    """
    g = _conductances(model, state)
    g_total = sum(g.values())
    g_e = sum(g[name] * ch.e_rev for name, ch in model.channels.items())
    inv_c = 1.0 / model.c_m  # one division per call, not one per neuron
    return (g_e + i_ext) * inv_c, g_total * inv_c


def derivatives(model: Model, state: State, i_ext: ArrayLike) -> State:
    """The right-hand side: ``dV/dt`` (mV/ms) and every ``dx/dt`` (1/ms)."""
    a_v, b_v = membrane_linear(model, state, i_ext)
    lin = gate_linear(model, state.v)
    return State(
        v=a_v - b_v * state.v,
        gates={k: a - s * state.gates[k] for k, (a, s) in lin.items()},
    )


def steady_state(model: Model, v: ArrayLike) -> State:
    """Every gate at its steady state ``x_inf(v)``, with the membrane at ``v`` (mV)."""
    v = jnp.asarray(v, dtype=jnp.result_type(v, float))
    return State(v=v, gates={k: a / s for k, (a, s) in gate_linear(model, v).items()})


def _steady_dvdt(model: Model, v: Array, i_ext: ArrayLike) -> Array:
    """dV/dt (mV/ms) with every gate at steady state: zero at a fixed point."""
    a_v, b_v = membrane_linear(model, steady_state(model, v), i_ext)
    return a_v - b_v * v


# Fixed-point search: dV/dt on a grid of _GRID points over [-150, 150] mV (covers
# absolute, -65 mV rest, and 1952-convention, 0 mV rest, presets alike) brackets the
# lowest root to 0.5 mV; bisection then halves the bracket to below V's resolution.
_V_RANGE = (-150.0, 150.0)
_GRID = 601
_CELL = (_V_RANGE[1] - _V_RANGE[0]) / (_GRID - 1)  # mV, exact in binary (0.5)


def _bisections(dtype: Any) -> int:
    """Halvings of a grid cell down to ``64 * eps`` mV, about one ulp of V at 65 mV
    (16 in float32, 45 in float64)."""
    return int(np.ceil(np.log2(_CELL / (64.0 * float(jnp.finfo(dtype).eps)))))


@jax.custom_jvp
def _resting_v_single(model: Model, i_ext: ArrayLike) -> Array:
    """The most hyperpolarised root of dV/dt with gates at steady state, mV (NaN if none).

    The grid is walked upward one point at a time until dV/dt changes sign (~170
    evaluations for a -65 mV rest, at most 601), so every evaluation is one small loop
    body: a single neuron's search is a few microseconds inside a compiled loop, and a
    population's stops when its last neuron found its bracket.

    Derivatives come from the implicit function theorem (the JVP rule below), so the
    search is never differentiated, and a forward run compiles the rate functions only
    for the walk and the bisection (a Newton step for the derivative compiled them
    twice more: ~0.2 s of the first call).
    """
    dtype = jnp.result_type(float, i_ext)

    def f(v: Array) -> Array:
        return _steady_dvdt(model, v, i_ext)

    def grid(k: Array) -> Array:  # grid point k, mV (exact: a multiple of 0.5)
        return _V_RANGE[0] + k.astype(dtype) * _CELL

    def unchanged(walk: tuple[Array, Array, Array]) -> Array:
        k, f_prev, f_k = walk
        return (k < _GRID - 1) & (jnp.sign(f_prev) == jnp.sign(f_k))

    def advance(walk: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        k, _, f_k = walk
        return k + 1, f_k, f(grid(k + 1))

    f_0 = f(grid(jnp.int32(0)))
    k, f_lo, f_k = jax.lax.while_loop(unchanged, advance, (jnp.int32(0), f_0, f_0))
    found = jnp.sign(f_lo) != jnp.sign(f_k)  # (k - 1, k) brackets the lowest root

    def bisect(_: int, bracket: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        lo, hi, f_lo = bracket
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        same = jnp.sign(f_mid) == jnp.sign(f_lo)
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid), jnp.where(same, f_mid, f_lo)

    lo, hi, _ = jax.lax.fori_loop(0, _bisections(dtype), bisect, (grid(k - 1), grid(k), f_lo))
    return jnp.where(found, 0.5 * (lo + hi), jnp.nan)


@_resting_v_single.defjvp
def _resting_v_jvp(
    primals: tuple[Model, ArrayLike], tangents: tuple[Any, Any]
) -> tuple[Array, Array]:
    """Implicit-function derivative: dv* = -(df/dtheta . dtheta) / (df/dv) at the root."""
    model, i_ext = primals
    v = _resting_v_single(model, i_ext)
    _, f_v = jax.jvp(lambda x: _steady_dvdt(model, x, i_ext), (v,), (jnp.ones_like(v),))
    _, f_dot = jax.jvp(lambda m, i: _steady_dvdt(m, v, i), primals, tangents)
    return v, -f_dot / f_v


def population_axes(model: Model) -> tuple[Any, int | None]:
    """``in_axes`` for ``jax.vmap`` over the model and the population size (or None).

    A leaf with one dimension carries the population axis; scalars are shared.

    Raises:
        ValueError: a leaf has more than one dimension, or two population leaves
            disagree in length.
    """
    paths_leaves = jax.tree_util.tree_flatten_with_path(model)[0]
    sizes: dict[int, str] = {}
    for path, leaf in paths_leaves:
        nd = np.ndim(leaf)
        if nd > 1:
            raise ValueError(
                f"model parameter {_path_str(path)} must be a scalar or 1-D population "
                f"array; got shape {np.shape(leaf)}"
            )
        if nd == 1:
            sizes.setdefault(int(np.shape(leaf)[0]), _path_str(path))
    if len(sizes) > 1:
        detail = ", ".join(f"{p} has {n}" for n, p in sizes.items())
        raise ValueError(f"model population axes disagree in length: {detail}")
    axes = jax.tree_util.tree_map(lambda x: 0 if np.ndim(x) == 1 else None, model)
    return axes, (next(iter(sizes)) if sizes else None)


def _path_str(path: tuple[Any, ...]) -> str:
    parts = []
    for key in path:
        name = getattr(key, "name", getattr(key, "key", getattr(key, "idx", key)))
        if name in ("channels", "gates"):
            continue
        parts.append(str(name))
    return ".".join(parts)


_resting_v_jit = jax.jit(_resting_v_single)


@jax.jit
def _resting_v_population(model: Model, i_ext: ArrayLike) -> Array:
    axes, _ = population_axes(model)  # from static shapes
    i_axis = 0 if jnp.ndim(i_ext) == 1 else None
    return jax.vmap(_resting_v_single, in_axes=(axes, i_axis))(model, i_ext)


def resting_state(model: Model, i_ext: ArrayLike = 0.0) -> State:
    """The fixed point of the model under a constant current, gates at steady state.

    The fixed point is the root of dV/dt with every gate at its steady state; where
    several exist, the most hyperpolarised is returned. The result is differentiable
    with respect to every parameter (implicit-function derivative). A population
    model (leaves with a leading axis) gives a population of states.

    Args:
        model: the model.
        i_ext: constant injected current density, uA/cm2.

    Returns:
        The resting :class:`State` (V in mV).

    Raises:
        ValueError: no fixed point in [-150, 150] mV (only checked outside tracing).

    References:
        For ``squid()``: V_rest = -64.996 mV (the textbook -65 mV is rounded).
    """
    _, n = population_axes(model)
    if np.ndim(i_ext) > 1:
        raise ValueError(f"i_ext must be a scalar or 1-D; got shape {np.shape(i_ext)}")
    if n is None and np.ndim(i_ext) == 0:
        v = _resting_v_jit(model, i_ext)
    else:
        v = _resting_v_population(model, i_ext)
    if not isinstance(v, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(v))):
        raise ValueError(
            "resting_state: found no fixed point (dV/dt = 0 with gates at steady state) "
            "between -150 and 150 mV; check the parameters and i_ext"
        )
    return steady_state(model, v)
