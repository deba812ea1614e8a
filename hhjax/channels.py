"""Gates and ion channels.

A gate is one gating variable ``x`` with first-order kinetics, written either with
opening/closing rates (``dx/dt = phi * (alpha(v) * (1 - x) - beta(v) * x)``) or with a
steady state and a time constant (``dx/dt = phi * (inf(v) - x) / tau(v)``), and an
integer power. A channel is a maximal conductance ``g`` (mS/cm2), a reversal potential
``e_rev`` (mV) and its gates; its current density (uA/cm2, outward positive) is
``g * prod(x ** power) * (v - e_rev)``.

Both gate kinds reduce to the linear form ``dx/dt = a - s * x`` at fixed ``v``, which is
what every integrator uses: ``a`` (1/ms) is the opening flux, ``s`` (1/ms) the total
relaxation rate, so ``x_inf = a / s`` and ``tau = 1 / s``.

References:
    Hodgkin & Huxley (1952), J. Physiol. 117:500-544, eqs. 6-7, 15-16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from .rates import ArrayLike, Form, _pytree

Array = jax.Array

__all__ = ["AlphaBetaGate", "Channel", "Gate", "InfTauGate"]


@dataclasses.dataclass(frozen=True)
class AlphaBetaGate:
    """A gate with opening rate ``alpha(v)`` and closing rate ``beta(v)`` (1/ms).

    Attributes:
        alpha: rate form for the opening rate.
        beta: rate form for the closing rate.
        power: integer exponent of the gate in the channel's open fraction (static).
    """

    alpha: Form
    beta: Form
    power: int = 1

    def linear(self, v: ArrayLike, phi: ArrayLike) -> tuple[Array, Array]:
        """``(a, s)`` of ``dx/dt = a - s x`` at potential ``v`` (mV), in 1/ms."""
        a = phi * self.alpha(v)
        return a, a + phi * self.beta(v)


@dataclasses.dataclass(frozen=True)
class InfTauGate:
    """A gate given by its steady state ``inf(v)`` and time constant ``tau(v)`` (ms).

    Attributes:
        inf: form of the steady state (dimensionless, in [0, 1]).
        tau: form of the time constant (ms) at the reference temperature.
        power: integer exponent of the gate in the channel's open fraction (static).
    """

    inf: Form
    tau: Form
    power: int = 1

    def linear(self, v: ArrayLike, phi: ArrayLike) -> tuple[Array, Array]:
        """``(a, s)`` of ``dx/dt = a - s x`` at potential ``v`` (mV), in 1/ms."""
        s = phi / self.tau(v)
        return s * self.inf(v), s


Gate = AlphaBetaGate | InfTauGate


@dataclasses.dataclass(frozen=True)
class Channel:
    """An ion channel: ``I = g * prod(x ** power) * (v - e_rev)``.

    Attributes:
        g: maximal conductance, mS/cm2 (>= 0).
        e_rev: reversal potential, mV.
        gates: gates by name (e.g. ``{"m": ..., "h": ...}``); empty for a leak.
    """

    g: ArrayLike
    e_rev: ArrayLike
    gates: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def open_fraction(self, x: Mapping[str, ArrayLike]) -> Array | float:
        """Product of ``x[name] ** power`` over the gates (1.0 for a leak)."""
        out: Array | float = 1.0
        for name, gate in self.gates.items():
            out = out * x[name] ** gate.power
        return out


_pytree(AlphaBetaGate, meta=("power",))
_pytree(InfTauGate, meta=("power",))
_pytree(Channel)
