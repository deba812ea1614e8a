"""Addressing model parameters by readable path (``"na.g"``, ``"na.m.alpha.midpoint"``).

A path joins the channel name, the gate name, the form's field and so on with dots;
the container levels (``channels``, ``gates``) are left out, and members of composite
forms are numbered (``"a.a.inf.terms.0.rate"``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, is_concrete
from .model import Model, _path_str

__all__ = ["get_params", "set_params", "validate_model"]

# Parameters that must stay positive (> 0) or non-negative (>= 0).
_POSITIVE = ("c_m",)


def get_params(model: Model) -> dict[str, Any]:
    """Every parameter of ``model`` as a flat dict ``{path: value}``.

    Example: ``{"c_m": 1.0, "na.g": 120.0, "na.m.alpha.midpoint": -40.0, ...}``.
    """
    flat = jax.tree_util.tree_flatten_with_path(model)[0]
    return {_path_str(path): leaf for path, leaf in flat}


def _unknown(path: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(path, known, n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown parameter path {path!r}{hint} (see hhjax.get_params(model))")


def set_params(model: Model, values: Mapping[str, Any]) -> Model:
    """A copy of ``model`` with the parameters at ``values`` (``{path: value}``) replaced.

    Values may be scalars or 1-D arrays (a population of that parameter). The input
    model is not modified.

    Raises:
        ValueError: an unknown path (with the closest matches), or a value that is
            not finite / out of its physical range.
    """
    known = list(get_params(model))
    for path in values:
        if path not in known:
            raise _unknown(path, known)
    new = jax.tree_util.tree_map_with_path(
        lambda p, leaf: values.get(_path_str(p), leaf), model
    )
    validate_model(new, only=values.keys())
    return new


def validate_model(model: Model, only: Any = None) -> None:
    """Raise ``ValueError`` for non-finite values, ``c_m <= 0`` or ``g < 0``.

    Checks concrete values only (inside a trace the values are unknown).
    """
    for path, value in get_params(model).items():
        if only is not None and path not in only:
            continue
        if not is_concrete(value):
            continue
        check_finite(f"parameter {path!r}", value)
        arr = np.asarray(value)
        if path in _POSITIVE and np.any(arr <= 0):
            raise ValueError(f"parameter {path!r} must be > 0; got {value!r}")
        if (path.endswith(".g") or path == "g") and np.any(arr < 0):
            raise ValueError(f"parameter {path!r} (a conductance) must be >= 0; got {value!r}")


def as_arrays(model: Model, dtype: Any = None) -> Model:
    """``model`` with every leaf a JAX array of ``dtype`` (default: JAX's float)."""
    dtype = dtype or jnp.result_type(float)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=dtype), model)
