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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .integrators import relax
from .model import Model, State, gate_linear, gate_names, membrane_linear
from .rates import ArrayLike

Array = jax.Array

__all__ = ["V_RANGE", "V_STEP", "GateTables", "build_tables", "check_tabulable", "exp_euler_table"]

V_RANGE = (-150.0, 150.0)  # mV covered by the tables
V_STEP = 0.05  # mV between table entries


class GateTables(NamedTuple):
    """Every gate's ``x_inf`` and ``1 - exp(-s dt)`` on the grid ``V_RANGE`` by ``V_STEP``.

    Attributes:
        rows: ``(n_grid - 1, 2, 2 G)`` for the G gates in :func:`hhjax.model.gate_linear`
            order: per grid interval, the values at its left end (``[:, 0]``: G ``x_inf``
            then G gains) and their increments to the right end (``[:, 1]``), so one
            gather per step fetches everything a step needs.
    """

    rows: Array


def _grid_size() -> int:
    return int(round((V_RANGE[1] - V_RANGE[0]) / V_STEP)) + 1


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
    lin = gate_linear(model, grid).values()
    x_inf = [a / s for a, s in lin]
    gain = [-jnp.expm1(-s * dt) for _, s in lin]
    values = jnp.stack(x_inf + gain, axis=-1)  # (n_grid, 2 G)
    return GateTables(jnp.stack([values[:-1], values[1:] - values[:-1]], axis=1))


def _interp(v: Array, rows: Array) -> Array:
    """Linear interpolation of every tabulated column at ``v`` (mV): ``(..., 2 G)``."""
    x = (jnp.clip(v, V_RANGE[0], V_RANGE[1]) - V_RANGE[0]) * (1.0 / V_STEP)
    i = jnp.minimum(x.astype(jnp.int32), rows.shape[0] - 1)
    f = x - i.astype(x.dtype)
    row = rows.at[i].get(mode="promise_in_bounds")  # 0 <= i < n_grid - 1 by construction
    return row[..., 0, :] + row[..., 1, :] * f[..., None]


def exp_euler_table(
    model: Model, tables: GateTables, state: State, i_ext: ArrayLike, dt: ArrayLike
) -> State:
    """Exponential Euler step of ``dt`` ms with tabulated gate kinetics.

    Same splitting as :func:`hhjax.integrators.exp_euler` (gates at the old V, then V
    exactly with the new conductances); ``tables`` must be built for the same ``dt``.
    """
    col = _interp(state.v, tables.rows)
    g = col.shape[-1] // 2
    # x + (x_inf - x) * gain uses each interpolated value once: one fused loop per gate
    gates = {
        k: state.gates[k] + (col[..., j] - state.gates[k]) * col[..., g + j]
        for j, k in enumerate(gate_names(model))
    }
    a_v, b_v = membrane_linear(model, State(state.v, gates), i_ext)
    return State(v=relax(state.v, a_v, b_v, dt), gates=gates)
