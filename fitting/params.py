"""Free parameters: which model leaves are fitted, their bounds, and the unconstrained space.

A free parameter is a path of :func:`hhjax.get_params` (``"na.g"``,
``"na.m.alpha.midpoint"``, ``"c_m"``, ``"temperature"``, ...) or the fitting-only
``"area"`` (membrane area, cm2, converting absolute recorded currents to densities).

Every parameter has bounds ``(lo, hi)`` and is optimised as an unconstrained number u:

* linear parameters (potentials, temperature): ``x = lo + (hi - lo) * sigmoid(u)``;
* scale parameters (conductances, rates, capacitance, area, slope factors):
  ``x = sign * exp(log|lo| + (log|hi| - log|lo|) * sigmoid(u))``, uniform in log space.

So bounds hold for every u, and frozen parameters are not in u at all (they never move).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import hhjax

Array = jax.Array

__all__ = ["AREA", "FreeParams", "default_bounds", "make_free"]

AREA = "area"  # fitting-only parameter: membrane area, cm2
_AREA_BOUNDS = (1e-6, 1e-3)  # cm2: a 6 um to a 180 um sphere
_EPS = 1e-6  # keeps sigmoid's inverse finite at the bounds


def _is_scale(path: str) -> bool:
    last = path.rsplit(".", 1)[-1]
    return last in ("g", "rate", "scale", "c_m", "q10", "value") or path == AREA


def default_bounds(path: str, value: float) -> tuple[float, float, bool]:
    """Sensible bounds ``(lo, hi, log)`` for the parameter ``path`` at ``value``.

    Conductances, rates and capacitance: [x/10, 10x] (log); slope factors ``scale``:
    [x/3, 3x] (log, sign kept); reversal potentials: x +- 30 mV; midpoints: x +- 25 mV;
    temperature: [0, 45] C; q10: [1, 6]; area: [1e-6, 1e-3] cm2. A conductance of 0
    gets [0, 1] mS/cm2 (linear).
    """
    last = path.rsplit(".", 1)[-1]
    if path == AREA:
        return (*_AREA_BOUNDS, True)
    if path == "temperature" or path == "t_ref":
        return (0.0, 45.0, False)
    if path == "q10":
        return (1.0, 6.0, False)
    if last == "e_rev":
        return (value - 30.0, value + 30.0, False)
    if last == "midpoint":
        return (value - 25.0, value + 25.0, False)
    if _is_scale(path):
        if value == 0:
            return (0.0, 1.0, False)
        factor = 3.0 if last == "scale" else 10.0
        lo, hi = sorted((value / factor, value * factor))
        return (lo, hi, True)
    return (value - max(10.0, abs(value)), value + max(10.0, abs(value)), False)


@dataclasses.dataclass(frozen=True)
class FreeParams:
    """The free parameters in a fixed order with their bounds and transforms.

    Attributes:
        paths: parameter paths, in the order of the vectors below.
        lo, hi: bounds, ``(p,)`` (for log parameters, same sign, nonzero).
        log: whether each parameter is uniform in log space.
        base: the model whose other parameters stay frozen.
    """

    paths: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    log: np.ndarray
    base: hhjax.Model

    @property
    def size(self) -> int:
        """Number of free parameters."""
        return len(self.paths)

    def to_physical(self, u: Array) -> Array:
        """Unconstrained ``u (..., p)`` to parameter values ``(..., p)`` within the bounds."""
        s = jax.nn.sigmoid(u)
        lo, hi = jnp.asarray(self.lo, u.dtype), jnp.asarray(self.hi, u.dtype)
        lin = lo + (hi - lo) * s
        sign = jnp.sign(lo)
        llo = jnp.log(jnp.where(self.log, jnp.abs(lo), 1.0))
        lhi = jnp.log(jnp.where(self.log, jnp.abs(hi), 1.0))
        # For negative log parameters |lo| > |hi|, so s walks from lo to hi either way.
        logged = sign * jnp.exp(llo + (lhi - llo) * s)
        return jnp.where(self.log, logged, lin)

    def to_unconstrained(self, x: Any) -> np.ndarray:
        """Parameter values ``(..., p)`` (within bounds) to unconstrained ``u``.

        Raises:
            ValueError: a value outside its bounds (naming the parameter).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.size:
            raise ValueError(f"expected {self.size} values ({self.paths}); got shape {x.shape}")
        flat = x.reshape(-1, self.size)
        for j, path in enumerate(self.paths):
            bad = (flat[:, j] < min(self.lo[j], self.hi[j])) | (flat[:, j] > max(self.lo[j], self.hi[j]))
            if np.any(bad):
                raise ValueError(
                    f"initial value of {path!r} = {flat[bad, j][0]!r} is outside its bounds "
                    f"[{self.lo[j]}, {self.hi[j]}]"
                )
        with np.errstate(divide="ignore"):
            lin = (x - self.lo) / (self.hi - self.lo)
            lg = (np.log(np.abs(np.where(self.log, x, 1.0))) - np.log(np.abs(np.where(self.log, self.lo, 1.0)))) / (
                np.log(np.abs(np.where(self.log, self.hi, 2.0))) - np.log(np.abs(np.where(self.log, self.lo, 1.0)))
            )
        s = np.clip(np.where(self.log, lg, lin), _EPS, 1.0 - _EPS)
        return np.log(s) - np.log1p(-s)

    def sample(self, key: Array, n: int) -> np.ndarray:
        """``n`` starts ``(n, p)`` in u, uniform across the bounds (log-uniform for log ones)."""
        s = jax.random.uniform(key, (n, self.size), minval=0.02, maxval=0.98)
        s = np.asarray(s, dtype=np.float64)
        return np.log(s) - np.log1p(-s)

    def as_dict(self, x: Any) -> dict[str, Any]:
        """``{path: value}`` from a vector ``(..., p)`` (values keep the leading axes)."""
        return {p: x[..., j] for j, p in enumerate(self.paths)}

    def model(self, x: Any) -> tuple[hhjax.Model, Any]:
        """The model with the free values set, and the area (cm2) if it is free (else None).

        ``x`` is a vector ``(p,)`` in the order of :attr:`paths` or a ``{path: value}`` dict.
        """
        values = dict(x) if isinstance(x, Mapping) else self.as_dict(x)
        area = values.pop(AREA, None)
        return hhjax.set_params(self.base, values) if values else self.base, area


def make_free(
    model: hhjax.Model,
    free: Sequence[str] | Mapping[str, tuple[float, float] | None],
) -> FreeParams:
    """Build :class:`FreeParams` from paths, or from ``{path: (lo, hi) or None}``.

    ``None`` bounds take :func:`default_bounds`. Bounds given by hand are linear unless
    both are of one sign, nonzero, and the parameter is a scale parameter.

    Raises:
        ValueError: no free parameter, an unknown path (with suggestions), repeated
            paths, population (array) parameters, bounds with lo >= hi or a start
            value outside them.
    """
    if isinstance(free, str):
        raise ValueError(f"free must be a list of parameter paths, not one string; got {free!r}")
    items = dict(free) if isinstance(free, Mapping) else {p: None for p in free}
    if not items or (not isinstance(free, Mapping) and len(items) != len(list(free))):
        raise ValueError(f"free must name at least one parameter, each once; got {list(free)!r}")
    known = hhjax.get_params(model)
    paths, lo, hi, log = [], [], [], []
    for path, bounds in items.items():
        if path != AREA and path not in known:
            hhjax.set_params(model, {path: 0.0})  # raises the "unknown path" error with hints
        value = None if path == AREA else known[path]
        if value is not None and np.ndim(value) != 0:
            raise ValueError(f"parameter {path!r} is a population (shape {np.shape(value)}); fit one model")
        if bounds is None:
            b = default_bounds(path, float(value) if value is not None else 0.0)
        else:
            if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
                raise ValueError(f"bounds of {path!r} must be (lo, hi) with lo < hi; got {bounds!r}")
            a, b_ = float(bounds[0]), float(bounds[1])
            b = (a, b_, _is_scale(path) and a * b_ > 0)
        paths.append(path)
        lo.append(b[0])
        hi.append(b[1])
        log.append(b[2])
    lo_a, hi_a = np.array(lo, float), np.array(hi, float)
    log_a = np.array(log, bool)
    return FreeParams(tuple(paths), lo_a, hi_a, log_a, model)
