"""fitting.params: bounds, transforms to the unconstrained space, frozen parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax
from fitting import default_bounds, make_free


@pytest.fixture
def free():
    return make_free(
        hhjax.presets.squid(),
        {"na.g": None, "leak.e_rev": None, "k.n.beta.scale": None, "area": None, "c_m": (0.5, 2.0)},
    )


def test_default_bounds_contain_the_value_and_have_the_right_kind():
    assert default_bounds("na.g", 120.0) == (12.0, 1200.0, True)
    assert default_bounds("leak.e_rev", -54.387) == (-84.387, -24.387, False)
    lo, hi, log = default_bounds("k.n.beta.scale", -80.0)
    assert (lo, hi, log) == (-240.0, -80.0 / 3.0, True)
    assert default_bounds("na.m.alpha.midpoint", -40.0) == (-65.0, -15.0, False)
    assert default_bounds("temperature", 6.3)[:2] == (0.0, 45.0)


def test_bounds_hold_for_any_unconstrained_value(free):
    u = jnp.asarray(np.random.default_rng(0).normal(0, 30, (500, free.size)), jnp.float32)
    u = u.at[0].set(1e4).at[1].set(-1e4)  # far beyond any start
    x = np.asarray(free.to_physical(u), float)
    lo, hi = np.minimum(free.lo, free.hi), np.maximum(free.lo, free.hi)
    assert np.all(np.isfinite(x))
    tol = 1e-6 * np.maximum(np.abs(lo), np.abs(hi)) + 1e-9
    assert np.all(x >= lo - tol) and np.all(x <= hi + tol)


def test_round_trip_and_log_uniform_sampling(free):
    x = np.array([150.0, -60.0, -70.0, 3e-5, 1.3])
    u = free.to_unconstrained(x)
    with jax.enable_x64(True):
        back = np.asarray(free.to_physical(jnp.asarray(u, jnp.float64)))
    np.testing.assert_allclose(back, x, rtol=1e-10)
    u = free.sample(jax.random.PRNGKey(0), 4000)
    xs = np.asarray(free.to_physical(jnp.asarray(u)))
    # na.g is uniform in log space over [12, 1200]: its log-median is the log-midpoint
    assert abs(np.median(np.log(xs[:, 0])) - np.log(120.0)) < 0.15
    assert abs(np.median(xs[:, 1]) - (-54.387)) < 2.0  # linear: uniform over +-30 mV


def test_model_sets_only_the_free_parameters(free):
    x = np.array([150.0, -60.0, -70.0, 3e-5, 1.3])
    model, area = free.model(x)
    before, after = hhjax.get_params(hhjax.presets.squid()), hhjax.get_params(model)
    changed = {p for p in before if not np.isclose(float(before[p]), float(after[p]))}
    assert changed == {"na.g", "leak.e_rev", "k.n.beta.scale", "c_m"}
    assert area == pytest.approx(3e-5)


def test_bad_free_specifications_raise():
    model = hhjax.presets.squid()
    with pytest.raises(ValueError, match="unknown parameter path 'na.gg'.*did you mean"):
        make_free(model, ["na.gg"])
    with pytest.raises(ValueError, match="at least one"):
        make_free(model, [])
    with pytest.raises(ValueError, match="not one string"):
        make_free(model, "na.g")
    with pytest.raises(ValueError, match="lo < hi"):
        make_free(model, {"na.g": (200.0, 100.0)})
    free = make_free(model, {"na.g": (50.0, 200.0)})
    with pytest.raises(ValueError, match="outside its bounds"):
        free.to_unconstrained(np.array([300.0]))
