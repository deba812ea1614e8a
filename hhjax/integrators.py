"""One step of each integration method, all with one signature.

``step(model, state, i_ext, dt) -> state`` advances ``state`` by ``dt`` ms with the
injected current density ``i_ext`` (uA/cm2) held constant over the step. Methods are
registered by name in :data:`METHODS`:

* ``"euler"``: forward Euler, order 1.
* ``"rk4"``: the classic fourth-order Runge-Kutta method, order 4.
* ``"exp_euler"``: exponential Euler, order 1: each gate is advanced exactly with V
  held (``x + (a - s x) dt exprel(-s dt)``), then V exactly with the new
  conductances held (``V + (A - B V) dt exprel(-B dt)``). Unconditionally stable for
  the gates, exact for a passive membrane; the method of NEURON's ``cnexp``, Brian2's
  ``exponential_euler`` and Jaxley.

References:
    Rush & Larsen (1978), IEEE Trans. Biomed. Eng. 25:389; Hairer, Norsett & Wanner,
    Solving ODEs I (1993), section II.1 (RK4).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from .model import Model, State, derivatives, gate_linear, membrane_linear
from .rates import ArrayLike, exprel

Array = jax.Array
Step = Callable[[Model, State, ArrayLike, ArrayLike], State]

__all__ = ["METHODS", "euler", "exp_euler", "get_method", "rk4"]


def _axpy(state: State, dt: ArrayLike, rate: State) -> State:
    """``state + dt * rate``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda x, r: x + dt * r, state, rate)


def euler(model: Model, state: State, i_ext: ArrayLike, dt: ArrayLike) -> State:
    """Forward Euler step of ``dt`` ms."""
    return _axpy(state, dt, derivatives(model, state, i_ext))


def rk4(model: Model, state: State, i_ext: ArrayLike, dt: ArrayLike) -> State:
    """Classic fourth-order Runge-Kutta step of ``dt`` ms."""
    k1 = derivatives(model, state, i_ext)
    k2 = derivatives(model, _axpy(state, dt / 2, k1), i_ext)
    k3 = derivatives(model, _axpy(state, dt / 2, k2), i_ext)
    k4 = derivatives(model, _axpy(state, dt, k3), i_ext)
    slope = jax.tree_util.tree_map(
        lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4
    )
    return _axpy(state, dt, slope)


def exp_euler(model: Model, state: State, i_ext: ArrayLike, dt: ArrayLike) -> State:
    """Exponential Euler step of ``dt`` ms (gates first at the old V, then V)."""
    gates = {
        k: state.gates[k] + (a - s * state.gates[k]) * dt * exprel(-s * dt)
        for k, (a, s) in gate_linear(model, state.v).items()
    }
    a_v, b_v = membrane_linear(model, State(state.v, gates), i_ext)
    v = state.v + (a_v - b_v * state.v) * dt * exprel(-b_v * dt)
    return State(v=v, gates=gates)


METHODS: dict[str, Step] = {"euler": euler, "rk4": rk4, "exp_euler": exp_euler}


def get_method(name: str) -> Step:
    """The step function registered as ``name``.

    Raises:
        ValueError: unknown method, listing the known ones.
    """
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {name!r}")
    return METHODS[name]
