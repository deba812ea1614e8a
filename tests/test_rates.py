"""Rate forms: hand values, and exact value and gradient at the removable singularity."""

import decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax
from hhjax import rates

DTYPES = [jnp.float32, jnp.float64]
# relative tolerance per dtype for value / gradient checks
RTOL = {jnp.float32: 2e-6, jnp.float64: 1e-13}


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    with jax.enable_x64(request.param == jnp.float64):
        yield request.param


def test_exprel_hand_values(dtype):
    z = jnp.asarray([-3.0, -1e-3, 0.0, 1e-9, 0.02, 2.0], dtype)
    expected = [np.expm1(-3.0) / -3.0, np.expm1(-1e-3) / -1e-3, 1.0, 1.0 + 5e-10,
                np.expm1(0.02) / 0.02, np.expm1(2.0) / 2.0]
    got = rates.exprel(z)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got), expected, rtol=RTOL[dtype])


def test_exprel_gradient_is_smooth_across_zero(dtype):
    # d/dz exprel = 1/2 + z/3 + ... ; check against the analytic derivative on both sides
    z = jnp.asarray([-0.3, -0.05, -1e-4, 0.0, 1e-4, 0.05, 0.3], dtype)
    grad = jax.vmap(jax.grad(rates.exprel))(z)
    zf = np.asarray(z, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.where(zf == 0, 0.5, (zf * np.exp(zf) - np.expm1(zf)) / zf**2)
    tol = {jnp.float32: 2e-5, jnp.float64: 1e-9}[dtype]
    np.testing.assert_allclose(np.asarray(grad), exact, rtol=tol, atol=tol)


def _inv_exprel_exact(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z / (e^z - 1) and its derivative, with 50 significant digits."""
    ctx = decimal.Context(prec=50)
    value, slope = [], []
    for x in z.astype(np.float64):
        if x == 0:
            value.append(1.0)
            slope.append(-0.5)
            continue
        d = decimal.Decimal(float(x))
        e = ctx.exp(d)
        em1 = ctx.subtract(e, 1)
        value.append(float(ctx.divide(d, em1)))
        slope.append(float(ctx.divide(ctx.subtract(em1, ctx.multiply(d, e)), ctx.multiply(em1, em1))))
    return np.array(value), np.array(slope)


def test_inv_exprel_within_two_ulp_and_its_derivative_within_four_eps(dtype):
    # both sides of the switch at |z| = 1, the singularity, and far out on both sides
    grid = np.concatenate([np.linspace(-30, 30, 1201), np.geomspace(1e-8, 30, 400),
                           -np.geomspace(1e-8, 30, 400), [1.0, -1.0, 0.0]])
    below = np.nextafter(np.asarray([1.0, -1.0], dtype), np.asarray(0.0, dtype))
    z = np.unique(np.concatenate([grid.astype(dtype), below]))
    want, want_slope = _inv_exprel_exact(z)
    got = np.asarray(jax.jit(rates.inv_exprel)(jnp.asarray(z)), np.float64)
    slope = np.asarray(jax.jit(jax.vmap(jax.grad(rates.inv_exprel)))(jnp.asarray(z)), np.float64)
    eps = float(np.finfo(dtype).eps)
    assert np.max(np.abs(got - want) / np.abs(want)) <= 2 * eps
    assert np.max(np.abs(slope - want_slope) / np.abs(want_slope)) <= 4 * eps
    # the reciprocal of exprel, which it replaces in ExpLinear
    np.testing.assert_allclose(got * np.asarray(rates.exprel(jnp.asarray(z)), np.float64), 1.0,
                               rtol=8 * eps)


def test_inv_exprel_value_and_two_derivatives_finite_everywhere(dtype):
    big = float(np.finfo(dtype).max) / 2
    z = jnp.asarray([-big, -1e4, -200.0, -1.0, 0.0, 1.0, 100.0, 200.0, 1e4, big], dtype)
    first = jax.vmap(jax.grad(rates.inv_exprel))(z)
    second = jax.vmap(jax.grad(jax.grad(rates.inv_exprel)))(z)
    for x in (rates.inv_exprel(z), first, second):
        assert x.dtype == dtype and bool(jnp.all(jnp.isfinite(x)))
    # limits: -z and slope -1 far below 0, 0 far above; 1, -1/2, 1/6 at 0
    np.testing.assert_allclose(np.asarray(rates.inv_exprel(z))[[0, 1, -1]], [big, 1e4, 0.0])
    np.testing.assert_allclose(np.asarray(first)[[0, 1, 4, -1]], [-1.0, -1.0, -0.5, 0.0])
    np.testing.assert_allclose(float(second[4]), 1 / 6, rtol=RTOL[dtype])


@pytest.mark.parametrize("midpoint,scale,rate", [(-40.0, 10.0, 1.0), (-55.0, 10.0, 0.1), (25.0, -9.0, 0.018)])
def test_exp_linear_exact_at_singularity(dtype, midpoint, scale, rate):
    form = rates.ExpLinear(rate=rate, midpoint=midpoint, scale=scale)
    v = jnp.asarray(midpoint, dtype)
    value, grad = jax.value_and_grad(form)(v)
    # limit of rate * x / (1 - exp(-x)) at x = 0 is rate; its derivative is rate / (2 scale)
    assert value.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(float(value), rate, rtol=RTOL[dtype])
    np.testing.assert_allclose(float(grad), rate / (2 * scale), rtol=10 * RTOL[dtype])
    # parameter gradients are finite there too
    pgrad = jax.grad(lambda f: f(v))(form)
    assert all(np.isfinite(float(x)) for x in jax.tree_util.tree_leaves(pgrad))
    np.testing.assert_allclose(float(pgrad.rate), 1.0, rtol=RTOL[dtype])
    np.testing.assert_allclose(float(pgrad.midpoint), -rate / (2 * scale), rtol=10 * RTOL[dtype])


def test_squid_rates_hand_values():
    # Dayan & Abbott eq. 5.22-5.24 at V = -65 mV and at the singular points, by hand
    m = hhjax.presets.squid()
    na, k = m.channels["na"].gates, m.channels["k"].gates
    with jax.enable_x64(True):
        v = -65.0
        np.testing.assert_allclose(float(na["m"].alpha(v)), 0.1 * 25 / np.expm1(2.5), rtol=1e-14)
        np.testing.assert_allclose(float(na["m"].beta(v)), 4.0, rtol=1e-14)
        np.testing.assert_allclose(float(na["h"].alpha(v)), 0.07, rtol=1e-14)
        np.testing.assert_allclose(float(na["h"].beta(v)), 1 / (np.exp(3.0) + 1), rtol=1e-14)
        np.testing.assert_allclose(float(k["n"].alpha(v)), 0.01 * 10 / np.expm1(1.0), rtol=1e-14)
        np.testing.assert_allclose(float(k["n"].beta(v)), 0.125, rtol=1e-14)
        np.testing.assert_allclose(float(na["m"].alpha(-40.0)), 1.0, rtol=1e-15)
        np.testing.assert_allclose(float(k["n"].alpha(-55.0)), 0.1, rtol=1e-15)


def test_simple_forms():
    with jax.enable_x64(True):
        assert float(rates.Exponential(2.0, -10.0, 5.0)(0.0)) == pytest.approx(2 * np.exp(2.0), rel=1e-14)
        assert float(rates.Sigmoid(3.0, 1.0, -2.0)(5.0)) == pytest.approx(3 / (1 + np.exp(2.0)), rel=1e-14)
        assert float(rates.Sigmoid(1.0, 0.0, 1.0)(-800.0)) == 0.0  # no overflow to NaN
        c = rates.Sum((rates.Constant(0.5), rates.Sigmoid(1.0, 0.0, 1.0)))
        assert float(c(0.0)) == pytest.approx(1.0)
        p = rates.Power(rates.Product((rates.Constant(2.0), rates.Constant(4.0))), 1 / 3)
        assert float(p(3.0)) == pytest.approx(2.0, rel=1e-14)


def test_q10_factor():
    assert float(rates.q10_factor(16.3, 3.0, 6.3)) == pytest.approx(3.0, rel=1e-6)
    assert float(rates.q10_factor(6.3, 3.0, 6.3)) == 1.0
    # temperature speeds every gate: steady states unchanged, time constants / phi
    cold, warm = hhjax.presets.squid(), hhjax.presets.squid(temperature=16.3)
    lc = hhjax.model.gate_linear(cold, -50.0)
    lw = hhjax.model.gate_linear(warm, -50.0)
    for key in lc:
        a_c, s_c = lc[key]
        a_w, s_w = lw[key]
        assert float(a_w / s_w) == pytest.approx(float(a_c / s_c), rel=1e-6)
        assert float(s_w) == pytest.approx(3.0 * float(s_c), rel=1e-5)
