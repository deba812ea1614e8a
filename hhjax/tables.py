"""Tabulated gate kinetics: the opt-in ``rates="table"`` mode of :func:`hhjax.simulate`.

For exponential Euler every gate update needs only two functions of V at fixed ``dt``:
the steady state ``x_inf(V) = a / s`` and the one-step gain ``1 - exp(-s(V) dt)``, since
``x_new = x + (x_inf - x) * gain``. This mode evaluates both on a uniform V grid
once per call (inside ``jit``, from the model's parameters, so gradients still flow to
every rate parameter) and interpolates linearly during the run, as NEURON does with
its ``TABLE`` statements. Outside the grid the end values are held (NEURON does the
same). With the default 0.05 mV spacing the interpolation error of ``x_inf`` is
~1e-5, well below the exponential-Euler error at ``dt = 0.025`` ms.

The tables are shared by the population: the gate kinetics (rate parameters,
temperature, q10, t_ref) must be scalars, while ``g``, ``e_rev`` and ``c_m`` may vary.

References:
    Hines & Carnevale, The NEURON Book (2006), section 9.5 (``TABLE``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .integrators import relax
from .model import Model, State, gate_linear, gate_names, membrane_linear
from .rates import ArrayLike

Array = jax.Array

__all__ = [
    "V_RANGE", "V_STEP", "GateTables", "build_tables", "check_tabulable", "exp_euler_table",
    "table_bytes",
]

V_RANGE = (-150.0, 150.0)  # mV covered by the tables
V_STEP = 0.05  # mV between table entries


class GateTables(NamedTuple):
    """Every gate's ``x_inf`` and ``1 - exp(-s dt)`` on the grid ``V_RANGE`` by ``V_STEP``.

    Attributes:
        x_inf, gain: gate name -> ``(values, increments)``: the values at the left end
            of each grid interval and their increments to its right end, each
            ``(n_grid - 1,)``.
    """

    x_inf: dict[str, tuple[Array, Array]]
    gain: dict[str, tuple[Array, Array]]


def _grid_size() -> int:
    return int(round((V_RANGE[1] - V_RANGE[0]) / V_STEP)) + 1


def table_bytes(model: Model, dtype: Any) -> int:
    """Bytes of tables one step of ``model`` reads, as XLA counts them when it decides
    whether a time loop is small (:mod:`hhjax.xla`): each gate's four tables in full,
    since XLA counts the whole source of a gather."""
    return 4 * len(gate_names(model)) * (_grid_size() - 1) * np.dtype(dtype).itemsize


def check_tabulable(model: Model) -> None:
    """Raise ``ValueError`` unless every gate kinetics leaf is shared (a scalar).

    Raises:
        ValueError: a rate parameter, ``temperature``, ``q10`` or ``t_ref`` has a
            population axis, naming it.
    """
    kinetics = {
        "channels": {c: ch.gates for c, ch in model.channels.items()},
        "temperature": model.temperature, "q10": model.q10, "t_ref": model.t_ref,
    }
    for path, leaf in jax.tree_util.tree_flatten_with_path(kinetics)[0]:
        if np.ndim(leaf) != 0:
            name = ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            raise ValueError(
                f"rates='table' needs gate kinetics shared by the population, but {name} has "
                f"shape {np.shape(leaf)}; vary g, e_rev or c_m instead, or use rates='exact'"
            )


def build_tables(model: Model, dt: ArrayLike, dtype: jnp.dtype) -> GateTables:
    """Tabulate every gate's ``x_inf`` and ``1 - exp(-s dt)`` for steps of ``dt`` ms.

    Args:
        model: a model whose gate kinetics are scalars (see :func:`check_tabulable`).
        dt: step, ms.
        dtype: floating dtype of the tables.

    Returns:
        The :class:`GateTables` (differentiable in the model's parameters and ``dt``).
    """
    grid = jnp.linspace(V_RANGE[0], V_RANGE[1], _grid_size(), dtype=dtype)
    lin = gate_linear(model, grid)
    x_inf = {k: a / s for k, (a, s) in lin.items()}
    gain = {k: -jnp.expm1(-s * dt) for k, (_, s) in lin.items()}

    def intervals(y: Array) -> tuple[Array, Array]:
        return y[:-1], y[1:] - y[:-1]

    return GateTables(
        {k: intervals(y) for k, y in x_inf.items()}, {k: intervals(y) for k, y in gain.items()}
    )


def _take(table: Array, i: Array) -> Array:
    return table.at[i].get(mode="promise_in_bounds")  # 0 <= i < n_grid - 1 by construction


def _interpolated(model: Model, tables: GateTables, v: Array) -> dict[str, tuple[Array, Array]]:
    """Every gate's ``(x_inf, gain)`` at ``v`` (mV), linearly interpolated."""
    x = (jnp.clip(v, V_RANGE[0], V_RANGE[1]) - V_RANGE[0]) * (1.0 / V_STEP)
    i = jnp.minimum(x.astype(jnp.int32), _grid_size() - 2)
    f = x - i.astype(x.dtype)
    # unsigned: JAX adds no wrap-around of negative indices to every gather (7-8 %
    # of the tabulated run at 1e4 and 1e6 neurons here, spikes only; same numbers)
    i = i.astype(jnp.uint32)

    def interp(table: tuple[Array, Array]) -> Array:
        return _take(table[0], i) + _take(table[1], i) * f

    return {k: (interp(tables.x_inf[k]), interp(tables.gain[k])) for k in tables.x_inf}


def exp_euler_table(
    model: Model, tables: GateTables, state: State, i_ext: ArrayLike, dt: ArrayLike
) -> State:
    """Exponential Euler step of ``dt`` ms with tabulated gate kinetics.

    Same splitting as :func:`hhjax.integrators.exp_euler` (gates at the old V, then V
    exactly with the new conductances); ``tables`` must be built for the same ``dt``.
    """
    # x + (x_inf - x) * gain uses each interpolated value once: one fused loop per gate
    gates = {
        k: state.gates[k] + (x_inf - state.gates[k]) * gain
        for k, (x_inf, gain) in _interpolated(model, tables, state.v).items()
    }
    a_v, b_v = membrane_linear(model, State(state.v, gates), i_ext)
    return State(v=relax(state.v, a_v, b_v, dt), gates=gates)
