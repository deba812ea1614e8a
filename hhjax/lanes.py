"""One neuron's gates as one vector: the step with every rate form evaluated side by side.

For a population, XLA vectorises the step across neurons. For one neuron every value
is a scalar, and XLA's CPU code for the step is scalar code: ten exponentials and a
dozen divisions one after the other, in one loop kernel per gate and one for V. Here
the gates are held as one vector ``x`` (in :attr:`Model.gate_names` order) and each
kind of rate form is evaluated once on a vector of lanes, the opening forms of all
gates in the first half and the closing ones in the second. A lane computes what the
form's own ``__call__`` computes (the :mod:`hhjax.rates` functions, on stacked
parameters), so values and derivatives are those of :mod:`hhjax.integrators`' steps
to rounding; XLA compiles the rates and gate updates of a step into one vector kernel.

Where it pays (:func:`suited`), measured on this project's 2-core Zen 4, NEURON ``hh``,
4000 steps, each process alternating with the scalar step (``benchmarks/README.md``):
float32 exponential Euler 0.52 ms against 0.64-0.73 ms, forward Euler 0.35 against
0.42-0.46 ms. Not used for float64 (exponential Euler 1.19-1.37 ms against 0.70-0.88),
RK4 (float32: 2.5-2.6 ms against 1.3-1.6 ms, in a version of this module that had it),
gradients (no faster), ``jax.vmap`` (where the neurons are the vector) or populations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .channels import AlphaBetaGate
from .integrators import _relax_gate, relax
from .model import Model, State, membrane_linear, temperature_factor
from .rates import ExpLinear, Exponential, Sigmoid

Array = jax.Array

__all__ = ["METHODS", "Packed", "gate_linear", "pack", "suited", "unpack"]

_KINDS = (Exponential, Sigmoid, ExpLinear)  # forms evaluated in lanes


def suited(method: str, rates: str, dtype: Any) -> bool:
    """Whether one neuron's forward run with ``method`` and ``rates`` in ``dtype`` runs
    faster in lanes (see the module docstring)."""
    return method in ("exp_euler", "euler") and rates == "exact" and jnp.dtype(dtype) == jnp.float32


class Packed(NamedTuple):
    """One neuron's state: ``v`` (mV) and the gates as one vector ``x``."""

    v: Array
    x: Array


def pack(model: Model, state: State) -> Packed:
    """``state`` with its gates stacked in ``model.gate_names`` order (a dict that went
    through a JAX transformation comes back with its keys sorted)."""
    names = model.gate_names
    x = jnp.stack([state.gates[k] for k in names]) if names else jnp.zeros((0,), state.v.dtype)
    return Packed(state.v, x)


def unpack(model: Model, p: Packed) -> State:
    """The :class:`~hhjax.model.State` of ``p``."""
    return State(p.v, {k: p.x[j] for j, k in enumerate(model.gate_names)})


def _gates(model: Model) -> list[Any]:
    return [gate for ch in model.channels.values() for gate in ch.gates.values()]


def _lanes(model: Model, v: Array) -> Array:
    """Every gate's two forms at ``v`` (mV): the first forms (alpha, or inf) of all gates,
    then the second (beta, or tau)."""
    gates = _gates(model)
    forms = [g.alpha if isinstance(g, AlphaBetaGate) else g.inf for g in gates]
    forms += [g.beta if isinstance(g, AlphaBetaGate) else g.tau for g in gates]
    dtype = v.dtype
    out = jnp.zeros((len(forms),), dtype)
    for kind in _KINDS:
        mine = [type(f) is kind for f in forms]  # (a subclass may compute otherwise)
        if not any(mine):
            continue
        # parameters of this kind's lanes; the other lanes get harmless ones (rate 0,
        # midpoint 0, the largest scale: x ~ 0) so that no inf reaches a derivative
        # through them, and none that changes from step to step
        def lane(name: str, other: Any, mine: list[bool] = mine) -> Array:
            return jnp.stack([
                jnp.asarray(getattr(f, name), dtype) if m else jnp.asarray(other, dtype)
                for f, m in zip(forms, mine, strict=True)
            ])

        big = jnp.finfo(dtype).max
        values = kind(lane("rate", 0.0), lane("midpoint", 0.0), lane("scale", big))(v)
        out = jnp.where(jnp.asarray(mine), values, out)
    for j, f in enumerate(forms):  # composite forms (Sum, Power, ...): one at a time
        if type(f) not in _KINDS:
            out = jnp.where(jnp.arange(len(forms)) == j, f(v), out)
    return out


def gate_linear(model: Model, v: Array) -> tuple[Array, Array]:
    """``(a, s)`` of every gate's ``dx/dt = a - s x`` at ``v`` (mV), 1/ms, as vectors:
    :func:`hhjax.model.gate_linear` in lanes."""
    gates = _gates(model)
    n = len(gates)
    phi = temperature_factor(model)
    both = _lanes(model, v)
    first, second = both[:n], both[n:]
    ab = [isinstance(g, AlphaBetaGate) for g in gates]
    if all(ab):
        a = phi * first
        return a, a + phi * second
    is_ab = jnp.asarray(ab)
    s_it = phi / jnp.where(is_ab, 1.0, second)  # inf/tau: s = phi / tau, a = s * inf
    a = jnp.where(is_ab, phi * first, s_it * first)
    return a, jnp.where(is_ab, a + phi * second, s_it)


def _membrane(model: Model, p: Packed, i_ext: Array) -> tuple[Array, Array]:
    return membrane_linear(model, unpack(model, p), i_ext)


def exp_euler(model: Model, p: Packed, i_ext: Array, dt: Array) -> Packed:
    """:func:`hhjax.integrators.exp_euler` on a packed state."""
    a, s = gate_linear(model, p.v)
    x = _relax_gate(p.x, a, s, dt)
    a_v, b_v = _membrane(model, Packed(p.v, x), i_ext)
    return Packed(relax(p.v, a_v, b_v, dt), x)


def euler(model: Model, p: Packed, i_ext: Array, dt: Array) -> Packed:
    """:func:`hhjax.integrators.euler` on a packed state."""
    a_v, b_v = _membrane(model, p, i_ext)
    a, s = gate_linear(model, p.v)
    return Packed(p.v + dt * (a_v - b_v * p.v), p.x + dt * (a - s * p.x))


METHODS = {"euler": euler, "exp_euler": exp_euler}
