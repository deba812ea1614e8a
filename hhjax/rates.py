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
    "inv_exprel",
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


# B_2k / (2k)! for k = 1..10: z / (e^z - 1) = 1 - z/2 + sum_k B_2k z^2k / (2k)!
_BERNOULLI = (
    1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160, -691 / 1307674368000,
    1 / 74724249600, -3617 / 10670622842880000, 43867 / 5109094217170944000,
    -174611 / 802857662698291200000,
)
_SERIES_BELOW = 1.0  # |z| below which inv_exprel sums its series


def _series_terms(dtype: Any) -> tuple[float, ...]:
    # At |z| = 1 the first omitted term is below eps / 30: z^12 in float32, z^22 in
    # float64 (|B_2k / (2k)!| ~ 2 / (2 pi)^2k).
    return _BERNOULLI[:5] if np.finfo(dtype).bits <= 32 else _BERNOULLI


def _split(z: Array) -> tuple[Array, Array]:
    """``(|z| < 1, z with 1 where |z| < 1)``: which lanes sum the series, and a safe
    argument for the other branch."""
    small = jnp.abs(z) < _SERIES_BELOW
    return small, jnp.where(small, _SERIES_BELOW, z)


@jax.custom_jvp
def _inv_exprel(z: Array) -> Array:
    small, safe = _split(z)
    w = z * z
    terms = _series_terms(z.dtype)
    p = jnp.asarray(terms[-1], z.dtype)
    for c in reversed(terms[:-1]):
        p = c + w * p
    # exp(z) = inf (z > 88 in float32) gives the limit 0. The rule below differentiates
    # neither this exp nor the series (only `safe`), so no inf reaches a derivative.
    return jnp.where(small, 1.0 - 0.5 * z + w * p, safe / (jnp.exp(safe) - 1.0))


@_inv_exprel.defjvp
def _inv_exprel_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # d/dz [z / (e^z - 1)] = b (1 - z - b) / z with b the value; for z < 0 the bracket is
    # 1 - b e^z (b e^z = z + b), which does not cancel. Every branch sees finite values,
    # so derivatives of any order are finite.
    (z,), (t,) = primals, tangents
    b = _inv_exprel(z)
    small, safe = _split(z)
    zs = jnp.where(small, z, 0.0)  # the series' argument: no inf in z^2 to differentiate
    w = zs * zs
    terms = _series_terms(z.dtype)
    d = jnp.asarray(2 * len(terms) * terms[-1], z.dtype)  # sum_k 2k c_k w^(k-1)
    for k in range(len(terms) - 1, 0, -1):
        d = 2 * k * terms[k - 1] + w * d
    bracket = jnp.where(
        safe > 0, 1.0 - safe - b, 1.0 - b * jnp.exp(jnp.minimum(safe, 0.0))
    )
    slope = jnp.where(small, -0.5 + zs * d, b * bracket / safe)
    return b, slope * t


def inv_exprel(z: ArrayLike) -> Array:
    """``z / (exp(z) - 1) = 1 / exprel(z)``, the factor of an :class:`ExpLinear` rate.

    Below ``|z| = 1`` the Bernoulli series ``1 - z/2 + z^2/12 - z^4/720 + ...`` (to
    ``z^10`` in float32, ``z^20`` in float64), above it ``z / (exp(z) - 1)``, where
    ``exp(z) - 1`` no longer cancels, with one ``exp`` and one division. ``expm1``
    would cost more: XLA's CPU ``expm1`` made the HH step ~18 % slower.

    Accuracy (against 50-digit references): within 1.2 ulp for |z| <= 20 in both dtypes
    (``tests/test_rates.py`` checks 2 ulp to |z| = 30), and within 2.5 ulp up to where
    ``exp(z)`` overflows (z = 88.7 in float32, 709.8 in float64). Beyond that it
    returns 0; the exact value there is below 3e-37 (float32) or 4e-306 (float64). The
    value tends to ``-z`` for ``z -> -inf``. The derivative is a custom rule, within
    4 eps on both sides of 0, and finite for every finite ``z``, as is the second.

    Args:
        z: dimensionless argument, any shape.

    Returns:
        ``z / expm1(z)`` with the limit 1 at 0, same shape and dtype as ``z``.
    """
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    return _inv_exprel(z)


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
    handled exactly (value ``rate``, finite gradient), via :func:`inv_exprel`.

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
        return self.rate * inv_exprel(-x)


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
