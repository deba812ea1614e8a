"""Boundary validation shared by the public functions (private)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    if isinstance(x, jax.core.Tracer):
        return False
    if isinstance(x, (float, int, np.ndarray, jax.Array)):  # one leaf: no tree walk
        return True
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_positive_scalar(name: str, value: Any, unit: str) -> float | Any:
    """Raise unless ``value`` is a finite scalar > 0 (skipped for tracers)."""
    if not isinstance(value, (float, int)):  # (Python numbers: the common case, quick)
        if not is_concrete(value):
            return value
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar in {unit}; got shape {np.shape(value)}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0 {unit}; got {v!r}")
    return value


def check_finite(name: str, value: Any) -> None:
    """Raise if a concrete array holds NaN or inf, saying where the first one is."""
    if isinstance(value, int):  # (ints, bools: always finite)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite; found {value!r}")
        return
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = f" at index {tuple(int(i) for i in bad)}" if arr.ndim else ""
        raise ValueError(f"{name} must be finite; found {arr[tuple(bad)].item()!r}{where}")
