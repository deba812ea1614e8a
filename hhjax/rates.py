"""Rate-function forms of voltage-gated kinetics, named as NeuroML names them.

Every form is a small frozen dataclass registered as a pytree: its numbers are leaves
(so they can be fitted, vmapped and differentiated) and calling it on a membrane
potential ``v`` (mV) returns the rate (1/ms), a steady state (dimensionless) or a time
constant (ms), depending on where the form is used.

The three NeuroML forms share the parameters ``rate``, ``midpoint`` (mV) and ``scale``
(mV), with ``x = (v - midpoint) / scale``:

* :class:`Exponential`: ``rate * exp(x)``
* :class:`Sigmoid`: ``rate / (1 + exp(-x))``
* :class:`ExpLinear`: ``rate * x / (1 - exp(-x))``, equal to ``rate`` at ``v = midpoint``.

Composites (:class:`Constant`, :class:`Sum`, :class:`Product`, :class:`Power`) build the
closed-form steady states and time constants some published models use (e.g. the A-type
current of Connor & Stevens).

References:
    NeuroML2 ``HHExpRate``, ``HHSigmoidRate``, ``HHExpLinearRate``
    (https://docs.neuroml.org/Userdocs/Schemas/Channels.html).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = Any

__all__ = [
    "Constant",
    "ExpLinear",
    "Exponential",
    "Form",
    "Power",
    "Product",
    "Sigmoid",
    "Sum",
    "exprel",
    "q10_factor",
]


def _pytree(cls: type, meta: tuple[str, ...] = ()) -> type:
    """Register a frozen dataclass as a pytree: fields in ``meta`` are static.

    Registered with ``register_pytree_with_keys`` rather than ``register_dataclass``:
    in JAX 0.10 the tree structures of two different dataclasses with the same
    fields compare *equal* (only their hashes differ), so ``jax.jit`` could, on a
    hash-table probe collision, run a model compiled for ``Exponential`` rates with
    ``ExpLinear`` ones. Here the class is part of the static data, so it is compared.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    data = [n for n in names if n not in meta]
    keys = tuple(jax.tree_util.GetAttrKey(n) for n in data)

    def flatten(obj: Any) -> tuple[tuple[tuple[Any, Any], ...], tuple[Any, ...]]:
        children = tuple((k, getattr(obj, n)) for k, n in zip(keys, data, strict=True))
        return children, (cls, *(getattr(obj, n) for n in meta))

    def unflatten(aux: tuple[Any, ...], children: Any) -> Any:
        return cls(**dict(zip(data, children, strict=True)), **dict(zip(meta, aux[1:], strict=True)))

    jax.tree_util.register_pytree_with_keys(cls, flatten, unflatten)
    return cls


def _taylor_threshold(dtype: Any) -> float:
    # |z| below which the 5-term Taylor series of exprel is used. It balances the
    # series' truncation error in the derivative (z^4/144) against the cancellation
    # error of the direct derivative (eps/|z|): z^5 = 144 eps.
    eps = float(np.finfo(dtype).eps)
    return (144.0 * eps) ** 0.2


def exprel(z: ArrayLike) -> Array:
    """``(exp(z) - 1) / z``, exact and gradient-safe at its removable singularity.

    Equal to 1 at ``z = 0``; value and all first derivatives are finite everywhere
    (no clipping: the ``where`` guards only the branch that is not taken).

    Args:
        z: dimensionless argument, any shape.

    Returns:
        ``expm1(z) / z`` with the limit 1 at 0, same shape and dtype as ``z``.

    References:
        The ``exprel`` of SciPy and Brian2; Higham, Accuracy and Stability of
        Numerical Algorithms (2002), section 1.14.1.
    """
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    small = jnp.abs(z) < _taylor_threshold(z.dtype)
    safe = jnp.where(small, jnp.ones_like(z), z)
    series = 1.0 + z * (1.0 / 2 + z * (1.0 / 6 + z * (1.0 / 24 + z * (1.0 / 120))))
    return jnp.where(small, series, jnp.expm1(safe) / safe)


def q10_factor(temperature: ArrayLike, q10: ArrayLike, t_ref: ArrayLike) -> Array:
    """Temperature factor ``phi = q10 ** ((temperature - t_ref) / 10)``.

    Args:
        temperature: temperature in degrees Celsius.
        q10: rate increase per 10 degrees C (dimensionless).
        t_ref: temperature (degrees C) at which the rates were measured.

    References:
        Hodgkin & Huxley (1952), J. Physiol. 117:500, p. 519 (Q10 = 3, 6.3 C).
    """
    return jnp.power(q10, (temperature - t_ref) / 10.0)


class Form(Protocol):
    """Anything that maps a membrane potential (mV) to a value of the same shape."""

    def __call__(self, v: ArrayLike) -> Array: ...


@dataclasses.dataclass(frozen=True)
class Exponential:
    """``rate * exp((v - midpoint) / scale)`` (NeuroML ``HHExpRate``).

    Attributes:
        rate: value at ``v = midpoint`` (1/ms when used as a rate).
        midpoint: mV.
        scale: mV; negative for a rate that falls with depolarisation.
    """

    rate: ArrayLike
    midpoint: ArrayLike
    scale: ArrayLike

    def __call__(self, v: ArrayLike) -> Array:
        return self.rate * jnp.exp((v - self.midpoint) * (1.0 / self.scale))


@dataclasses.dataclass(frozen=True)
class Sigmoid:
    """``rate / (1 + exp(-(v - midpoint) / scale))`` (NeuroML ``HHSigmoidRate``).

    Attributes:
        rate: the plateau (1/ms as a rate, 1 as a steady state).
        midpoint: half-activation potential, mV.
        scale: slope factor, mV; negative for a decreasing sigmoid.
    """

    rate: ArrayLike
    midpoint: ArrayLike
    scale: ArrayLike

    def __call__(self, v: ArrayLike) -> Array:
        return self.rate * jax.nn.sigmoid((v - self.midpoint) * (1.0 / self.scale))


@dataclasses.dataclass(frozen=True)
class ExpLinear:
    """``rate * x / (1 - exp(-x))`` with ``x = (v - midpoint) / scale``.

    NeuroML ``HHExpLinearRate``. The removable singularity at ``v = midpoint`` is
    handled exactly (value ``rate``, finite gradient), via ``1 / exprel(-x)``.

    Attributes:
        rate: value at ``v = midpoint`` (1/ms).
        midpoint: mV.
        scale: mV.
    """

    rate: ArrayLike
    midpoint: ArrayLike
    scale: ArrayLike

    def __call__(self, v: ArrayLike) -> Array:
        x = (v - self.midpoint) * (1.0 / self.scale)
        return self.rate / exprel(-x)


@dataclasses.dataclass(frozen=True)
class Constant:
    """A constant ``value`` independent of ``v``."""

    value: ArrayLike

    def __call__(self, v: ArrayLike) -> Array:
        return self.value + jnp.zeros_like(v)


@dataclasses.dataclass(frozen=True)
class Sum:
    """The sum of several forms (e.g. a time constant ``c + sigmoid``)."""

    terms: tuple[Any, ...]

    def __call__(self, v: ArrayLike) -> Array:
        out = self.terms[0](v)
        for term in self.terms[1:]:
            out = out + term(v)
        return out


@dataclasses.dataclass(frozen=True)
class Product:
    """The product of several forms."""

    terms: tuple[Any, ...]

    def __call__(self, v: ArrayLike) -> Array:
        out = self.terms[0](v)
        for term in self.terms[1:]:
            out = out * term(v)
        return out


@dataclasses.dataclass(frozen=True)
class Power:
    """``base(v) ** exponent``; the exponent is structure (static), not a leaf."""

    base: Any
    exponent: float

    def __call__(self, v: ArrayLike) -> Array:
        return jnp.power(self.base(v), self.exponent)


for _cls in (Exponential, Sigmoid, ExpLinear, Constant, Sum, Product):
    _pytree(_cls)
_pytree(Power, meta=("exponent",))
