"""Standard errors of fitted parameters from the Gauss-Newton approximation at the optimum.

Treating the recorded voltage as ``v_data = v_model(theta) + noise`` with independent
Gaussian noise of standard deviation sigma (mV) on every weighted sample, the
covariance of the least-squares estimate is approximately
``sigma^2 (J^T W J)^-1`` where ``J = d v_model / d theta`` (computed here by forward-mode
differentiation, one pass per parameter) and W the sample weights. sigma defaults to the
residual RMS, ``sqrt(sum w r^2 / (sum w - p))``.

The errors assume independent noise on every sample and a model that can match the
data. On real recordings with model mismatch the residuals are correlated in time and
these errors are lower bounds (often by a large factor); read them as a measure of how
well the data constrain each parameter, not as confidence intervals.

A parameter (or a combination) the data do not constrain shows as a near-singular
``J^T W J``: a relative standard error above ``rel_threshold`` or a condition number of
the scaled matrix above ``cond_threshold`` triggers an :class:`IdentifiabilityWarning`.

References:
    Seber & Wild (1989), Nonlinear Regression, ch. 2 and 3.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import hhjax

__all__ = ["IdentifiabilityWarning", "StandardErrors", "standard_errors"]


class IdentifiabilityWarning(UserWarning):
    """Some fitted parameters are not identifiable from the data."""


class StandardErrors(NamedTuple):
    """Gauss-Newton uncertainty of a fit.

    Attributes:
        se: standard error of each parameter ``{path: value}`` (its unit); ``inf`` for
            parameters the data do not determine.
        covariance: ``(p, p)`` covariance matrix in the order of ``paths``.
        correlation: ``(p, p)`` correlation matrix.
        sigma: noise standard deviation used, mV.
        condition: condition number of the scaled ``J^T W J`` (large: not identifiable).
        unidentifiable: paths flagged as poorly determined.
        paths: parameter order.
    """

    se: dict[str, float]
    covariance: np.ndarray
    correlation: np.ndarray
    sigma: float
    condition: float
    unidentifiable: list[str]
    paths: tuple[str, ...]


def standard_errors(
    result: Any,
    *,
    sigma: float | None = None,
    rel_threshold: float = 0.5,
    cond_threshold: float = 1e10,
) -> StandardErrors:
    """Gauss-Newton standard errors of ``result`` (a :class:`fitting.FitResult`).

    Args:
        result: the fit.
        sigma: noise standard deviation, mV (default: from the residuals).
        rel_threshold: flag parameters with ``se / |value|`` above this.
        cond_threshold: flag all parameters in the weakest direction when the
            condition number of the (value-scaled) ``J^T W J`` exceeds this.

    Returns:
        :class:`StandardErrors`; warns :class:`IdentifiabilityWarning` for flagged
        parameters.
    """
    from .optimize import make_simulator

    rec = result.recording
    free = result.free
    sim, drive = make_simulator(free, rec, method=result.method, checkpoint=result.checkpoint)
    x = jnp.asarray(result.x, jnp.result_type(float))
    v_model = np.asarray(hhjax.jit(sim)(x, drive)[0], dtype=float)
    jac = hhjax.jit(jax.jacfwd(lambda y, d: sim(y, d)[0]))(x, drive)
    jac = np.asarray(jac, dtype=float)  # (S, N, p)
    w = rec.weights.reshape(-1)
    jac = jac.reshape(-1, free.size)
    resid = (rec.voltage - v_model).reshape(-1)
    n_eff = float(np.sum(w))
    if sigma is None:
        dof = max(n_eff - free.size, 1.0)
        sigma = float(np.sqrt(np.sum(w * resid**2) / dof))
    fisher = jac.T @ (w[:, None] * jac)  # J^T W J, (p, p)
    scale = np.where(np.abs(result.x) > 0, np.abs(result.x), 1.0)
    scaled = fisher * np.outer(scale, scale)  # for relative (dimensionless) directions
    eig, vecs = np.linalg.eigh(scaled)
    eig_max = max(float(eig[-1]), 1e-300)
    condition = float(eig_max / max(float(eig[0]), 1e-300 * eig_max)) if eig[0] > 0 else np.inf
    good = eig > eig_max * 1e-14
    inv_scaled = (vecs[:, good] / eig[good]) @ vecs[:, good].T
    cov = sigma**2 * inv_scaled * np.outer(scale, scale)
    var = np.diag(cov).copy()
    if not np.all(good):  # directions with no information: infinite uncertainty along them
        weak = np.any(np.abs(vecs[:, ~good]) > 1e-3, axis=1)
        var[weak] = np.inf
    se_arr = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    flagged = [
        p for j, p in enumerate(free.paths)
        if not np.isfinite(se_arr[j]) or se_arr[j] > rel_threshold * max(abs(result.x[j]), 1e-12)
    ]
    if condition > cond_threshold:
        weakest = vecs[:, 0]
        for j in np.flatnonzero(np.abs(weakest) > 0.3):
            if free.paths[j] not in flagged:
                flagged.append(free.paths[j])
    if flagged:
        warnings.warn(
            f"parameters not identifiable from these data (relative standard error > "
            f"{rel_threshold:g}, or a near-singular Gauss-Newton matrix, condition "
            f"{condition:.3g}): {', '.join(flagged)}; freeze them or add protocols",
            IdentifiabilityWarning,
            stacklevel=2,
        )
    return StandardErrors(
        se={p: float(se_arr[j]) for j, p in enumerate(free.paths)},
        covariance=cov, correlation=corr, sigma=sigma, condition=condition,
        unidentifiable=flagged, paths=free.paths,
    )
