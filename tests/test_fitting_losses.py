"""fitting.losses against NumPy and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fitting import losses as L


def _target(vd, w=None, dt=0.1):
    vd = jnp.asarray(vd, jnp.float32)
    w = jnp.ones_like(vd) if w is None else jnp.asarray(w, jnp.float32)
    return L.Target(vd, w, dt)


def test_voltage_mse_weighted_matches_numpy():
    rng = np.random.default_rng(1)
    v, vd, w = rng.normal(size=(3, 50)), rng.normal(size=(3, 50)), rng.uniform(size=(3, 50))
    w[1] = 0.0
    got = float(L.voltage_mse()(jnp.asarray(v, jnp.float32), _target(vd, w)))
    assert got == pytest.approx(np.sum(w * (v - vd) ** 2) / np.sum(w), rel=1e-5)


def test_subthreshold_mse_ignores_spikes_and_their_margin():
    dt = 0.1
    vd = np.full((1, 200), -65.0)
    vd[0, 100:110] = 20.0  # a recorded spike
    v = vd.copy()
    v[0, 100:125] = -80.0  # the model misses it; differs within the 2 ms margin only
    loss = L.subthreshold_mse(threshold=-40.0, margin=2.0)
    assert float(loss(jnp.asarray(v, jnp.float32), _target(vd, dt=dt))) == pytest.approx(0.0, abs=1e-6)
    v[0, 135] = -75.0  # after the margin it counts
    got = float(loss(jnp.asarray(v, jnp.float32), _target(vd, dt=dt)))
    n_kept = 200 - 10 - 20  # samples 100..129 are at/after the recorded spike
    assert got == pytest.approx(100.0 / n_kept, rel=1e-4)


def test_van_rossum_closed_forms():
    dt, tau, n = 0.01, 5.0, 20000
    a = np.zeros(n)
    a[1000] = 1.0
    # one unmatched spike: int_0^inf exp(-2t/tau) dt / tau = 1/2 (discretised: 1/(1-e^{-2dt/tau}) dt/tau)
    exact = dt / tau / (1 - np.exp(-2 * dt / tau))
    got = float(L.van_rossum(jnp.asarray(a), jnp.zeros(n), dt, tau))
    assert got == pytest.approx(exact, rel=1e-4) and got == pytest.approx(0.5, rel=2e-3)
    b = np.zeros(n)
    shift = 200  # 2 ms apart: 1 - exp(-d / tau) in the continuum limit
    b[1000 + shift] = 1.0
    got = float(L.van_rossum(jnp.asarray(a), jnp.asarray(b), dt, tau))
    assert got == pytest.approx(1 - np.exp(-shift * dt / tau), rel=5e-3)


def test_spike_loss_counts_spikes_and_has_finite_gradients():
    t = np.arange(0, 100, 0.05)
    vd = -65 + 90 * np.exp(-(((t[None] - np.array([[20.0], [60.0]])) / 0.5) ** 2)).sum(0)
    target = _target(vd[None], dt=0.05)
    loss = L.spike_loss(timing_weight=0.0, subthreshold_weight=0.0, width=1.0)
    quiet = jnp.full((1, t.size), -65.0, jnp.float32)
    assert float(loss(quiet, target)) == pytest.approx(4.0, rel=1e-3)  # (0 - 2)^2
    assert float(loss(jnp.asarray(vd[None], jnp.float32), target)) == pytest.approx(0.0, abs=1e-3)
    full = L.spike_loss()
    g = jax.grad(lambda s: full(jnp.asarray(vd[None], jnp.float32) * s, target))(1.01)
    assert np.isfinite(float(g))


def test_combine_is_a_weighted_sum_and_validates():
    vd = np.zeros((1, 10))
    v = jnp.ones((1, 10), jnp.float32)
    both = L.combine((L.voltage_mse(), 2.0), (L.voltage_mse(), 0.5))
    assert float(both(v, _target(vd))) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="pair"):
        L.combine(L.voltage_mse())
